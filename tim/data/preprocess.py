"""Decode, orient, square and resize every painting once, and keep the result on disk.

The cache is a `datasets` folder keyed by the source's content and the settings
(size, pad/stretch, pad colour): change any of them and it is rebuilt, change
nothing and it is reused. Files that cannot be read are listed with a reason
and dropped here, so training never meets them; the list is saved next to the
pictures, so a reused cache reports them just the same.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import datasets
import imagehash
import numpy as np
from PIL import Image

from tim.checkpoint import replace_folder
from tim.data.sources import fingerprint
from tim.images import ImageError, prepare

CACHE_VERSION = "2"  # bump when the preprocessing code changes what it writes
BAD_FILES = "bad_files.json"
ROWS_PER_PROCESS = 64  # below this many images per process, extra processes cost more than they save


def default_cache_dir() -> Path:
    return Path(os.environ.get("TIM_CACHE", Path.home() / ".cache" / "tim")) / "prepared"


@dataclass(frozen=True)
class BadFile:
    path: str
    reason: str


def pixels_to_image(pixels: bytes) -> Image.Image:
    """The square RGB picture stored in a prepared row's `pixels` (raw bytes of a size x size x 3 array).

    Raw bytes, not datasets' Array3D: Array3D rows come back through numpy
    formatting as int64 and take milliseconds each, which starves the training loader.
    """
    size = math.isqrt(len(pixels) // 3)
    if size * size * 3 != len(pixels) or size == 0:
        raise ValueError(f"{len(pixels)} bytes are not a square RGB picture")
    return Image.frombuffer("RGB", (size, size), pixels, "raw", "RGB", 0, 1)


def _prepare_batch(batch, indices, size, mode, pad_color):
    """One `datasets.map` batch: square each picture and hash it for duplicate detection.

    A file that cannot be read becomes an empty row carrying its reason, so one
    bad file never stops the other thousands from being prepared.
    """
    out = {"pixels": [], "phash": [], "path": [], "error": []}
    for image, index in zip(batch["image"], indices):
        # images held as bytes (parquet, Hub) may have no file name: name them by row
        path = image.get("path") or f"<row {index}>"
        source = image["bytes"] if image.get("bytes") is not None else image["path"]
        try:
            squared, _, original = prepare(source, size, mode, pad_color)
            out["pixels"].append(squared.tobytes())
            out["phash"].append(str(imagehash.phash(original)))
            out["error"].append("")
        except ImageError as e:
            out["pixels"].append(b"")
            out["phash"].append("")
            out["error"].append(str(e).removeprefix(f"{path}: ").removeprefix("the uploaded image: "))
        out["path"].append(path)
    return out


def cache_key(ds: datasets.Dataset, size: int, mode: str, pad_color) -> str:
    settings = json.dumps([CACHE_VERSION, fingerprint(ds), size, mode, [int(c) for c in pad_color]])
    return hashlib.sha256(settings.encode()).hexdigest()[:20]


def cache_folder(ds, size: int = 224, mode: str = "pad", pad_color=(0, 0, 0), cache_dir=None) -> Path:
    """Where `preprocess` keeps (or would keep) this source prepared with these settings."""
    return Path(cache_dir or default_cache_dir()) / cache_key(ds, size, mode, pad_color)


def _processes(num_proc: int | None, rows: int) -> int:
    """How many processes to decode with: all cores by default, but never so many that each gets a sliver."""
    wanted = num_proc or min(os.cpu_count() or 1, 8)
    return max(1, min(wanted, rows // ROWS_PER_PROCESS))


def _build(ds: datasets.Dataset, folder: Path, size: int, mode: str, pad_color, num_proc: int) -> None:
    """Prepare every image into `folder`, atomically: a half-written cache is never mistaken for a done one."""
    features = datasets.Features(
        {
            "pixels": datasets.Value("binary"),  # size x size x 3 uint8, see pixels_to_image
            "artist": ds.features["artist"],
            "phash": datasets.Value("string"),
            "path": datasets.Value("string"),
            "error": datasets.Value("string"),
        }
    )
    tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "work").mkdir(parents=True)
    processes = _processes(num_proc, len(ds))
    # write to a file of our own: otherwise datasets keeps the pixels in memory (folder sources)
    # or leaves a second copy in its own cache (Hub sources)
    prepared = ds.map(
        _prepare_batch,
        fn_kwargs={"size": size, "mode": mode, "pad_color": tuple(int(c) for c in pad_color)},
        with_indices=True,
        batched=True,
        batch_size=32,
        num_proc=processes if processes > 1 else None,
        remove_columns=[c for c in ds.column_names if c != "artist"],
        features=features,
        desc=f"Preparing images ({mode}, {size}px)",
        cache_file_name=str(tmp / "work" / "prepared.arrow"),
        load_from_cache_file=False,
    )
    errors = np.asarray(prepared["error"])
    paths = prepared["path"]
    bad = [BadFile(paths[i], str(errors[i])) for i in np.flatnonzero(errors != "")]
    good = prepared.select(np.flatnonzero(errors == "")).remove_columns("error")
    # with no readable image at all, datasets would write no shard and then fail to load the folder
    good.save_to_disk(str(tmp / "data"), num_shards=1 if len(good) == 0 else None)
    (tmp / BAD_FILES).write_text(json.dumps([asdict(b) for b in bad], indent=1, ensure_ascii=False))
    del prepared, good
    shutil.rmtree(tmp / "work")
    (tmp / "done").write_text("ok\n")
    replace_folder(tmp, folder)


def preprocess(
    ds: datasets.Dataset,
    size: int = 224,
    mode: str = "pad",
    pad_color=(0, 0, 0),
    cache_dir: str | os.PathLike | None = None,
    num_proc: int | None = None,
) -> tuple[datasets.Dataset, list[BadFile]]:
    """Return Dataset(artist, pixels, phash, path) of the readable images, and the bad files.

    `pixels` holds the squared picture as raw RGB bytes; `pixels_to_image` turns it back.

    The first call for a source and settings decodes everything (in parallel,
    with a progress bar); later calls open the cache and decode nothing.
    """
    if ds.features["image"].decode:  # read files and bytes ourselves, never decoded by datasets
        ds = ds.cast_column("image", datasets.Image(decode=False))
    folder = cache_folder(ds, size, mode, pad_color, cache_dir)
    if not (folder / "done").exists():
        _build(ds, folder, size, mode, pad_color, num_proc)
    good = datasets.load_from_disk(str(folder / "data"))
    bad = [BadFile(**b) for b in json.loads((folder / BAD_FILES).read_text())]
    return good, bad
