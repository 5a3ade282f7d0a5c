"""Find the painting(s) in a picture, and straighten each into an upright rectangle (OpenCV).

A phone photo of a painting shows a wall around it; a scan, a tight crop or a screenshot of a painting shows
only the painting. `find_paintings` tells the two apart and returns, for a photo, each painting's four corners:

    regions = find_paintings(picture)           # [] = the picture already is the painting: use it whole
    paintings = [straighten(picture, corners) for corners in regions]   # largest first

How, on small copies (SEARCH_SIDE, SNAP_SIDE px; corners are scaled back to the original):
1. the wall: smooth pixels of the wall's colour (a quadratic colour field fitted to the picture's border strip,
   so uneven light stays wall) connected to the border. No wall along most of the border (the border is the
   painting's own texture), or a border flat as only a computer makes it: the picture is the painting.
2. what the wall surrounds: each large blob's hull as a quadrilateral, each side then snapped onto the outermost
   sharp straight edge near it (a frame's outer edge, not the shadow's).
3. a painting is a quadrilateral that could be a rectangle seen by a phone, clear of the picture's edges, not a
   scan's own margin (large and exactly upright), filled by its blob, with a clear edge along every side and
   plain wall (or shadow) just outside them, or else a frame (its edge with a dark canvas was the sharper: the
   painting is then the canvas inside it).
`straighten` warps the outline to an upright rectangle and, by default, cuts off a frame seen inside it.
Measured by benchmarks/bench_locate.py (real gallery photos with masks, clean scans, simulated photos).
"""
from __future__ import annotations

import functools

import cv2
import numpy as np
from PIL import Image

SEARCH_SIDE = 192        # px: the long side the wall is found at
SNAP_SIDE = 384          # px: the long side the painting's edges are found at (corners are scaled back)
MIN_SIDE = 32            # px: pictures smaller than this are used whole
MIN_AREA = 0.04          # a painting covers at least this share of the picture
MAX_AREA = 0.92          # ... and at most this share: more, and the picture is the painting
MIN_FILL = 0.9           # the candidate fills at least this share of its quadrilateral
MEAN_PLAIN = 0.5         # ... and a strip outside its sides is at least this share plain (wall or shadow)
GAP = 2                  # px (at SEARCH_SIDE) between a side and that strip: the edge itself is not smooth
RING = 0.03              # that strip's width (share of the long side)
SNAP = 0.05              # a side moves at most this share of the long side onto an edge
TURN = 4                 # px (at SNAP_SIDE): how far each end of a side may then move to turn it onto the edge
SHARP = 0.6              # edges at least this share as sharp as the sharpest near a side count as sharp
MIN_BORDER_WALL = 0.5    # a photo of a painting shows wall along at least this share of its outermost pixels
SIDE_WALL = 0.6          # ... and on at least 3 of its 4 edges, on this share of each
CLIPPED = 250            # Lab lightness (of 255) from which a camera may have clipped a pixel to white
FLAT = 0.05              # a border this close to one smooth colour field (median Lab distance) is digital:
                         # a scan's or a screenshot's margin, an artist's flat border, never a photographed wall
UPRIGHT = 0.5            # degrees: a large candidate this square to the picture is a scan's margin ...
SCAN_AREA = 0.6          # ... when it covers at least this share of the picture
MIN_MARGIN = 0.005       # a painting on a wall is at least this share of the picture's side from each edge
MAX_SKEW = 35            # degrees: a painting's corners look at most this far from a right angle (a phone
                         # 45 degrees to one side of a painting sees up to about 32)
MIN_SIDE_RATIO = 0.6     # ... and its opposite sides at least this similar in length
MIN_SUPPORT = 0.4        # every side of a painting runs along a clear edge on at least this share of its length
SUPPORT_EDGE = 16.0      # Lab gradient (Sobel, at SNAP_SIDE) of a clear edge
EDGE = 24.0              # Lab gradient (Sobel) above which a pixel is an edge
BORDER = 0.03            # the wall's colour is modelled from a border strip this wide (share of the long side)
WALL_DISTANCE = 20.0     # Lab distance from the wall's colour under which a pixel may be wall
FRAMES = 2               # straighten cuts off up to this many frames inside each other (a frame, then a mat)
FRAME_SIDE = 256         # px: the long side a frame is looked for at
FRAME_WIDTH = 0.15       # a frame is at most this share of the painting's width (or height) on each side
FRAME_EDGE = 30.0        # Lab gradient (Sobel, mean along the side) of a frame's inner edge
FRAME_STD = 12.0         # a frame's colour varies at most this much (Lab) along a side
COLOURS = [(255, 64, 64), (64, 200, 255), (255, 200, 0), (120, 255, 120)]


def find_paintings(picture: Image.Image | np.ndarray, max_paintings: int = 4) -> list[np.ndarray]:
    """Each painting's corners (4, 2) float32 in `picture`'s pixels, clockwise from top-left, largest first.
    [] means the picture already is the painting (no wall around anything that looks like one).
    `picture`: a PIL image or an RGB uint8 array (h, w, 3) (`rgb_array`: convert once, locate and straighten)."""
    rgb = rgb_array(picture)
    if min(rgb.shape[:2]) < MIN_SIDE:  # a thumbnail shows no wall worth the name
        return []
    fine, scale = shrunk(rgb, SNAP_SIDE)
    coarse, factor = shrunk(fine, SEARCH_SIDE)
    lab = lab_of(coarse)
    gx, gy = gradients(lab)
    smooth = cv2.dilate(edge_map(gx, gy).astype(np.uint8), np.ones((3, 3), np.uint8)) == 0
    if border_share(smooth) < MIN_BORDER_WALL:  # the wall is smooth: a textured border is the painting's own
        return []
    coef = wall_colour_field(lab)
    edges = edge_distances(lab, coef)  # the wall is smooth and wall-coloured: first see that on the edges alone
    if not may_show_wall(smooth & (edges < WALL_DISTANCE ** 2)) or digital_border(lab, edges):
        return []
    squared = wall_colour_distance(lab, coef)
    wall_coloured = squared < WALL_DISTANCE ** 2
    wall = wall_mask(smooth, wall_coloured)
    if not may_show_wall(wall):
        return []
    plain = smooth | wall_coloured
    fine_gradients = None
    candidates = []
    for blob in blobs(~wall):
        rough = fit_quad(blob)
        if not filled(rough, blob, MIN_FILL - 0.1, MAX_AREA + 0.05):  # far off before snapping: no need to snap
            continue
        fine_gradients = fine_gradients or gradients(lab_of(fine), cv2.CV_16S)
        quad = snap_to_edges(rough / factor, *fine_gradients)
        if not (clear_of_edges(quad, fine.shape) and rectangular(quad) and not scanned_margin(quad, fine.shape)
                and edge_support(quad, *fine_gradients) >= MIN_SUPPORT):
            continue
        painting = hung_painting(quad, rough / factor, factor, fine, blob, plain)
        if painting is not None:
            candidates.append(painting)
    candidates.sort(key=lambda q: -cv2.contourArea(q))
    return [(q / scale).astype(np.float32) for q in candidates[:max_paintings]]


def rgb_array(picture: Image.Image | np.ndarray) -> np.ndarray:
    """`picture` as an RGB uint8 array (h, w, 3); an array is used as it is (no copy)."""
    if isinstance(picture, np.ndarray):
        return picture
    return np.asarray(picture if picture.mode == "RGB" else picture.convert("RGB"))


def shrunk(rgb: np.ndarray, side: int) -> tuple[np.ndarray, float]:
    """`rgb` with its long side at most `side` px, and the scale factor used: halved (pixel areas averaged, cheap)
    while still twice too large, then bilinear the rest of the way."""
    long = max(rgb.shape[:2])
    small = rgb
    while max(small.shape[:2]) >= 2 * side:
        small = cv2.resize(small, (small.shape[1] // 2, small.shape[0] // 2), interpolation=cv2.INTER_AREA)
    scale = min(side, max(small.shape[:2])) / long
    if max(small.shape[:2]) > side:
        size = (max(1, round(rgb.shape[1] * scale)), max(1, round(rgb.shape[0] * scale)))
        small = cv2.resize(small, size, interpolation=cv2.INTER_LINEAR)
    return small, scale


def lab_of(rgb: np.ndarray) -> np.ndarray:
    """Lightly blurred CIE Lab, uint8 (OpenCV's 8-bit scaling)."""
    return cv2.cvtColor(cv2.GaussianBlur(rgb, (5, 5), 0), cv2.COLOR_RGB2LAB)


def gradients(lab: np.ndarray, depth: int = cv2.CV_32F) -> tuple[np.ndarray, np.ndarray]:
    """Sobel x and y derivatives of each channel of uint8 `lab`, (h, w, 3) each: float32, or int16 (exact, half
    the memory) for `depth` cv2.CV_16S."""
    return cv2.Sobel(lab, depth, 1, 0), cv2.Sobel(lab, depth, 0, 1)


def edge_map(gx: np.ndarray, gy: np.ndarray) -> np.ndarray:
    """Where colour changes sharply (the strongest channel's gradient), as a bool mask; gx, gy float32."""
    squared = cv2.multiply(gx, gx)
    cv2.accumulateSquare(gy, squared)  # compared squared: no square root over the picture
    squared = strongest(cv2.split(squared))
    return squared > max(EDGE * EDGE, 16 * float(np.median(squared[::4, ::4])))


def strongest(channels: np.ndarray | tuple[np.ndarray, ...]) -> np.ndarray:
    """The largest of 3 channels (a last axis of 3, or 3 arrays) at each pixel (numpy's max over a
    last axis of 3 is slow)."""
    if isinstance(channels, (list, tuple)):
        return cv2.max(cv2.max(channels[0], channels[1]), channels[2])
    return np.maximum(np.maximum(channels[..., 0], channels[..., 1]), channels[..., 2])


def wall_colour_field(lab: np.ndarray) -> np.ndarray:
    """The wall's colour as a smooth (quadratic) field over the picture, fitted to its border strip so that light
    falling unevenly on the wall stays 'wall': (6, 3) float32 coefficients of 1, x, y, xy, x², y² (x and y from
    -0.5 to 0.5 across the picture) for each Lab channel."""
    ys, xs, a = border_samples(*lab.shape[:2])
    b = lab[ys, xs].astype(np.float32)
    coef = least_squares(a, b)  # fit, then refit on the better-fitting 60% (what is not wall on the border drops out)
    squared = np.square(b - a @ coef).sum(1)
    keep = squared <= np.quantile(squared, 0.6)
    return least_squares(a[keep], b[keep])


def least_squares(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The coefficients x minimising |a x - b|² (slightly regularised), a (n, 6), b (n, 3)."""
    return np.linalg.solve(a.T @ a + 1e-3 * np.eye(a.shape[1], dtype=np.float32), a.T @ b)


@functools.lru_cache(maxsize=8)
def field_terms(h: int, w: int) -> np.ndarray:
    """The field's terms 1, x, y, xy, x², y² at each pixel of an (h, w) picture (x and y from -0.5 to 0.5 across
    it), (h, w, 6) float32; cached, read-only."""
    x = np.broadcast_to(np.linspace(-0.5, 0.5, w, dtype=np.float32), (h, w))
    y = np.broadcast_to(np.linspace(-0.5, 0.5, h, dtype=np.float32)[:, None], (h, w))
    return frozen(np.stack([np.ones((h, w), np.float32), x, y, x * y, x * x, y * y], -1))


@functools.lru_cache(maxsize=8)
def border_samples(h: int, w: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every third pixel (ys, xs) of an (h, w) picture's border strip, and the field's terms there (n, 6);
    cached, read-only."""
    strip = max(2, round(BORDER * max(h, w)))
    border = np.zeros((h, w), bool)
    border[:strip], border[-strip:], border[:, :strip], border[:, -strip:] = True, True, True, True
    ys, xs = np.nonzero(border)
    ys, xs = ys[::3], xs[::3]  # every third border pixel is plenty
    return frozen(ys), frozen(xs), frozen(field_terms(h, w)[ys, xs])


def frozen(array: np.ndarray) -> np.ndarray:
    """`array`, made read-only (it is cached and shared between calls)."""
    array.flags.writeable = False
    return array


def colour_distance(lab: np.ndarray, terms: np.ndarray, coef: np.ndarray) -> np.ndarray:
    """How far uint8 colours `lab` (h, w, 3) with field terms `terms` (h, w, 6) are from the wall's colour field,
    squared (Lab units²), (h, w) float32. Lightness counts half: a shadow on the wall is still wall-like."""
    difference = cv2.subtract(lab, terms @ coef, dtype=cv2.CV_32F)
    return cv2.transform(cv2.multiply(difference, difference), np.float32([[0.25, 1.0, 1.0]])).reshape(lab.shape[:2])


def wall_colour_distance(lab: np.ndarray, coef: np.ndarray) -> np.ndarray:
    """`colour_distance` of every pixel, (h, w) float32."""
    return colour_distance(lab, field_terms(*lab.shape[:2]), coef)


def edge_distances(lab: np.ndarray, coef: np.ndarray) -> np.ndarray:
    """`colour_distance` on the picture's outermost pixels only (h, w), as `wall_colour_distance` has it there;
    infinite inside."""
    terms = field_terms(*lab.shape[:2])
    squared = np.full(lab.shape[:2], np.inf, np.float32)
    squared[[0, -1]] = colour_distance(lab[[0, -1]], terms[[0, -1]], coef)
    squared[:, [0, -1]] = colour_distance(lab[:, [0, -1]], terms[:, [0, -1]], coef)
    return squared


def may_show_wall(wall: np.ndarray) -> bool:
    """Is `wall` (or anything the wall lies within) seen along enough of the picture's border, and on at least
    3 of its 4 edges? When not, the picture is the painting."""
    return border_share(wall) >= MIN_BORDER_WALL and walled_sides(wall) >= 3


def wall_mask(smooth: np.ndarray, wall_coloured: np.ndarray) -> np.ndarray:
    """The smooth, wall-coloured area connected to the picture's border: the wall, if there is one."""
    count, labels = cv2.connectedComponents((smooth & wall_coloured).astype(np.uint8), connectivity=4)
    on_border = np.zeros(count, bool)  # a lookup table: label -> is it on the border
    on_border[labels[0]], on_border[labels[-1]], on_border[labels[:, 0]], on_border[labels[:, -1]] = (True,) * 4
    on_border[0] = False
    return on_border[labels]


def blobs(mask: np.ndarray) -> list[np.ndarray]:
    """The large connected parts of `mask` (bool), each as a filled uint8 mask, after cutting thin links."""
    mask = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_OPEN, np.ones((5, 5), np.uint8))
    count, labels = cv2.connectedComponents(mask, connectivity=4)
    areas = np.bincount(labels.ravel(), minlength=count)  # (cheaper than connectedComponentsWithStats)
    return [(labels == i).astype(np.uint8) for i in range(1, count) if areas[i] >= MIN_AREA * mask.size]


def fit_quad(blob: np.ndarray) -> np.ndarray:
    """The quadrilateral (4, 2) float32 clockwise from top-left that the blob's hull is (approximated), or the
    hull's smallest enclosing rectangle when it is no quadrilateral."""
    contours, _ = cv2.findContours(blob, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    hull = cv2.convexHull(max(contours, key=cv2.contourArea))
    perimeter = cv2.arcLength(hull, True)
    for epsilon in (0.01, 0.02, 0.03, 0.05):
        approx = cv2.approxPolyDP(hull, epsilon * perimeter, True)
        if len(approx) == 4:
            return clockwise(approx[:, 0].astype(np.float32))
    return clockwise(cv2.boxPoints(cv2.minAreaRect(hull)).astype(np.float32))


def snap_to_edges(quad: np.ndarray, gx: np.ndarray, gy: np.ndarray) -> np.ndarray:
    """Move each side of `quad` onto the sharpest straight edge near it, the outermost one when several are
    about as sharp (a frame's outer edge, not its inner one, nor the soft edge of the shadow it casts), then
    turn it a little onto the edge; the corners are where the new sides meet. (All 4 sides at once.)"""
    h, w = gx.shape[:2]
    reach = max(4, round(SNAP * max(h, w)))
    offsets = np.arange(-reach, reach + 1, dtype=np.float32)
    turns = np.arange(-TURN, TURN + 1, dtype=np.float32)
    p, q = quad, np.roll(quad, -1, axis=0)
    normals = outward_normals(quad)
    parallel = edge_strength(p, q, normals, offsets[None], offsets[None], gx, gy)  # (4 sides, offsets)
    good = parallel >= SHARP * parallel.max(1, keepdims=True)
    shifts = offsets[len(offsets) - 1 - np.argmax(good[:, ::-1], axis=1)]  # each side's outermost sharp edge
    turned = edge_strength(p, q, normals, (shifts[:, None] + turns)[:, :, None], (shifts[:, None] + turns)[:, None],
                           gx, gy)  # (4 sides, turns of its start, turns of its end)
    d1, d2 = np.unravel_index(np.argmax(turned.reshape(4, -1), axis=1), turned.shape[1:])  # each side's best turn
    a = p + (shifts + turns[d1])[:, None] * normals
    b = q + (shifts + turns[d2])[:, None] * normals
    ones = np.ones((4, 1))
    lines = np.cross(np.hstack([a, ones]), np.hstack([b, ones]))  # each side as a line (homogeneous coordinates)
    corners = np.cross(np.roll(lines, 1, axis=0), lines)  # corner i: where side i - 1 meets side i
    meet = np.abs(corners[:, 2]) > 1e-9
    return np.where(meet[:, None], corners[:, :2] / np.where(meet, corners[:, 2], 1)[:, None], quad).astype(np.float32)


def edge_strength(p: np.ndarray, q: np.ndarray, normals: np.ndarray, start: np.ndarray, end: np.ndarray,
                  gx: np.ndarray, gy: np.ndarray) -> np.ndarray:
    """How sharp an edge runs along each segment from p + start * normal to q + end * normal (p, q, normals:
    (sides, 2)): the mean, over points along it, of the colour gradient across it (the channel that changes
    most). `start` and `end` (sides, ...) broadcast together; the result has their shape."""
    along = np.linspace(0.08, 0.92, 32, dtype=np.float32)
    shift = np.asarray(start)[..., None] * (1 - along) + np.asarray(end)[..., None] * along  # (sides, ..., 32)
    per_side = (len(p),) + (1,) * (shift.ndim - 2)
    base = (p[:, None] + along[:, None] * (q - p)[:, None]).reshape(*per_side, len(along), 2)
    normal = normals.reshape(*per_side, 1, 2)
    return gradient_across(base + shift[..., None] * normal, normal, gx, gy).mean(-1)


def gradient_across(points: np.ndarray, normal: np.ndarray, gx: np.ndarray, gy: np.ndarray) -> np.ndarray:
    """The colour gradient along `normal` (broadcasting with `points`' leading axes) at each of `points` (..., 2),
    rounded to pixels and clipped to the picture: the channel that changes most."""
    h, w = gx.shape[:2]
    x = np.clip(np.round(points[..., 0]).astype(int), 0, w - 1)
    y = np.clip(np.round(points[..., 1]).astype(int), 0, h - 1)
    index = y * w + x
    across = np.take(gx.reshape(-1, 3), index, axis=0) * normal[..., :1]
    across += np.take(gy.reshape(-1, 3), index, axis=0) * normal[..., 1:]
    return strongest(np.abs(across))


def outward_normals(quad: np.ndarray) -> np.ndarray:
    """`outward_normal` of each side of a clockwise quadrilateral, (4, 2) float32."""
    return np.stack([outward_normal(quad[i], quad[(i + 1) % 4]) for i in range(4)])


def clockwise(points: np.ndarray) -> np.ndarray:
    """Four points ordered clockwise (in image coordinates, y down) starting from the top-left one."""
    centre = points.mean(0)
    order = np.argsort(np.arctan2(points[:, 1] - centre[1], points[:, 0] - centre[0]))
    points = points[order]
    return np.roll(points, -int(np.argmin(points.sum(1))), axis=0)


def border_pixels(image: np.ndarray) -> np.ndarray:
    """The picture's outermost pixels, in one array."""
    return np.concatenate([image[0], image[-1], image[1:-1, 0], image[1:-1, -1]])


def digital_border(lab: np.ndarray, squared_distance: np.ndarray) -> bool:
    """Is the picture's border one flat colour field, as only a computer makes it (a scan's or a screenshot's
    margin, an artist's flat border)? A photographed wall always varies a little, except where the camera
    clipped it to white, which says nothing either way."""
    unclipped = border_pixels(lab[..., 0]) < CLIPPED
    return unclipped.mean() > 0.5 and float(np.median(border_pixels(squared_distance)[unclipped])) < FLAT ** 2


def walled_sides(wall: np.ndarray) -> int:
    """On how many of the picture's four edges the wall is seen (on at least SIDE_WALL of the edge): a wall is
    around the painting, a sky or a dark background in a painting is on one side of it."""
    return sum(float(edge.mean()) >= SIDE_WALL for edge in (wall[0], wall[-1], wall[:, 0], wall[:, -1]))


def border_share(mask: np.ndarray) -> float:
    """The share of the picture's outermost pixels that are in `mask`."""
    return float(border_pixels(mask).mean())


def clear_of_edges(quad: np.ndarray, shape: tuple) -> bool:
    """Is `quad` inside the picture with a margin (wall) between it and every edge of the picture?"""
    h, w = shape[:2]
    margin = MIN_MARGIN * max(h, w)
    return bool((quad.min(0) >= margin).all() and (quad.max(0) <= (w - 1 - margin, h - 1 - margin)).all())


def scanned_margin(quad: np.ndarray, shape: tuple) -> bool:
    """Is `quad` the inside of a scan's own margin (a mount, a plate mark, a painted border)? Large, and square to
    the picture to within UPRIGHT degrees on every side: a phone held by hand is not that square to a painting."""
    sides = np.roll(quad, -1, axis=0) - quad
    off = np.degrees(np.arctan2(np.abs(sides).min(1), np.abs(sides).max(1)))  # each side: from level or plumb
    return bool(off.max() <= UPRIGHT and cv2.contourArea(quad) >= SCAN_AREA * shape[0] * shape[1])


def rectangular(quad: np.ndarray) -> bool:
    """Could `quad` be a rectangle seen from a phone: convex, its corners' angles within MAX_SKEW of a right
    angle, and opposite sides of similar length?"""
    if not cv2.isContourConvex(np.round(quad).astype(np.int32)):
        return False
    sides = np.roll(quad, -1, axis=0) - quad
    lengths = np.hypot(sides[:, 0], sides[:, 1])
    if lengths.min() < 1 or min(lengths[0] / lengths[2], lengths[2] / lengths[0],
                                lengths[1] / lengths[3], lengths[3] / lengths[1]) < MIN_SIDE_RATIO:
        return False
    cosines = [abs(sides[i - 1] @ sides[i]) / (lengths[i - 1] * lengths[i]) for i in range(4)]
    return max(cosines) <= np.sin(np.radians(MAX_SKEW))


def edge_support(quad: np.ndarray, gx: np.ndarray, gy: np.ndarray) -> float:
    """The weakest side's share of points with a clear edge across it (within a px of the side)."""
    along = np.linspace(0.05, 0.95, 48, dtype=np.float32)
    p, q = quad, np.roll(quad, -1, axis=0)
    normals = outward_normals(quad)[:, None, None]  # (side, depth, along, 2)
    points = (p[:, None] + along[:, None] * (q - p)[:, None])[:, None] + (
        np.arange(-1, 2, dtype=np.float32)[:, None, None] * normals)
    across = gradient_across(points, normals, gx, gy).max(1)  # (side, along)
    return float((across > SUPPORT_EDGE).mean(1).min())


def hung_painting(quad: np.ndarray, outline: np.ndarray, factor: float, fine: np.ndarray, blob: np.ndarray,
                  plain: np.ndarray) -> np.ndarray | None:
    """`quad` if it is a painting on a wall: filled by its blob, clearly smaller than the picture, and something
    plain just outside its sides (smooth or wall-coloured: the wall, or the shadow the painting casts on it).
    Failing that, the inside of a frame seen between `quad` and the blob's `outline` (`quad` was snapped onto the
    frame's inner edge on some sides: its outer edge was fainter). Else None. (`quad`, `outline`: `fine`'s
    pixels; `blob`, `plain`: SEARCH_SIDE's, `factor` times those.)"""
    if not filled(quad * factor, blob, MIN_FILL, MAX_AREA):
        return None
    if plain_beside(quad * factor, plain).mean() >= MEAN_PLAIN:
        return quad
    return inside_frame(fine, outline)


def filled(quad: np.ndarray, blob: np.ndarray, fill: float, max_area: float) -> bool:
    """Does `quad` cover between MIN_AREA and `max_area` of the picture, `fill` of it by `blob`?"""
    area = cv2.contourArea(quad)
    if not MIN_AREA * blob.size <= area <= max_area * blob.size:
        return False
    inside = np.zeros_like(blob)
    cv2.fillConvexPoly(inside, np.round(quad).astype(np.int32), 1)
    return bool((inside & blob).sum() >= fill * inside.sum())


def plain_beside(quad: np.ndarray, plain: np.ndarray) -> np.ndarray:
    """The plain share of a strip just outside each side of a clockwise quadrilateral, (4,) (outside the picture
    counts as not plain)."""
    h, w = plain.shape
    along = np.linspace(0.1, 0.9, 24)[:, None]
    p, q = quad, np.roll(quad, -1, axis=0)
    gap = np.arange(GAP, GAP + max(4, round(RING * max(h, w))))[None, :, None]
    points = (p[:, None] + along * (q - p)[:, None])[:, :, None, :] + gap * outward_normals(quad)[:, None, None]
    x, y = np.round(points[..., 0]).astype(int), np.round(points[..., 1]).astype(int)
    inside = (x >= 0) & (x < w) & (y >= 0) & (y < h)
    return np.where(inside, plain[np.clip(y, 0, h - 1), np.clip(x, 0, w - 1)], False).mean((1, 2))


def outward_normal(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """The unit normal of side p -> q pointing out of a clockwise (y down) quadrilateral."""
    t = (q - p) / max(float(np.hypot(*(q - p))), 1e-6)
    return np.array([t[1], -t[0]], np.float32)


def straighten(picture: Image.Image | np.ndarray, corners: np.ndarray, trim_frame: bool = True) -> Image.Image:
    """The quadrilateral `corners` (TL, TR, BR, BL) of `picture` warped to an upright rectangle at its own aspect
    ratio (its mean side lengths, so the painting keeps about the resolution it has in the picture). With
    `trim_frame`, a frame (or mat) seen inside the corners is cut off: the outline of a framed painting is the
    frame's, but the model should see the canvas. `picture`: as for `find_paintings`."""
    rgb = rgb_array(picture)
    corners = np.asarray(corners, np.float32)
    if corners.shape != (4, 2) or abs(cv2.contourArea(corners)) < 1:
        raise ValueError(f"straighten needs 4 corners (x, y) enclosing an area, not {corners.tolist()}")
    for _ in range(FRAMES if trim_frame else 0):
        inner = inside_frame(rgb, corners)
        if inner is None:
            break
        corners = inner
    return Image.fromarray(warp(rgb, corners, upright_size(corners)))


def upright_size(corners: np.ndarray) -> tuple[int, int]:
    """(width, height) of the upright rectangle for `corners`: the mean lengths of opposite sides."""
    lengths = np.hypot(*(np.roll(corners, -1, axis=0) - corners).T)  # top, right, bottom, left
    width, height = (lengths[0] + lengths[2]) / 2, (lengths[1] + lengths[3]) / 2
    return max(1, round(width)), max(1, round(height))


def warp(rgb: np.ndarray, corners: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The quadrilateral `corners` of `rgb` warped onto an upright `size` (width, height) rectangle."""
    width, height = size
    target = np.array([[0, 0], [width, 0], [width, height], [0, height]], np.float32)
    matrix = cv2.getPerspectiveTransform(corners, target)
    return cv2.warpPerspective(rgb, matrix, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def inside_frame(rgb: np.ndarray, corners: np.ndarray) -> np.ndarray | None:
    """The corners of what a frame inside `corners` holds, or None when there is no frame: on each side, a sharp
    straight edge parallel to it, at most FRAME_WIDTH in and standing out from the edges around it, with a
    band of one colour between (the frame), plainer than the painting just inside it."""
    width, height = upright_size(corners)
    scale = min(1.0, FRAME_SIDE / max(width, height))
    size = (max(8, round(width * scale)), max(8, round(height * scale)))
    lab8 = lab_of(warp(rgb, corners, size))
    gx, gy = gradients(lab8, cv2.CV_16S)
    lab = lab8.astype(np.float32)
    colours = {"top": lab, "bottom": lab[::-1], "left": lab.transpose(1, 0, 2), "right": lab.transpose(1, 0, 2)[::-1]}
    insets = {}
    for side, colour in colours.items():  # rows = depth in from that side, columns = along it
        depth, length = colour.shape[:2]
        middle = slice(length // 10, length - length // 10)
        low, high = max(2, round(0.015 * depth)), max(3, round(FRAME_WIDTH * depth))
        strength = edge_band(side, high, gx, gy)  # the gradient across the side, to `high` deep
        profile = strength[:, middle].mean(1)
        inset = low + int(np.argmax(profile[low:high]))
        band = colour[1:inset, middle].mean(0)  # the band's colour at each point along the side
        beside = colour[inset + 1:2 * inset + 1, middle].mean(0)  # the same width just inside it
        plainer = band.std(0).max() <= min(FRAME_STD, beside.std(0).max())
        if profile[inset] < max(FRAME_EDGE, 2 * np.median(profile[low:high])) or not plainer:
            return None
        insets[side] = inset / scale
    w, h = size[0] / scale, size[1] / scale
    inner = np.float32([[insets["left"], insets["top"]], [w - insets["right"], insets["top"]],
                        [w - insets["right"], h - insets["bottom"]], [insets["left"], h - insets["bottom"]]])
    target = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float32)
    back = cv2.getPerspectiveTransform(target, corners)
    return cv2.perspectiveTransform(inner[None], back)[0]


def edge_band(side: str, depth: int, gx: np.ndarray, gy: np.ndarray) -> np.ndarray:
    """The gradient across `side` ("top", "bottom", "left", "right") of a picture, in the band `depth` px deep
    along it: rows = depth in from that side, columns = along it (the channel that changes most)."""
    if side in ("top", "bottom"):
        band = strongest(np.abs(gy[:depth] if side == "top" else gy[-depth:]))
        return band if side == "top" else band[::-1]
    band = strongest(np.abs(gx[:, :depth] if side == "left" else gx[:, -depth:]))
    return band.T if side == "left" else band.T[::-1]


def draw_outlines(picture: Image.Image, regions: list[np.ndarray]) -> Image.Image:
    """`picture` with each region's outline drawn and numbered 1, 2, ... (in the order given)."""
    rgb = np.array(picture.convert("RGB"))
    thickness = max(2, round(max(rgb.shape[:2]) / 200))
    for number, corners in enumerate(regions, start=1):
        colour = COLOURS[(number - 1) % len(COLOURS)]
        points = np.round(np.asarray(corners)).astype(np.int32)
        cv2.polylines(rgb, [points], True, colour, thickness, cv2.LINE_AA)
        x, y = points.mean(0).astype(int)
        scale = thickness / 2
        cv2.putText(rgb, str(number), (int(x), int(y)), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thickness * 3,
                    cv2.LINE_AA)
        cv2.putText(rgb, str(number), (int(x), int(y)), cv2.FONT_HERSHEY_SIMPLEX, scale, colour, thickness,
                    cv2.LINE_AA)
    return Image.fromarray(rgb)
