"""tim.locate finds paintings in small generated photos, and leaves scans whole; tim.photos simulates photos
whose corners are right."""
import cv2
import numpy as np
import pytest
from PIL import Image

from tim.locate import draw_outlines, find_paintings, straighten
from tim.photos import simulate_photo


def painting(width: int, height: int, seed: int) -> np.ndarray:
    """A generated 'painting': soft colour fields with brush-like detail, uint8 RGB."""
    rng = np.random.default_rng(seed)
    fields = cv2.resize(rng.uniform(0, 255, (4, 5, 3)).astype(np.float32), (width, height),
                        interpolation=cv2.INTER_CUBIC)
    strokes = cv2.GaussianBlur(rng.normal(0, 40, (height, width, 3)).astype(np.float32), (0, 0), 1.5)
    return np.clip(fields + strokes, 0, 255).astype(np.uint8)


def wall(width: int, height: int) -> np.ndarray:
    """A light wall as a camera sees it: brighter on the left, faintly blotchy, with sensor noise."""
    rng = np.random.default_rng(0)
    light = np.linspace(225, 200, width, dtype=np.float32)[None, :, None] * np.array([1.0, 0.98, 0.95])
    blotches = cv2.resize(rng.normal(0, 3, (height // 40, width // 40)).astype(np.float32), (width, height),
                          interpolation=cv2.INTER_CUBIC)[..., None]
    return np.clip(light + blotches + rng.normal(0, 1.5, (height, width, 3)), 0, 255).astype(np.uint8)


def hang(photo: np.ndarray, art: np.ndarray, corners: np.ndarray) -> np.ndarray:
    """`art` warped onto `photo` with its corners at `corners` (TL, TR, BR, BL)."""
    h, w = art.shape[:2]
    matrix = cv2.getPerspectiveTransform(np.float32([[0, 0], [w, 0], [w, h], [0, h]]), np.float32(corners))
    size = photo.shape[1], photo.shape[0]
    warped = cv2.warpPerspective(art, matrix, size, flags=cv2.INTER_LINEAR)
    inside = cv2.warpPerspective(np.ones((h, w), np.float32), matrix, size, flags=cv2.INTER_LINEAR)[..., None]
    return (photo * (1 - inside) + warped * inside).astype(np.uint8)


CORNERS = np.float32([[100, 100], [550, 120], [545, 415], [105, 400]])  # a 3:2 painting, a little off-axis


def framed_on_wall(art: np.ndarray, colour: tuple[int, int, int]) -> tuple[Image.Image, np.ndarray]:
    """A 300 x 200 `art` in a frame of `colour` 20 px wide, hung with the frame's corners at CORNERS; and the
    canvas's corners in the photo."""
    framed = np.full((240, 340, 3), colour, np.uint8)
    framed[20:220, 20:320] = art
    matrix = cv2.getPerspectiveTransform(np.float32([[0, 0], [340, 0], [340, 240], [0, 240]]), CORNERS)
    canvas = cv2.perspectiveTransform(np.float32([[[20, 20], [320, 20], [320, 220], [20, 220]]]), matrix)[0]
    return Image.fromarray(hang(wall(640, 480), framed, CORNERS)), canvas

def test_a_painting_on_a_wall_is_found_at_its_corners_and_straightened():
    art = painting(300, 200, seed=1)
    photo = Image.fromarray(hang(wall(640, 480), art, CORNERS))
    regions = find_paintings(photo)
    assert len(regions) == 1
    assert regions[0].shape == (4, 2) and regions[0].dtype == np.float32
    assert np.abs(regions[0] - CORNERS).max() <= 4  # px, clockwise from top-left
    upright = straighten(photo, regions[0])
    assert upright.width / upright.height == pytest.approx(1.5, rel=0.05)
    again = np.asarray(upright.resize((300, 200), Image.BILINEAR), np.float32)
    assert np.abs(again[10:-10, 10:-10] - art[10:-10, 10:-10]).mean() < 20  # the painting, the right way up
    rgb = np.asarray(photo)  # an RGB array (converted once by the Preprocessor) answers as the picture does
    [same] = find_paintings(rgb)
    assert np.array_equal(same, regions[0])
    assert np.array_equal(np.asarray(straighten(rgb, same)), np.asarray(upright))


def test_a_painting_seen_steeply_from_the_side_is_found():
    """Photographed from well to one side, a rectangle's corners look 30 degrees and more from square (Tim's
    oblique simulated photos reach 32): still a painting, found at its corners."""
    steep = np.float32([[280, 100], [560, 100], [380, 390], [100, 390]])  # every corner 31.8 degrees off square
    photo = Image.fromarray(hang(wall(640, 480), painting(300, 200, seed=3), steep))
    [found] = find_paintings(photo)
    assert np.abs(found - steep).max() <= 4


def test_a_dark_painting_in_a_gold_frame_is_found_at_the_canvas():
    """The frame's edge with a dark canvas is much sharper than its edge with a light wall, so the sides snap onto
    the canvas, and the frame, not the wall, lies just outside them: still a painting, answered as its canvas."""
    photo, canvas = framed_on_wall((painting(300, 200, seed=9) * 0.35).astype(np.uint8), (212, 175, 85))
    [found] = find_paintings(photo)
    assert np.abs(found - canvas).max() <= 4


def test_a_frame_is_cut_off_when_straightened_but_not_a_canvas():
    """The outline is the frame's (what a person sees as the painting's edge); the model is shown the canvas."""
    photo, inner = framed_on_wall(painting(300, 200, seed=9), (180, 140, 60))
    regions = find_paintings(photo)
    assert len(regions) == 1 and np.abs(regions[0] - CORNERS).max() <= 4
    canvas, whole = straighten(photo, regions[0]), straighten(photo, regions[0], trim_frame=False)
    assert canvas.size == pytest.approx(straighten(photo, inner, trim_frame=False).size, rel=0.04)
    assert whole.size == pytest.approx(straighten(photo, CORNERS, trim_frame=False).size, rel=0.02)
    assert np.asarray(canvas, np.float32)[5:-5, 5:-5].std() > 30  # the painting, not the frame's plain gold
    noisy = np.clip(painting(160, 120, seed=10) + np.random.default_rng(0).normal(0, 12, (120, 160, 3)), 0, 255)
    unframed = Image.fromarray(hang(wall(640, 480), noisy.astype(np.uint8), CORNERS * 0.5 + 100))
    found = find_paintings(unframed)
    assert len(found) == 1
    assert straighten(unframed, found[0]).size == straighten(unframed, found[0], trim_frame=False).size  # not cut


def test_corners_are_in_the_original_pictures_pixels():
    big = CORNERS * 3
    photo = Image.fromarray(hang(wall(1920, 1440), painting(900, 600, seed=2), big))
    regions = find_paintings(photo)
    assert len(regions) == 1 and np.abs(regions[0] - big).max() <= 10


@pytest.mark.parametrize("kind", ["painting", "inner rectangle", "dark border", "plain sky"])
def test_a_scan_is_used_whole(kind):
    """A picture that is only the painting, even one with a strong rectangle of its own, is not cut."""
    art = painting(320, 260, seed=3)
    if kind == "inner rectangle":  # a dark square on a brushed ground (Malevich-like)
        art[50:210, 60:260] = painting(200, 160, seed=4) // 6
    if kind == "dark border":  # the artist's own dark border around the picture
        art[:18], art[-18:], art[:, :18], art[:, -18:] = 25, 25, 25, 25
    if kind == "plain sky":  # a calm sky above a busy shore: smooth like a wall, but on one side only
        sky = np.linspace(235, 190, 130, dtype=np.float32)[:, None, None] * np.float32([0.8, 0.9, 1.0])
        art[:130] = np.clip(sky + np.random.default_rng(1).normal(0, 2, (130, 320, 3)), 0, 255)
    assert find_paintings(Image.fromarray(art)) == []


def test_two_paintings_give_two_regions_largest_first():
    small = np.float32([[420, 150], [580, 150], [580, 330], [420, 330]])
    large = np.float32([[60, 80], [340, 80], [340, 400], [60, 400]])
    photo = hang(hang(wall(640, 480), painting(160, 180, seed=5), small), painting(280, 320, seed=6), large)
    regions = find_paintings(Image.fromarray(photo))
    assert len(regions) == 2
    assert np.abs(regions[0] - large).max() <= 4 and np.abs(regions[1] - small).max() <= 4


def test_draw_outlines_marks_each_region_and_keeps_the_picture():
    photo = Image.fromarray(wall(640, 480))
    drawn = np.asarray(draw_outlines(photo, [CORNERS]), np.int32)
    assert drawn.shape == (480, 640, 3)
    on_outline = drawn[110, 300] - np.asarray(photo)[110, 300]  # the top side passes through (300, ~110)
    assert np.abs(on_outline).max() > 50
    assert np.array_equal(drawn[460, 20], np.asarray(photo)[460, 20])  # far from it, untouched


def test_simulated_photos_are_deterministic_per_seed():
    art = Image.fromarray(painting(224, 224, seed=7))
    first, again, other = simulate_photo(art, seed=3), simulate_photo(art, seed=3), simulate_photo(art, seed=4)
    assert np.array_equal(np.asarray(first.photo), np.asarray(again.photo))
    assert np.array_equal(first.corners, again.corners)
    assert not np.array_equal(np.asarray(first.photo), np.asarray(other.photo))


@pytest.mark.parametrize("style", ["phone", "oblique"])
def test_simulated_corners_hold_the_painting(style):
    """The same seed hangs a green and a red painting in the same place: where the two photos differ (the
    painting) lies inside the corners, and fills them; the perfect crop is the painting alone."""
    green, red = Image.new("RGB", (224, 224), (0, 200, 0)), Image.new("RGB", (224, 224), (200, 0, 0))
    for seed in range(3):
        shot, other = simulate_photo(green, seed=seed, style=style), simulate_photo(red, seed=seed, style=style)
        assert np.array_equal(shot.corners, other.corners)
        differs = np.abs(np.asarray(shot.photo, np.int32) - np.asarray(other.photo, np.int32)).max(-1) > 60
        inside = np.zeros(differs.shape, np.uint8)
        cv2.fillConvexPoly(inside, np.round(shot.corners).astype(np.int32), 1)
        grown = cv2.dilate(inside, np.ones((5, 5), np.uint8)).astype(bool)
        shrunk = cv2.erode(inside, np.ones((9, 9), np.uint8)).astype(bool)
        assert differs[~grown].mean() < 0.001  # no painting outside its corners
        assert differs[shrunk].mean() > 0.98  # and the painting everywhere inside them
        crop = np.asarray(shot.cropped).astype(np.int32)
        assert (crop[..., 1] > crop[..., 0] + 40).mean() > 0.95  # the perfect crop is the painting alone


def test_simulated_styles_differ_in_distance():
    art = Image.fromarray(painting(224, 224, seed=8))
    share = {}
    for style in ("phone", "oblique"):
        shots = [simulate_photo(art, seed=s, style=style) for s in range(4)]
        share[style] = np.mean([cv2.contourArea(s.corners) / np.prod(s.photo.size) for s in shots])
    assert share["oblique"] < share["phone"]
