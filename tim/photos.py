"""Simulated phone photos of a painting, seeded: the painting in a frame on a wall, seen by a camera.

The geometry is OpenCV's (a 3-D camera looking at the wall plane, one homography), the light and the camera's
own faults are albumentations' (`camera_effects`). The painting's corners in the photo are known exactly, so the
simulation measures a locator (tim.locate) and what locating wins back for a classifier:

    shot = simulate_photo(painting, seed=3)           # style "phone"; "oblique": further away, more off-axis
    shot.photo, shot.corners, shot.cropped            # the photo, its painting's corners, the perfect crop

Same (painting, seed, style) -> the same photo, pixel for pixel. `reframed` makes other shots of an ordinary
photo (another framing, the same camera effects): more pictures that are not paintings to fit tim.painting on.
"""
from __future__ import annotations

from dataclasses import dataclass

import albumentations as A
import cv2
import numpy as np
from PIL import Image

from tim.locate import straighten

STYLES = ("phone", "oblique")
PHOTO_SIDE = 800        # the photo's long side, px (phone photos as an app receives them, downsized)
PLANE_SCALE = 320       # px per painting long side on the wall plane the camera looks at
WALL_EXTENT = 2.6       # the wall plane reaches this many painting long sides from the painting's centre

# camera pose per style: painting's share of the photo's area, yaw, pitch, roll (degrees)
POSES = {
    "phone": dict(area=(0.30, 0.80), yaw=(-18, 18), pitch=(-10, 10), roll=(-4, 4)),
    "oblique": dict(area=(0.08, 0.30), yaw=(25, 45), pitch=(-18, 18), roll=(-7, 7)),
}
FRAME_COLOURS = np.array([(184, 146, 64), (212, 175, 85), (92, 60, 36), (140, 98, 60), (30, 28, 26),
                          (238, 236, 230), (170, 170, 172), (196, 160, 116)], dtype=np.float32)


@dataclass
class SimulatedPhoto:
    photo: Image.Image      # the whole simulated phone photo
    corners: np.ndarray     # (4, 2) float32: the painting's corners in `photo` pixels, clockwise from top-left
    cropped: Image.Image    # the same painting with the same light and camera effects, perfectly cropped, upright


def camera_effects() -> A.Compose:
    """What a phone adds to what it sees: a colour cast, uneven light or glare, blur, sensor noise, JPEG.
    Strength calibrated on issue 19's measurement: perfectly cropped, the default model scores about 0.6 on these
    photos' paintings (0.74 on the clean scans)."""
    return A.Compose([
        A.OneOf([A.PlanckianJitter(), A.RGBShift(r_shift_limit=10, g_shift_limit=8, b_shift_limit=10)], p=0.6),
        A.RandomBrightnessContrast(brightness_limit=0.15, contrast_limit=0.15, p=0.7),
        A.OneOf([A.Illumination(mode="linear", intensity_range=(0.05, 0.2)),
                 A.Illumination(mode="corner", intensity_range=(0.05, 0.2)),
                 A.Illumination(mode="gaussian", effect_type="brighten", intensity_range=(0.05, 0.2))], p=0.8),
        A.RandomSunFlare(flare_roi=(0.1, 0.1, 0.9, 0.9), src_radius=120, num_flare_circles_range=(1, 3), p=0.1),
        A.OneOf([A.GaussianBlur(blur_limit=(3, 5)), A.MotionBlur(blur_limit=(3, 5)), A.Defocus(radius=(1, 2))],
                p=0.4),
        A.OneOf([A.GaussNoise(std_range=(0.01, 0.04)), A.ISONoise(intensity=(0.05, 0.25))], p=0.6),
        A.ImageCompression(quality_range=(60, 95), p=0.9),
    ])


def simulate_photo(painting: Image.Image, seed: int, style: str = "phone") -> SimulatedPhoto:
    """`painting` framed on a wall and photographed by a seeded random camera (see the module's docstring)."""
    if style not in STYLES:
        raise ValueError(f"photo style {style!r} is not one of {STYLES}")
    rng = np.random.default_rng(seed)
    aspect = float(np.exp(rng.uniform(np.log(0.7), np.log(1.4))))  # width / height of the painting as hung
    plane, painting_corners, frame_width = framed_on_wall(np.asarray(painting.convert("RGB")), aspect, rng)
    size = (PHOTO_SIDE, PHOTO_SIDE * 3 // 4) if rng.random() < 0.5 else (PHOTO_SIDE * 3 // 4, PHOTO_SIDE)
    to_photo = camera(painting_corners, frame_width, size, POSES[style], rng)
    photo = cv2.warpPerspective(plane, to_photo, size, flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE)
    effects = camera_effects()
    effects.set_random_seed(seed)
    photo = Image.fromarray(effects(image=photo)["image"])
    corners = cv2.perspectiveTransform(painting_corners[None], to_photo)[0].astype(np.float32)
    return SimulatedPhoto(photo, corners, straighten(photo, corners, trim_frame=False))


def reframed(picture: Image.Image, count: int, seed: int) -> list[Image.Image]:
    """`count` other shots of the scene in `picture`, seeded: a crop of 30-100% of it at another aspect,
    mirrored or slightly turned half the time, through `camera_effects`."""
    side = min(picture.size)
    shoot = A.Compose([A.RandomResizedCrop(size=(side, side), scale=(0.3, 1.0), ratio=(0.6, 1.6)),
                       A.HorizontalFlip(), A.Rotate(limit=10, p=0.3), camera_effects()], seed=seed)
    rgb = np.asarray(picture.convert("RGB"))
    return [Image.fromarray(shoot(image=rgb)["image"]) for _ in range(count)]


def framed_on_wall(painting: np.ndarray, aspect: float,
                   rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, float]:
    """The wall plane (a textured wall, a frame's shadow, the frame, the painting), the painting's corners on it,
    and the frame's width (in painting long sides)."""
    long = PLANE_SCALE
    w, h = (long, round(long / aspect)) if aspect >= 1 else (round(long * aspect), long)
    art = cv2.resize(painting, (w, h), interpolation=cv2.INTER_CUBIC).astype(np.float32)
    border = int(rng.uniform(0.0, 0.09) * long) if rng.random() < 0.85 else 0
    framed = frame(art, border, rng)
    side = int(2 * WALL_EXTENT * long)
    plane = wall(side, rng)
    fh, fw = framed.shape[:2]
    x0, y0 = (side - fw) // 2, (side - fh) // 2
    shadow = np.zeros((side, side), np.float32)
    dx, dy = rng.integers(2, 10, size=2)
    shadow[y0 + dy:y0 + dy + fh, x0 + dx:x0 + dx + fw] = rng.uniform(0.15, 0.45)
    shadow = cv2.GaussianBlur(shadow, (0, 0), rng.uniform(3, 9))
    plane *= 1 - shadow[..., None]
    plane[y0:y0 + fh, x0:x0 + fw] = framed
    corners = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float32) + (x0 + border, y0 + border)
    return np.clip(plane, 0, 255).astype(np.uint8), corners, border / long


def frame(art: np.ndarray, border: int, rng: np.random.Generator) -> np.ndarray:
    """`art` in a frame `border` px wide, of a random frame colour, lit from above (a bevel)."""
    if border == 0:
        return art
    colour = FRAME_COLOURS[rng.integers(len(FRAME_COLOURS))] * rng.uniform(0.8, 1.1)
    h, w = art.shape[:2]
    out = np.empty((h + 2 * border, w + 2 * border, 3), np.float32)
    out[:] = colour
    ramp = np.linspace(rng.uniform(0.7, 1.0), rng.uniform(1.0, 1.2), border, dtype=np.float32)  # outer -> inner
    x, y = np.arange(out.shape[1])[None], np.arange(out.shape[0])[:, None]
    depth = np.minimum(np.minimum(x, out.shape[1] - 1 - x), np.minimum(y, out.shape[0] - 1 - y))  # px from outside
    out *= ramp[np.clip(depth, 0, border - 1)][..., None]
    out[:border] *= 1.1  # the top rail catches the light, the bottom one is in its own shade
    out[-border:] *= 0.85
    out[border:border + h, border:border + w] = art
    return out


def wall(side: int, rng: np.random.Generator) -> np.ndarray:
    """A wall `side` px square: mostly a light neutral, sometimes a colour, never quite flat (paint, plaster and
    light vary over it at every scale: the real gallery photos' walls all do)."""
    if rng.random() < 0.7:
        colour = rng.uniform(185, 245) + rng.uniform(-8, 8, size=3)
    else:
        hsv = np.uint8([[[rng.integers(0, 180), rng.integers(30, 150), rng.integers(60, 230)]]])
        colour = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0].astype(np.float32)
    plane = np.empty((side, side, 3), np.float32)
    plane[:] = colour
    texture = rng.uniform(2, 6)
    for cells in (side // 64, side // 8):  # broad patches, then small blotches
        blotches = cv2.GaussianBlur(rng.normal(0, 1, (cells, cells)).astype(np.float32), (0, 0), 2)
        blotches = cv2.resize(blotches / (blotches.std() + 1e-6), (side, side), interpolation=cv2.INTER_CUBIC)
        plane += texture * blotches[..., None]
    return plane + rng.normal(0, texture / 3, (side, side, 1)).astype(np.float32)


def camera(painting_corners: np.ndarray, frame_width: float, size: tuple[int, int], pose: dict,
           rng: np.random.Generator) -> np.ndarray:
    """The homography wall plane px -> photo px of a pinhole camera (a phone's field of view) at a random pose
    whose view holds the whole framed painting, the painting filling about pose["area"] of the photo."""
    width, height = size
    focal = max(size) / (2 * np.tan(np.radians(66) / 2))
    yaw = rng.uniform(*pose["yaw"]) * rng.choice([-1, 1])
    pitch, roll = rng.uniform(*pose["pitch"]), rng.uniform(*pose["roll"])
    rotation = cv2.Rodrigues(np.radians([pitch, 0, 0]).astype(np.float64))[0] @ \
        cv2.Rodrigues(np.radians([0, yaw, 0]))[0] @ cv2.Rodrigues(np.radians([0, 0, roll]))[0]
    pw, ph = (painting_corners[2] - painting_corners[0]) / PLANE_SCALE  # the painting, in painting long sides
    area = rng.uniform(*pose["area"])
    distance = focal * np.sqrt(pw * ph / (area * width * height))
    shift = rng.uniform(-0.12, 0.12, size=2) * (width, height) / focal * distance
    unit = np.array([[-pw, -ph], [pw, -ph], [pw, ph], [-pw, ph]]) / 2
    for _ in range(20):  # back off until the painting is inside the photo with a margin
        framed = project(unit + np.sign(unit) * frame_width, rotation, np.array([*shift, distance]), focal, size)
        inside = (framed.min(0) >= 0.03 * np.array(size)).all() and (framed.max(0) <= 0.97 * np.array(size)).all()
        if inside:
            break
        distance *= 1.08
        shift *= 0.8
    image = project(unit, rotation, np.array([*shift, distance]), focal, size)
    return cv2.getPerspectiveTransform(painting_corners.astype(np.float32), image.astype(np.float32))


def project(points: np.ndarray, rotation: np.ndarray, translation: np.ndarray, focal: float,
            size: tuple[int, int]) -> np.ndarray:
    """Points (N, 2) on the wall plane z = 0 -> photo px, by cv2.projectPoints."""
    matrix = np.array([[focal, 0, size[0] / 2], [0, focal, size[1] / 2], [0, 0, 1]])
    world = np.hstack([points, np.zeros((len(points), 1))]).astype(np.float64)
    image, _ = cv2.projectPoints(world, cv2.Rodrigues(rotation)[0], translation.astype(np.float64), matrix, None)
    return image[:, 0]
