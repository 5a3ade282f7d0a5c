"""Outlier exposure: pictures the network is trained NOT to name (Hendrycks et al., 2019).

During fine-tuning each batch of paintings comes with a few outliers, and the loss adds
`weight` x the cross-entropy of their answer against the uniform distribution: the network
learns to spread its probability over the artists for what is none of them.

The outliers are the FIT parts only of the folders `tim calibrate` reads, split the same way
(seeded, fit fraction 0.5, seed 0), so what `tim evaluate --unknown / --not-paintings` reports
on is never seen in training:
- other artists' paintings (one folder per artist): the fit artists (tim.openset.split_artists);
- photos that are not paintings: the fit classes (tim.painting.split_classes), each whole.
Both are prepared (squared, cached) exactly like the training paintings.
"""
from __future__ import annotations

import datasets
import torch

from tim.data import DataConfig
from tim.data.preprocess import preprocess
from tim.openset import split_artists
from tim.painting import not_painting_files, split_classes
from tim.recipe import other_artists, select_artists

FIT_FRACTION, SEED = 0.5, 0  # tim calibrate's defaults: the same artists and classes are held out


def outlier_images(data: DataConfig, known_artists: list[str], unknown: str | None = None,
                   not_paintings: str | None = None) -> datasets.Dataset:
    """The fit parts of `unknown` (other artists) and `not_paintings`, as one Dataset with a `pixels` column
    prepared like `data`'s paintings (its `artist` column is meaningless: outliers have no artist)."""
    parts = []
    if unknown:
        images, artists = other_artists(unknown, data, known_artists)
        fit, _ = split_artists(artists, FIT_FRACTION, SEED)
        parts.append(select_artists(images, artists, fit))
    if not_paintings:
        fit_files, _ = split_classes(not_painting_files(not_paintings), FIT_FRACTION, SEED)
        paths = [p for p, _ in fit_files]
        raw = datasets.Dataset.from_dict({"image": paths, "artist": [0] * len(paths)},
                                         features=datasets.Features({"image": datasets.Image(decode=False),
                                                                     "artist": datasets.ClassLabel(names=["none"])}))
        images, _ = preprocess(raw, data.image_size, data.resize_mode, data.pad_color, cache_dir=data.cache_dir)
        parts.append(images)
    parts = [p.select_columns(["pixels", "artist"]).cast_column("artist", datasets.Value("int64")) for p in parts]
    return datasets.concatenate_datasets(parts) if parts else None


def forever(loader):
    """Batches of `loader` without end (a new shuffle each pass)."""
    while True:
        yield from loader


def uniform_loss(logits: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against the uniform distribution over the classes, averaged over the batch."""
    return -torch.log_softmax(logits.float(), dim=-1).mean()


def trained_with_outliers(folder, config: dict) -> bool:
    """Whether the checkpoint's network (any member, for an ensemble) was trained with outlier exposure: then the
    fit part of the other artists is no longer unseen, and a decision fitted on it looks better than it is."""
    from tim.checkpoint import ensemble_members, read_config

    configs = [config] + [read_config(member) for member in ensemble_members(folder, config)]
    return any(float((c.get("tim", {}).get("train") or {}).get("outlier_exposure") or 0) > 0 for c in configs)
