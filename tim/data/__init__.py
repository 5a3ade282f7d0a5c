"""From "paintings somewhere" to batches of tensors.

    source -> Dataset(image, artist) -> preprocess (square, cached) -> filter -> split -> transforms

`DataConfig` holds every setting of that chain; it is saved in each checkpoint
so evaluation can rebuild exactly the same test split.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import datasets

from tim.data.preprocess import BadFile, default_cache_dir, preprocess
from tim.data.sources import SOURCES, detect_source, load_source
from tim.data.split import SPLITS, DataError, FilterReport, SplitReport, filter_artists, split_dataset
from tim.data.transforms import TransformedSplit, eval_transform, train_transform


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
    source_counts: dict[str, int] = field(default_factory=dict)


def prepare_data(cfg: DataConfig) -> PreparedData:
    """Run the whole chain for `cfg` (cached after the first time)."""
    raw = load_source(cfg.source, kind=cfg.kind, label_column=cfg.label_column, drop_labels=cfg.drop_labels)
    prepared, bad = preprocess(
        raw, cfg.image_size, cfg.resize_mode, cfg.pad_color, cache_dir=cfg.cache_dir, num_proc=cfg.num_proc
    )
    kept, filter_report = filter_artists(prepared, cfg.min_images, cfg.artists)
    splits, split_report = split_dataset(kept, cfg.fractions, cfg.seed, cfg.duplicate_distance)
    names = raw.features["artist"].names
    counts = {n: 0 for n in names}
    for label in raw["artist"]:
        counts[names[label]] += 1
    return PreparedData(splits, kept.features["artist"].names, bad, filter_report, split_report, counts)


__all__ = [
    "SOURCES", "SPLITS", "BadFile", "DataConfig", "DataError", "PreparedData", "TransformedSplit",
    "default_cache_dir", "detect_source", "eval_transform", "filter_artists", "load_source", "prepare_data",
    "preprocess", "split_dataset", "train_transform",
]
