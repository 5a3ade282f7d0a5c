"""Opening images safely and making them square, the one way Tim does it.

Training (through the dataset cache) and serving (the predictor) both call
`load_rgb` then `square`, so a model always sees at inference exactly the kind
of picture it was trained on. The geometry of the padding is returned as a
`Box` so the app can map a Grad-CAM back onto the original picture.
"""
from __future__ import annotations

import errno
import io
import os
import stat
import warnings
from dataclasses import dataclass
from typing import BinaryIO, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

RESIZE_MODES = ("pad", "stretch")

# Pixels Tim decodes at most (Pillow's own warning limit). A JPEG counts at its draft size (up to 8x
# smaller per side), so 50-150 MP museum scans load; other formats decode every pixel and are refused
# above it. Pillow itself refuses anything above 2x this before decoding (decompression bombs).
MAX_PIXELS = 89_478_485

# Image.info key load_rgb sets: how many of the file's pixels one decoded pixel spans (1 unless draft-decoded)
DECODE_SCALE = "tim_decode_scale"

ImageSource = Union[str, os.PathLike, bytes, BinaryIO]
# the file suffixes Tim takes from a folder (a file named explicitly is always tried)
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}


class ImageError(ValueError):
    """An image Tim cannot use, with a message that says why and what to do."""


@dataclass(frozen=True)
class Box:
    """Where the original picture sits inside the square: left, top, width, height (pixels)."""

    left: int
    top: int
    width: int
    height: int


def _describe(source: ImageSource) -> str:
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    return getattr(source, "name", "the uploaded image")


def load_rgb(source: ImageSource, draft_size: int | None = None) -> Image.Image:
    """Decode an image file into an upright 8-bit RGB picture, or raise ImageError.

    Handles EXIF orientation, grayscale, palette, RGBA (composited on white), CMYK,
    16-bit and animated files (first frame). `draft_size` lets JPEG decoding skip
    detail finer than that size, which is what makes large originals cheap.

    Every way a file can fail (missing, empty, not an image, truncated, a
    decompression bomb, or a decoder error Pillow reports as something else)
    becomes an ImageError naming the file, because the preprocessing report and
    the app both show these messages to a person who has to act on them.
    """
    name = _describe(source)
    if isinstance(source, (str, os.PathLike)):
        check_regular_file(source)
    if isinstance(source, bytes):
        if not source:
            raise ImageError(f"{name}: the file is empty (0 bytes); re-download or remove it.")
        source = io.BytesIO(source)
    try:
        with warnings.catch_warnings():
            # the limit is checked below on the pixels actually decoded; Pillow still refuses > 2x MAX_PIXELS
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(source) as img:
                full = img.size
                if draft_size and img.format == "JPEG":  # decodes at 1/2, 1/4 or 1/8 scale: a 108 MP scan is cheap
                    img.draft("RGB", (draft_size, draft_size))
                if img.width * img.height > MAX_PIXELS:
                    raise ImageError(
                        f"{name}: {full[0]}x{full[1]} pixels is too large to decode safely (limit {MAX_PIXELS:,} "
                        "pixels, or a JPEG of up to twice that); downscale it or save it as a JPEG first."
                    )
                img.seek(0)  # first frame of an animated GIF/WebP
                img.load()  # the pixels are in memory: the picture outlives the file (no copy needed)
                scale = full[0] / img.width  # file pixels per decoded pixel (a JPEG draft: 2, 4, 8)
                ImageOps.exif_transpose(img, in_place=True)
                rgb = _to_rgb(img)
                rgb.info[DECODE_SCALE] = scale
                return rgb
    except ImageError:
        raise
    except PermissionError:
        raise ImageError(f"{name}: permission denied; check the file's permissions.") from None
    except UnidentifiedImageError:
        kind = _claimed_format(source)
        if kind:
            raise ImageError(
                f"{name}: starts like a {kind} file but its header is broken; re-export or re-download it."
            ) from None
        raise ImageError(f"{name}: not an image file Pillow can read; use a JPEG, PNG or WebP.") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageError(f"{name}: too many pixels ({e}); downscale it below {MAX_PIXELS:,} pixels first.") from None
    except Exception as e:  # noqa: BLE001 - decoders raise OSError, EOFError, struct.error, IndexError, ...
        raise ImageError(
            f"{name}: the image data is broken or truncated ({type(e).__name__}: {e}); re-export the file."
        ) from None


def check_regular_file(path: str | os.PathLike) -> None:
    """ImageError saying what `path` is when it is not a readable, non-empty regular file.

    Decided from `stat` alone, so a FIFO (which would block a reader) or a device is never opened.
    """
    name = str(path)
    try:
        info = os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            raise ImageError(f"{name}: a symbolic link to {os.readlink(path)}, which does not exist; "
                             "fix or remove the link.") from None
        raise ImageError(f"{name}: no such file; check the path.") from None
    except PermissionError:
        raise ImageError(f"{name}: permission denied (a folder on the way cannot be entered); "
                         "check its permissions.") from None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise ImageError(f"{name}: a loop of symbolic links (it points back to itself); fix or remove the link.") from None
        raise ImageError(f"{name}: cannot be read ({os.strerror(e.errno or 0) or e}).") from None
    kind = _special_kind(info.st_mode)
    if kind:
        raise ImageError(f"{name}: {kind}, not an image file; pass image files (JPEG, PNG, WebP).")
    if not os.access(path, os.R_OK):
        raise ImageError(f"{name}: permission denied (the file is not readable by this user); check its permissions.")
    if info.st_size == 0:
        raise ImageError(f"{name}: the file is empty (0 bytes); re-download or remove it.")


def _special_kind(mode: int) -> str | None:
    if stat.S_ISREG(mode):
        return None
    return ("a folder" if stat.S_ISDIR(mode) else "a FIFO (named pipe)" if stat.S_ISFIFO(mode)
            else "a character device (like /dev/zero)" if stat.S_ISCHR(mode) else "a block device (a disk)"
            if stat.S_ISBLK(mode) else "a socket" if stat.S_ISSOCK(mode) else "a special file")


SIGNATURES = {b"\xff\xd8\xff": "JPEG", b"\x89PNG\r\n\x1a\n": "PNG", b"GIF8": "GIF", b"RIFF": "WebP", b"BM": "BMP"}


def _claimed_format(source) -> str | None:
    """The format a file's first bytes announce, to tell "broken JPEG" from "not an image at all"."""
    try:
        if isinstance(source, (str, os.PathLike)):
            with open(source, "rb") as f:
                head = f.read(16)
        else:
            source.seek(0)
            head = source.read(16)
    except (OSError, AttributeError, ValueError):
        return None
    return next((kind for magic, kind in SIGNATURES.items() if head.startswith(magic)), None)


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16/32-bit grayscale: scale to 8 bits, don't clip
        arr = np.asarray(img, dtype=np.float64)
        hi = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
        img = Image.fromarray(np.clip(arr / hi * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        img = img.convert("RGBA")
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, img)
    return img if img.mode == "RGB" else img.convert("RGB")


def square(img: Image.Image, size: int, mode: str = "pad", pad_color=(0, 0, 0)) -> tuple[Image.Image, Box]:
    """Make `img` a `size`x`size` picture by letterboxing (`pad`) or `stretch`.

    `pad` keeps the aspect ratio: the picture is scaled so its long side is `size`
    and centred on a canvas of `pad_color`. Returns the square and the Box the
    picture occupies in it.
    """
    if mode not in RESIZE_MODES:
        raise ValueError(f"resize mode {mode!r} is not one of {RESIZE_MODES}")
    if mode == "stretch":
        return img.resize((size, size), Image.Resampling.BICUBIC, reducing_gap=3.0), Box(0, 0, size, size)
    scale = size / max(img.width, img.height)
    w = max(1, round(img.width * scale))
    h = max(1, round(img.height * scale))
    canvas = Image.new("RGB", (size, size), tuple(int(c) for c in pad_color))
    box = Box((size - w) // 2, (size - h) // 2, w, h)
    canvas.paste(img.resize((w, h), Image.Resampling.BICUBIC, reducing_gap=3.0), (box.left, box.top))
    return canvas, box


def prepare(source: ImageSource, size: int, mode: str = "pad", pad_color=(0, 0, 0)):
    """load_rgb + square: returns (square picture, box, original RGB picture)."""
    original = load_rgb(source, draft_size=size)
    squared, box = square(original, size, mode, pad_color)
    return squared, box, original
