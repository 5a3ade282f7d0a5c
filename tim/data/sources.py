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
import numpy as np

from tim.data.split import DataError

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
    """Image files under `folder`, sorted; hidden files (macOS `._x.jpg`, `.DS_Store`) are not paintings."""
    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file()
        and p.suffix.lower() in IMAGE_EXTENSIONS
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def _artist_folders(root: Path) -> list[Path]:
    return sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))


def _file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _files_by_artist(folders: list[Path]) -> list[tuple[str, str]]:
    """(path, artist) pairs, artist names repaired; folders that repair to one name are merged.

    When two folders hold the same artist (Kaggle's Dürer), a file whose bytes
    already came from the other folder is listed once, so merging can never
    count one painting twice.
    """
    by_artist: dict[str, list[Path]] = {}
    for folder in folders:
        by_artist.setdefault(fix_artist_name(folder.name), []).append(folder)
    files = []
    for artist, dirs in sorted(by_artist.items()):
        if len(dirs) == 1:
            files.extend((str(p), artist) for p in _image_files(dirs[0]))
            continue
        seen: set[tuple[int, str]] = set()
        for d in dirs:
            for p in _image_files(d):
                key = (p.stat().st_size, _file_digest(p))
                if key not in seen:
                    seen.add(key)
                    files.append((str(p), artist))
    return files


def _from_files(files: list[tuple[str, str]]) -> datasets.Dataset:
    """Build Dataset(image, artist) from (path, artist) pairs, artists sorted by name."""
    names = sorted({artist for _, artist in files})
    index = {name: i for i, name in enumerate(names)}
    features = datasets.Features(
        {"image": datasets.Image(decode=False), "artist": datasets.ClassLabel(names=names)}
    )
    return datasets.Dataset.from_dict(
        {"image": [{"path": p, "bytes": None} for p, _ in files], "artist": [index[a] for _, a in files]},
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
    files = _files_by_artist(_artist_folders(root))
    if not files:
        raise DataError(f"{root}: no images found; expected one sub-folder of images per artist.")
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
    files = _files_by_artist(_artist_folders(images))
    if not files:
        raise DataError(f"{root}: no images under images/images/<Artist_Name>/ (Kaggle Best Artworks layout).")
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

    `label_column` becomes the `artist` ClassLabel (string or ClassLabel columns
    both work). Labels in `drop_labels` (WikiArt's "Unknown Artist") and missing
    labels are removed from the rows *and* from the class names, so a dropped
    label can never become a class. Relabelling adds a small in-memory column and
    selects rows by index: the image bytes (gigabytes for WikiArt) are never copied.
    """
    ds = _load_hub_table(ref, split, revision)
    if label_column not in ds.column_names:
        raise DataError(f"{ref}: no column {label_column!r}; columns are {ds.column_names}. Use --label-column.")
    image_column = next((c for c, f in ds.features.items() if isinstance(f, datasets.Image)), None)
    if image_column is None and "image" in ds.column_names and label_column != "image":
        image_column = "image"
    if image_column is None:
        raise DataError(f"{ref}: no image column; columns are {ds.column_names}.")

    feature = ds.features[label_column]
    values = list(ds[label_column])
    if isinstance(feature, datasets.ClassLabel):
        values = [feature.names[v] if v is not None and v >= 0 else None for v in values]
    else:
        values = [None if v is None else str(v) for v in values]
    names = sorted({v for v in values if v is not None} - set(drop_labels))
    index = {name: i for i, name in enumerate(names)}
    labels = np.array([index.get(v, -1) for v in values], dtype=np.int64)

    ds = ds.select_columns([image_column, label_column]).remove_columns(label_column)
    if image_column != "image":
        ds = ds.rename_column(image_column, "image")
    ds = ds.cast_column("image", datasets.Image(decode=False))
    ds = ds.add_column("artist", labels.tolist(), feature=datasets.ClassLabel(names=names))
    if (labels < 0).any():
        ds = ds.select(np.flatnonzero(labels >= 0))
    return ds


def _load_hub_table(ref: str, split: str, revision: str | None) -> datasets.Dataset:
    path = Path(ref)
    if not path.exists():
        try:
            return datasets.load_dataset(ref.removeprefix("hf:"), split=split, revision=revision)
        except Exception as e:  # noqa: BLE001 - offline, unknown id, gated, no such split...
            raise DataError(
                f"{ref}: not a local folder or file, and loading it from the Hugging Face Hub failed "
                f"({type(e).__name__}: {e})."
            ) from e
    files = [path] if path.is_file() else sorted(path.rglob("*.parquet")) or sorted(path.rglob("*.arrow"))
    if not files:
        raise DataError(f"{ref}: no .parquet or .arrow files found.")
    builder = "arrow" if files[0].suffix == ".arrow" else "parquet"
    return datasets.load_dataset(builder, data_files=[str(f) for f in files], split="train")


def fingerprint(ds: datasets.Dataset) -> str:
    """A stable identity for a source's content, the part of the cache key that says "same pictures".

    Files on disk are identified by path, size and modification time (a missing
    file still counts, so removing one rebuilds the cache). Images held as bytes
    (Hub and parquet sources) use datasets' own fingerprint, which follows the
    data files and every transform applied to them, and is the same in every process.
    """
    h = hashlib.sha256(ds.info.description.encode())
    h.update(",".join(ds.features["artist"].names).encode())
    if ds.features["image"].decode:  # look at file names and bytes, never decode pictures here
        ds = ds.cast_column("image", datasets.Image(decode=False))
    if ds.num_rows == 0 or not _on_disk(ds[0]["image"]):  # first row only: never read gigabytes of bytes
        h.update(ds._fingerprint.encode())
        return h.hexdigest()[:16]
    for image, label in zip(ds["image"], ds["artist"]):
        if not _on_disk(image):  # a mix of files and bytes: fall back to datasets' fingerprint
            h.update(ds._fingerprint.encode())
            break
        try:
            st = os.stat(image["path"])
            h.update(f"{image['path']}|{label}|{st.st_size}|{st.st_mtime_ns}\n".encode())
        except OSError:
            h.update(f"{image['path']}|{label}|missing\n".encode())
    return h.hexdigest()[:16]


def _on_disk(image: dict) -> bool:
    return image.get("bytes") is None and bool(image.get("path"))
