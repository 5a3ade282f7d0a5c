"""Decode, orient, square and resize every painting once, and keep the result on disk.

The cache is a `datasets` folder keyed by the source's content and the settings
(size, pad/stretch, pad colour): change any of them and it is rebuilt, change
nothing and it is reused. Files that cannot be read are listed with a reason
and dropped here, so training never meets them.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import datasets
import imagehash
import numpy as np

from tim.data.sources import fingerprint
from tim.images import ImageError, prepare

CACHE_VERSION = "1"  # bump when the preprocessing code changes what it writes


def default_cache_dir() -> Path:
    return Path(os.environ.get("TIM_CACHE", Path.home() / ".cache" / "tim")) / "prepared"


@dataclass(frozen=True)
class BadFile:
    path: str
    reason: str


def _prepare_batch(batch, size, mode, pad_color):
    out = {"pixels": [], "phash": [], "path": [], "error": []}
    for image, artist in zip(batch["image"], batch["artist"]):
        path = image.get("path") or "<in-memory image>"
        source = image["bytes"] if image.get("bytes") is not None else image["path"]
        try:
            squared, _, original = prepare(source, size, mode, pad_color)
            out["pixels"].append(np.asarray(squared, dtype=np.uint8))
            out["phash"].append(str(imagehash.phash(original)))
            out["error"].append("")
        except ImageError as e:
            out["pixels"].append(np.zeros((size, size, 3), np.uint8))
            out["phash"].append("")
            out["error"].append(str(e).removeprefix(f"{path}: ").removeprefix("the uploaded image: "))
        out["path"].append(path)
    return out


def cache_key(ds: datasets.Dataset, size: int, mode: str, pad_color) -> str:
    settings = json.dumps([CACHE_VERSION, fingerprint(ds), size, mode, list(pad_color)])
    return hashlib.sha256(settings.encode()).hexdigest()[:20]


def preprocess(
    ds: datasets.Dataset,
    size: int = 224,
    mode: str = "pad",
    pad_color=(0, 0, 0),
    cache_dir: str | os.PathLike | None = None,
    num_proc: int | None = None,
) -> tuple[datasets.Dataset, list[BadFile]]:
    """Return Dataset(pixels uint8 HxWx3, artist, phash, path) of the readable images, and the bad files."""
    folder = Path(cache_dir or default_cache_dir()) / cache_key(ds, size, mode, pad_color)
    if not (folder / "done").exists():
        features = datasets.Features(
            {
                "pixels": datasets.Array3D((size, size, 3), "uint8"),
                "artist": ds.features["artist"],
                "phash": datasets.Value("string"),
                "path": datasets.Value("string"),
                "error": datasets.Value("string"),
            }
        )
        num_proc = num_proc or min(os.cpu_count() or 1, 8)
        prepared = ds.map(
            _prepare_batch,
            fn_kwargs={"size": size, "mode": mode, "pad_color": tuple(pad_color)},
            batched=True,
            batch_size=32,
            num_proc=num_proc if len(ds) >= 64 * num_proc else None,
            remove_columns=["image"],
            features=features,
            desc=f"Preparing images ({mode}, {size}px)",
            load_from_cache_file=False,
        )
        tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        prepared.save_to_disk(str(tmp))
        (tmp / "done").write_text("ok\n")
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(tmp, folder)
    prepared = datasets.load_from_disk(str(folder))
    errors = np.asarray(prepared["error"])
    bad_rows = np.flatnonzero(errors != "")
    paths = prepared["path"]
    bad = [BadFile(paths[i], errors[i]) for i in bad_rows]
    good = prepared.select(np.flatnonzero(errors == "")).remove_columns("error")
    return good, bad
