"""Where paintings come from. Every source becomes a `datasets.Dataset` with an
`image` column (not decoded yet) and an `artist` ClassLabel column.

Sources are a small registry, like timm's model registry: `detect_source` picks
one from the shape of the reference, `load_source` calls it.

- `imagefolder`: a folder with one sub-folder per artist (paintings-15, WikiArt dumps).
- `best-artworks`: Kaggle's "Best Artworks of All Time" (`images/images/<Artist>/...`).
- `hub`: a dataset on the Hugging Face Hub, or local parquet files with the same schema.
"""
from __future__ import annotations

import hashlib
import os
import unicodedata
from pathlib import Path
from typing import Callable

import datasets

SOURCES: dict[str, Callable[..., datasets.Dataset]] = {}
IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}


def register_source(name: str):
    def wrap(fn):
        SOURCES[name] = fn
        return fn

    return wrap


def detect_source(ref: str) -> str:
    """Guess the kind of a source reference: a folder, parquet files, or a Hub dataset id."""
    path = Path(ref)
    if path.is_dir():
        if (path / "images" / "images").is_dir() or (path / "artists.csv").is_file():
            return "best-artworks"
        if list(path.glob("*.parquet")) or list(path.glob("*/*.parquet")) or list(path.glob("**/*.arrow")):
            return "hub"
        return "imagefolder"
    if path.suffix in (".parquet", ".arrow"):
        return "hub"
    if ref.startswith("hf:") or (ref.count("/") == 1 and not path.exists()):
        return "hub"
    raise FileNotFoundError(
        f"data source {ref!r}: no such folder or file, and not a Hub dataset id like 'huggan/wikiart'."
    )


def load_source(ref: str, kind: str | None = None, **options) -> datasets.Dataset:
    """Load a source as Dataset(image, artist). `kind` overrides detection."""
    kind = kind or detect_source(ref)
    if kind not in SOURCES:
        raise ValueError(f"unknown source kind {kind!r}; choose one of {sorted(SOURCES)}")
    ds = SOURCES[kind](ref, **options)
    ds.info.description = f"tim source {kind}:{ref}"
    return ds


def fix_artist_name(name: str) -> str:
    """Repair a folder name that was UTF-8 read as code page 437 (Kaggle's 'Albrecht_Du╠êrer')."""
    try:
        repaired = name.encode("cp437").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        repaired = name
    return unicodedata.normalize("NFC", repaired)


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def _from_files(files: list[tuple[str, str]]) -> datasets.Dataset:
    """Build Dataset(image, artist) from (path, artist) pairs, artists sorted by name."""
    names = sorted({artist for _, artist in files})
    features = datasets.Features(
        {"image": datasets.Image(decode=False), "artist": datasets.ClassLabel(names=names)}
    )
    return datasets.Dataset.from_dict(
        {"image": [{"path": p, "bytes": None} for p, _ in files], "artist": [names.index(a) for _, a in files]},
        features=features,
    )


@register_source("imagefolder")
def load_imagefolder(ref: str, **_) -> datasets.Dataset:
    """One sub-folder per artist; the folder name is the label.

    (datasets' `imagefolder` builder infers splits from file *names*: on
    paintings-15 it returns 2 images, the two whose titles contain "train".
    Listing the files ourselves keeps every painting, and every bad file
    reaches the preprocessing report.)
    """
    root = Path(ref)
    files = [
        (str(p), fix_artist_name(artist_dir.name))
        for artist_dir in sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
        for p in _image_files(artist_dir)
    ]
    if not files:
        raise ValueError(f"{root}: no images found; expected one sub-folder of images per artist.")
    return _from_files(files)


@register_source("best-artworks")
def load_best_artworks(ref: str, **_) -> datasets.Dataset:
    """Kaggle's "Best Artworks of All Time": images/images/<Artist_Name>/<Artist_Name>_<n>.jpg.

    One artist (Albrecht Dürer) appears twice, once under a mis-encoded folder
    name; both folders are read under the repaired name, so he counts once.
    Names are kept in the folder spelling (underscores), which `artists.csv`
    spells with spaces.
    """
    root = Path(ref)
    images = root / "images" / "images"
    if not images.is_dir():
        images = root / "images" if (root / "images").is_dir() else root
    files = []
    for artist_dir in sorted(d for d in images.iterdir() if d.is_dir()):
        artist = fix_artist_name(artist_dir.name)
        files.extend((str(p), artist) for p in _image_files(artist_dir))
    if not files:
        raise ValueError(f"{root}: no images under images/images/<Artist_Name>/ (Kaggle Best Artworks layout).")
    return _from_files(files)


@register_source("hub")
def load_hub(
    ref: str,
    label_column: str = "artist",
    drop_labels: tuple[str, ...] = ("Unknown Artist",),
    split: str = "train",
    revision: str | None = None,
    **_,
) -> datasets.Dataset:
    """A Hub dataset id (`huggan/wikiart`, optionally `hf:` prefixed) or local parquet/arrow files.

    `label_column` is renamed to `artist`; rows whose label is in `drop_labels`
    (WikiArt's "Unknown Artist") are dropped.
    """
    path = Path(ref)
    if path.exists():
        files = [path] if path.is_file() else sorted(path.rglob("*.parquet")) or sorted(path.rglob("*.arrow"))
        builder = "arrow" if files[0].suffix == ".arrow" else "parquet"
        ds = datasets.load_dataset(builder, data_files=[str(f) for f in files], split=split)
    else:
        ds = datasets.load_dataset(ref.removeprefix("hf:"), split=split, revision=revision)
    if label_column not in ds.column_names:
        raise ValueError(f"{ref}: no column {label_column!r}; columns are {ds.column_names}. Use --label-column.")
    image_column = next((c for c, f in ds.features.items() if isinstance(f, datasets.Image)), None)
    if image_column is None:
        raise ValueError(f"{ref}: no image column; columns are {ds.column_names}.")
    ds = ds.select_columns([image_column, label_column]).rename_columns(
        {image_column: "image", label_column: "artist"} if image_column != "image" else {label_column: "artist"}
    )
    ds = ds.cast_column("image", datasets.Image(decode=False))
    if not isinstance(ds.features["artist"], datasets.ClassLabel):
        ds = ds.class_encode_column("artist")
    names = ds.features["artist"].names
    dropped = [names.index(n) for n in drop_labels if n in names]
    if dropped:
        ds = ds.filter(lambda labels: [lab not in dropped for lab in labels], input_columns="artist", batched=True)
    return ds


def fingerprint(ds: datasets.Dataset) -> str:
    """A stable identity for a source's content: file paths, sizes and mtimes, or datasets' fingerprint."""
    h = hashlib.sha256(ds.info.description.encode())
    if ds.num_rows and ds[0]["image"]["bytes"] is None and ds[0]["image"]["path"]:
        for p in ds["image"]:
            st = os.stat(p["path"])
            h.update(f"{p['path']}|{st.st_size}|{st.st_mtime_ns}".encode())
    else:
        h.update(ds._fingerprint.encode())
    h.update(",".join(ds.features["artist"].names).encode())
    return h.hexdigest()[:16]
