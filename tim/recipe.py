"""A checkpoint's paintings on this machine: its data recipe, and other artists' paintings prepared like it.

Below both `tim evaluate` (tim.evaluation) and `tim calibrate` (tim.calibrate), which read them.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from tim.data import DataConfig, prepare_source
from tim.errors import UserError
from tim.openset import OpenSetError


class RecipeError(UserError):
    """The checkpoint's data recipe cannot be rebuilt as asked; the message says why and what to do."""


def data_config_for(config: dict, overrides: dict | None = None) -> DataConfig:
    """The checkpoint's data recipe, with `overrides` (e.g. source, cache_dir) applied.

    Square mode, size and pad colour always come from the checkpoint's
    preprocessing block, so the cached pixels are what the Predictor would make.
    """
    recipe = config.get("tim", {}).get("data")
    if not recipe:
        raise RecipeError(
            "the checkpoint records no data recipe (config.json tim.data), so its test split cannot be rebuilt; "
            "evaluate a checkpoint written by `tim train`."
        )
    cfg = DataConfig.from_dict(recipe)
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(DataConfig.__dataclass_fields__))
    if unknown:
        known = sorted(DataConfig.__dataclass_fields__)
        raise RecipeError(f"unknown data settings {unknown}; known ones are {known}")
    pre = config["tim"]["preprocessing"]
    overrides.update(
        image_size=int(pre["image_size"]),
        resize_mode=pre["resize_mode"],
        pad_color=tuple(pre.get("pad_color", cfg.pad_color)),
    )
    return dataclasses.replace(cfg, **overrides)


def load_other_artists(folder: str, config: dict, known_artists: list[str], cache_dir: str | None = None):
    """The paintings of `folder` (one subfolder per artist), prepared like the checkpoint's data; (images, artists)."""
    return other_artists(folder, data_config_for(config, {"cache_dir": cache_dir}), known_artists)


def other_artists(folder: str, data: DataConfig, known_artists: list[str]):
    """The paintings of `folder` (one subfolder per artist), prepared (squared, cached) like `data`'s;
    (images, artists). OpenSetError when the folder is missing, empty, or holds one of `known_artists`."""
    if not Path(folder).is_dir():
        raise OpenSetError(f"--unknown {folder}: no such folder; give a folder of other artists' paintings, "
                           "one subfolder per artist.")
    cfg = dataclasses.replace(data, source=str(folder), kind="imagefolder", min_images=1, artists=None,
                              drop_labels=())
    source = prepare_source(cfg)
    artists = list(source.images.features["artist"].names)
    overlap = sorted(set(artists) & set(known_artists))
    if overlap:
        raise OpenSetError(f"--unknown {folder}: it has paintings of artists the model knows ({', '.join(overlap)}); "
                           "remove those folders, it must hold other artists only.")
    if len(source.images) == 0:
        raise OpenSetError(f"--unknown {folder}: no readable paintings.")
    return source.images, artists


def select_artists(images, artists: list[str], keep: list[str]):
    ids = {artists.index(a) for a in keep if a in artists}
    rows = [i for i, a in enumerate(images["artist"]) if a in ids]
    return images.select(rows)
