"""From "paintings somewhere" to batches of tensors.

    source -> Dataset(image, artist) -> preprocess (square, cached) -> filter -> split -> transforms

`DataConfig` holds every setting of that chain; it is saved in each checkpoint
so evaluation can rebuild exactly the same test split.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field

import datasets
import numpy as np

from tim.data.preprocess import BadFile, cache_folder, default_cache_dir, pixels_to_image, preprocess
from tim.data.sources import SOURCES, detect_source, load_source
from tim.data.split import SPLITS, DataError, FilterReport, SplitReport, filter_artists, split_dataset
from tim.data.transforms import IndexedSplit, TransformedSplit, eval_transform, split_datasets, train_transform


@dataclass
class DataConfig:
    source: str = ""
    kind: str | None = None  # imagefolder | best-artworks | hub; detected when None
    label_column: str = "artist"
    drop_labels: tuple[str, ...] = ("Unknown Artist",)
    image_size: int = 224
    resize_mode: str = "pad"  # pad (letterbox) or stretch
    pad_color: tuple[int, int, int] = (0, 0, 0)
    min_images: int = 99
    artists: list[str] | None = None
    fractions: tuple[float, float, float] = (0.7, 0.1, 0.2)
    seed: int = 42
    duplicate_distance: int = 8  # max differing phash bits for "same work"; -1 disables grouping
    cache_dir: str | None = None
    num_proc: int | None = None

    def to_dict(self) -> dict:
        d = asdict(self)
        for k in ("cache_dir", "num_proc"):  # machine-specific, not part of the recipe
            d.pop(k)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "DataConfig":
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        for k in ("drop_labels", "pad_color", "fractions"):
            if k in known and known[k] is not None:
                known[k] = tuple(known[k])
        return cls(**known)


@dataclass
class PreparedData:
    splits: datasets.DatasetDict
    artists: list[str]
    bad_files: list[BadFile]
    filter_report: FilterReport
    split_report: SplitReport
    source_counts: dict[str, int] = field(default_factory=dict)  # images per artist in the source, bad ones too
    cache: str = ""  # the folder holding the prepared pictures


@dataclass
class PreparedSource:
    """A source after preprocessing, before the filter: what `tim data inspect` shows even when the filter fails."""

    images: datasets.Dataset  # readable images: pixels, artist, phash, path
    bad_files: list[BadFile]
    source_counts: dict[str, int]  # images per artist in the source, bad ones too
    usable_counts: dict[str, int]  # readable images per artist
    cache: str


def prepare_source(cfg: DataConfig) -> PreparedSource:
    """Load the source and preprocess it (cached): the first half of `prepare_data`."""
    raw = load_source(cfg.source, kind=cfg.kind, label_column=cfg.label_column, drop_labels=cfg.drop_labels)
    images, bad = preprocess(
        raw, cfg.image_size, cfg.resize_mode, cfg.pad_color, cache_dir=cfg.cache_dir, num_proc=cfg.num_proc
    )
    names = raw.features["artist"].names
    source = Counter(np.asarray(raw["artist"]).tolist())
    usable = Counter(np.asarray(images["artist"]).tolist())
    return PreparedSource(
        images,
        bad,
        {n: source.get(i, 0) for i, n in enumerate(names)},
        {n: usable.get(i, 0) for i, n in enumerate(names)},
        str(cache_folder(raw, cfg.image_size, cfg.resize_mode, cfg.pad_color, cfg.cache_dir)),
    )


def prepare_data(cfg: DataConfig) -> PreparedData:
    """Run the whole chain for `cfg` (cached after the first time)."""
    source = prepare_source(cfg)
    kept, filter_report = filter_artists(source.images, cfg.min_images, cfg.artists)
    splits, split_report = split_dataset(kept, cfg.fractions, cfg.seed, cfg.duplicate_distance)
    return PreparedData(
        splits, kept.features["artist"].names, source.bad_files, filter_report, split_report,
        source.source_counts, source.cache,
    )


__all__ = [
    "SOURCES", "SPLITS", "BadFile", "DataConfig", "DataError", "IndexedSplit", "PreparedData", "PreparedSource",
    "TransformedSplit",
    "cache_folder", "default_cache_dir", "detect_source", "eval_transform", "filter_artists", "load_source",
    "pixels_to_image", "prepare_data", "prepare_source", "preprocess", "split_datasets", "split_dataset",
    "train_transform",
]
