"""Find the painting(s) in a picture, and straighten each into an upright rectangle (OpenCV).

A phone photo of a painting shows a wall around it; a scan, a tight crop or a screenshot of a painting shows
only the painting. `find_paintings` tells the two apart and returns, for a photo, each painting's four corners:

    regions = find_paintings(picture)           # [] = the picture already is the painting: use it whole
    paintings = [straighten(picture, corners) for corners in regions]   # largest first

How: on a copy at most WORK_SIDE px, the wall is what is smooth and reachable from the picture's border without
crossing an edge; what the wall surrounds are the candidates. A candidate is a painting when it is a filled
quadrilateral, clearly smaller than the picture, with wall (not more picture) all around it.
"""
from __future__ import annotations

import cv2
import numpy as np
from PIL import Image

WORK_SIDE = 512          # px: the long side the search runs at (corners are scaled back to the original)
MIN_AREA = 0.02          # a painting covers at least this share of the picture
MAX_AREA = 0.92          # ... and at most this share: more, and the picture is the painting
MIN_FILL = 0.85          # the candidate fills at least this share of its quadrilateral
COLOURS = [(255, 64, 64), (64, 200, 255), (255, 200, 0), (120, 255, 120)]


def find_paintings(picture: Image.Image, max_paintings: int = 4) -> list[np.ndarray]:
    """Each painting's corners (4, 2) float32 in `picture`'s pixels, clockwise from top-left, largest first.
    [] means the picture already is the painting (no wall around anything that looks like one)."""
    small, scale = work_copy(picture)
    wall = wall_mask(small)
    candidates = []
    for blob in blobs(~wall):
        quad = fit_quad(blob)
        if quad is not None and looks_hung(quad, blob, wall):
            candidates.append(quad)
    candidates.sort(key=lambda q: -cv2.contourArea(q))
    return [(q / scale).astype(np.float32) for q in candidates[:max_paintings]]


def work_copy(picture: Image.Image) -> tuple[np.ndarray, float]:
    """The picture as RGB uint8 with its long side at most WORK_SIDE, and the scale factor used."""
    rgb = np.asarray(picture.convert("RGB"))
    scale = min(1.0, WORK_SIDE / max(rgb.shape[:2]))
    if scale < 1:
        rgb = cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    return rgb, scale


def edge_map(rgb: np.ndarray) -> np.ndarray:
    """Where colour changes sharply (Lab gradient, the strongest channel), as a bool mask."""
    lab = cv2.cvtColor(cv2.GaussianBlur(rgb, (5, 5), 0), cv2.COLOR_RGB2LAB).astype(np.float32)
    gradient = np.zeros(rgb.shape[:2], np.float32)
    for channel in cv2.split(lab):
        gx, gy = cv2.Sobel(channel, cv2.CV_32F, 1, 0), cv2.Sobel(channel, cv2.CV_32F, 0, 1)
        gradient = np.maximum(gradient, cv2.magnitude(gx, gy))
    noise = np.median(gradient)
    return gradient > max(24.0, 4 * noise)


def wall_mask(rgb: np.ndarray) -> np.ndarray:
    """The smooth area connected to the picture's border: the wall, if there is one."""
    edges = cv2.dilate(edge_map(rgb).astype(np.uint8), np.ones((3, 3), np.uint8))
    count, labels = cv2.connectedComponents(1 - edges, connectivity=4)
    border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    return np.isin(labels, border[border > 0])


def blobs(mask: np.ndarray) -> list[np.ndarray]:
    """The large connected parts of `mask` (bool), each as a filled uint8 mask, after cutting thin links."""
    mask = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_OPEN, np.ones((5, 5), np.uint8))
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=4)
    min_area = MIN_AREA * mask.size
    return [(labels == i).astype(np.uint8) for i in range(1, count) if stats[i, cv2.CC_STAT_AREA] >= min_area]


def fit_quad(blob: np.ndarray) -> np.ndarray | None:
    """The quadrilateral (4, 2) float32 clockwise from top-left that the blob's outline is, or None."""
    contours, _ = cv2.findContours(blob, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    hull = cv2.convexHull(max(contours, key=cv2.contourArea))
    perimeter = cv2.arcLength(hull, True)
    for epsilon in (0.01, 0.02, 0.03, 0.05):
        approx = cv2.approxPolyDP(hull, epsilon * perimeter, True)
        if len(approx) == 4:
            return clockwise(approx[:, 0].astype(np.float32))
    return clockwise(cv2.boxPoints(cv2.minAreaRect(hull)).astype(np.float32))


def clockwise(points: np.ndarray) -> np.ndarray:
    """Four points ordered clockwise (in image coordinates, y down) starting from the top-left one."""
    centre = points.mean(0)
    order = np.argsort(np.arctan2(points[:, 1] - centre[1], points[:, 0] - centre[0]))
    points = points[order]
    return np.roll(points, -int(np.argmin(points.sum(1))), axis=0)


def looks_hung(quad: np.ndarray, blob: np.ndarray, wall: np.ndarray) -> bool:
    """Is this quadrilateral a painting on a wall: filled, clearly smaller than the picture, wall around it?"""
    area = cv2.contourArea(quad)
    if not MIN_AREA * blob.size <= area <= MAX_AREA * blob.size:
        return False
    if blob.sum() < MIN_FILL * area:
        return False
    inside = np.zeros_like(blob)
    cv2.fillConvexPoly(inside, np.round(quad).astype(np.int32), 1)
    ring = cv2.dilate(inside, np.ones((15, 15), np.uint8)) - inside
    return ring.any() and wall[ring > 0].mean() > 0.6


def straighten(picture: Image.Image, corners: np.ndarray) -> Image.Image:
    """The quadrilateral `corners` (TL, TR, BR, BL) of `picture` warped to an upright rectangle at its own aspect
    ratio (its mean side lengths, so the painting keeps about the resolution it has in the picture)."""
    corners = np.asarray(corners, np.float32)
    width = (np.linalg.norm(corners[1] - corners[0]) + np.linalg.norm(corners[2] - corners[3])) / 2
    height = (np.linalg.norm(corners[3] - corners[0]) + np.linalg.norm(corners[2] - corners[1])) / 2
    width, height = max(1, round(width)), max(1, round(height))
    target = np.array([[0, 0], [width, 0], [width, height], [0, height]], np.float32)
    matrix = cv2.getPerspectiveTransform(corners, target)
    rgb = np.asarray(picture.convert("RGB"))
    return Image.fromarray(cv2.warpPerspective(rgb, matrix, (width, height), flags=cv2.INTER_LINEAR,
                                               borderMode=cv2.BORDER_REPLICATE))


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
