"""Small offline fixtures for the app, Grad-CAM and predict tests: tiny checkpoints and generated pictures."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import timm
import torch
from PIL import Image

from tim.checkpoint import save_checkpoint

ARTISTS = ["Monet", "Van Gogh", "Rembrandt", "Mondrian", "Hokusai"]


def make_checkpoint(folder: Path, arch: str = "test_efficientnet", image_size: int = 96, seed: int = 0,
                    metrics: dict | None = None, rejects_all: bool = False) -> Path:
    """rejects_all: with a calibration and an unknown-artist threshold that calls every picture unknown."""
    torch.manual_seed(seed)
    model = timm.create_model(arch, num_classes=len(ARTISTS))
    extra = {"metrics": metrics} if metrics else {}
    if rejects_all:
        extra["calibration"] = {"method": "temperature", "temperature": 2.0}
        extra["unknown"] = {"score": "max-probability", "threshold": -1.0, "retention": 0.95}
    return save_checkpoint(model, folder, ARTISTS,
                           {"resize_mode": "pad", "image_size": image_size, "pad_color": [0, 0, 0]}, extra)


def picture(width: int = 200, height: int = 150, seed: int = 0) -> Image.Image:
    """A smooth random RGB picture (gradients plus noise)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x / width, y / height, 1 - x / width], -1) * rng.uniform(120, 250, 3)
    return Image.fromarray((base + rng.normal(0, 25, base.shape)).clip(0, 255).astype(np.uint8))


def save(img: Image.Image, path: Path, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, **kwargs)
    return path


def jpeg_bytes(img: Image.Image) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, "JPEG", quality=92)
    return buffer.getvalue()


def bad_and_odd_files(folder: Path) -> tuple[dict[str, Path], dict[str, Path]]:
    """({name: path} of files that must be refused, {name: path} of odd files that must still be analysed)."""
    folder.mkdir(parents=True, exist_ok=True)
    bad = {}
    bad["empty"] = folder / "empty.jpg"
    bad["empty"].write_bytes(b"")
    bad["text"] = folder / "notes.jpg"
    bad["text"].write_text("this is not an image")
    data = jpeg_bytes(picture(300, 200))
    bad["truncated"] = folder / "truncated.jpg"
    bad["truncated"].write_bytes(data[: len(data) // 3])
    bad["bomb"] = save(Image.new("1", (10_000, 10_000)), folder / "bomb.png")  # 100 Mpx, a few KB
    bad["strip"] = save(picture(1, 5000), folder / "strip.png")  # 1x5000

    odd = {}
    frames = [picture(120, 90, seed=s).convert("P") for s in range(3)]
    odd["animated"] = folder / "animated.gif"
    frames[0].save(odd["animated"], save_all=True, append_images=frames[1:], duration=100, loop=0)
    sixteen = (np.asarray(picture(160, 120).convert("L"), dtype=np.uint16) * 257)
    odd["16-bit"] = save(Image.fromarray(sixteen, "I;16"), folder / "sixteen.png")
    odd["cmyk"] = save(picture(160, 120).convert("CMYK"), folder / "cmyk.jpg")
    rgba = picture(160, 120).convert("RGBA")
    rgba.putalpha(128)
    odd["rgba"] = save(rgba, folder / "rgba.png")
    odd["grayscale"] = save(picture(160, 120).convert("L"), folder / "gray.jpg")
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: rotate 90 degrees clockwise to display
    odd["exif"] = save(picture(200, 100), folder / "rotated.jpg", exif=exif)
    return bad, odd
