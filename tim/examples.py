"""Example pictures for the app: shipped ones if present, else small generated "paintings".

Real paintings from the training data are not ours to redistribute, so Tim
draws its own stand-ins on first use (a landscape, swirls, a geometric
composition, a portrait study, a pond), in several aspect ratios so the
padding and the Grad-CAM mapping are visible. A release can put public-domain
images in tim/bundled/examples/ instead; those are preferred.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from tim.catalog import BUNDLED_DIR
from tim.images import IMAGE_SUFFIXES



def bundled_examples() -> list[Path]:
    folder = BUNDLED_DIR / "examples"
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def example_images(folder: str | os.PathLike | None = None) -> list[Path]:
    """Shipped examples, or generated ones (written once into `folder`, default $TIM_CACHE/examples)."""
    shipped = bundled_examples()
    if shipped:
        return shipped
    if folder is None:
        folder = Path(os.environ.get("TIM_CACHE", Path.home() / ".cache" / "tim")) / "examples"
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, draw in GENERATORS.items():
        path = folder / name
        if not path.is_file():
            tmp = path.with_name(f".{path.name}.tmp{os.getpid()}{path.suffix}")
            draw(np.random.default_rng(sum(map(ord, name)))).save(tmp, quality=90)
            os.replace(tmp, path)
        paths.append(path)
    return paths


def _brush(img: Image.Image, rng: np.random.Generator, strokes: int, length: float = 10, width: int = 3) -> Image.Image:
    """Short strokes in the colour underneath, slightly jittered, then a light blur: a painterly texture."""
    pixels = np.asarray(img).astype(float)
    draw = ImageDraw.Draw(img)
    w, h = img.size
    for _ in range(strokes):
        x, y = rng.uniform(0, w - 1), rng.uniform(0, h - 1)
        angle = rng.uniform(0, math.pi)
        colour = pixels[int(y), int(x)] + rng.normal(0, 14, 3)
        dx, dy = math.cos(angle) * length, math.sin(angle) * length
        draw.line([(x - dx, y - dy), (x + dx, y + dy)], fill=tuple(int(c) for c in colour.clip(0, 255)), width=width)
    return img.filter(ImageFilter.GaussianBlur(0.8))


def _gradient(w: int, h: int, top, bottom) -> Image.Image:
    t = np.linspace(0, 1, h)[:, None, None]
    rows = (1 - t) * np.array(top) + t * np.array(bottom)
    return Image.fromarray(np.repeat(rows, w, axis=1).astype(np.uint8))


def landscape(rng: np.random.Generator) -> Image.Image:
    w, h = 480, 320
    img = _gradient(w, h, (250, 170, 90), (120, 80, 150))
    draw = ImageDraw.Draw(img)
    draw.ellipse([300, 60, 360, 120], fill=(255, 220, 120))
    hills = [(x, 200 + 25 * math.sin(x / 40) + 10 * math.sin(x / 13)) for x in range(0, w + 1, 4)]
    draw.polygon(hills + [(w, h), (0, h)], fill=(60, 70, 50))
    return _brush(img, rng, 900)


def swirls(rng: np.random.Generator) -> Image.Image:
    w, h = 400, 320
    img = Image.new("RGB", (w, h), (20, 40, 100))
    draw = ImageDraw.Draw(img)
    for ring in range(40):
        cx, cy, r = rng.uniform(0, w), rng.uniform(0, h * 0.7), rng.uniform(10, 60)
        points = [(cx + r * math.cos(a / 10) * (1 + a / 200), cy + r * math.sin(a / 10) * (1 + a / 200))
                  for a in range(0, 60)]
        draw.line(points, fill=(80 + ring * 3, 120 + ring * 2, 200), width=3)
    for _ in range(25):
        x, y = rng.uniform(0, w), rng.uniform(0, h * 0.6)
        draw.ellipse([x - 5, y - 5, x + 5, y + 5], fill=(250, 230, 100))
    draw.polygon([(60, h), (80, 120), (100, h)], fill=(20, 30, 20))
    return _brush(img, rng, 600)


def composition(rng: np.random.Generator) -> Image.Image:
    w = h = 360
    img = Image.new("RGB", (w, h), (240, 236, 225))
    draw = ImageDraw.Draw(img)
    xs, ys = [0, 90, 250, w], [0, 140, 290, h]
    colours = [(200, 30, 30), (30, 60, 170), (240, 200, 40), (240, 236, 225)]
    for i in range(3):
        for j in range(3):
            draw.rectangle([xs[i], ys[j], xs[i + 1], ys[j + 1]], fill=colours[rng.integers(len(colours))])
    for x in xs[1:-1]:
        draw.rectangle([x - 5, 0, x + 5, h], fill=(15, 15, 15))
    for y in ys[1:-1]:
        draw.rectangle([0, y - 5, w, y + 5], fill=(15, 15, 15))
    return img


def portrait(rng: np.random.Generator) -> Image.Image:
    w, h = 300, 420
    img = _gradient(w, h, (90, 60, 35), (40, 25, 15))
    draw = ImageDraw.Draw(img)
    draw.ellipse([95, 80, 205, 220], fill=(225, 185, 150))
    draw.ellipse([120, 130, 135, 140], fill=(60, 40, 30))
    draw.ellipse([165, 130, 180, 140], fill=(60, 40, 30))
    draw.arc([130, 170, 170, 195], 20, 160, fill=(150, 70, 60), width=3)
    draw.polygon([(60, h), (90, 260), (150, 230), (210, 260), (240, h)], fill=(30, 30, 45))
    return _brush(img, rng, 700)


def pond(rng: np.random.Generator) -> Image.Image:
    w, h = 480, 300
    img = _gradient(w, h, (70, 120, 110), (40, 80, 100))
    draw = ImageDraw.Draw(img)
    for _ in range(30):
        x, y, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(12, 30)
        draw.ellipse([x - r, y - r / 2, x + r, y + r / 2], fill=(70, 130, 70))
        if rng.random() < 0.5:
            draw.ellipse([x - 5, y - 5, x + 5, y + 3], fill=(240, 170, 200))
    return _brush(img, rng, 1200)


GENERATORS = {
    "landscape.jpg": landscape,
    "swirls.jpg": swirls,
    "composition.png": composition,
    "portrait.jpg": portrait,
    "pond.jpg": pond,
}
