"""Checkpoint folders: timm's Hugging Face layout plus Tim's preprocessing.

    CHECKPOINT/
      config.json        timm's config (architecture, num_classes, label_names,
                         pretrained_cfg with mean/std/input_size) and a "tim"
                         block: preprocessing, data recipe, training recipe, metrics
      model.safetensors  the weights

`timm.create_model("local-dir:CHECKPOINT", pretrained=True)` and 🤗 transformers'
`pipeline("image-classification", model=CHECKPOINT)` load it with no Tim code
(see `hub_layout`). The "tim" block is the single source of truth that keeps
serving and evaluation identical to training.
"""
from __future__ import annotations

import copy
import json
import os
import shutil
from pathlib import Path

import timm
import torch

from tim.atomic import recover_folder, replace_folder, write_text_atomically  # noqa: F401 - part of this module's API
from tim.errors import UserError

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
PICKLE_SUFFIXES = (".bin", ".pth", ".pt", ".ckpt", ".pkl")
# what `tim evaluate` writes beside the weights (the model card, the app and `tim compare` read them)
EVAL_RESULTS_NAME = "eval_results.json"
PREDICTIONS_NAME = "predictions.csv"
CONFUSION_NAME = "confusion_matrix.png"
CURVES_NAME = "training_curves.png"
# what `tim calibrate` writes: unknown-artist statistics, and the figures `tim evaluate --unknown` draws
UNKNOWN_NAME = "unknown.safetensors"
RELIABILITY_NAME = "reliability_diagram.png"
UNKNOWN_HISTOGRAM_NAME = "unknown_scores.png"
# Tim's square (tim.images.square) as timm's eval transform says it: crop_pct 1.0 keeps the whole picture;
# `squash` resizes to the square like `stretch`, `border` letterboxes like `pad` (timm fills with the mean colour).
CROP_MODES = {"stretch": "squash", "pad": "border"}


class CheckpointError(UserError):
    """A checkpoint Tim cannot use; the message says which file and why."""


def save_checkpoint(
    model: torch.nn.Module,
    folder: str | os.PathLike,
    label_names: list[str],
    preprocessing: dict,
    extra: dict | None = None,
) -> Path:
    """Write `folder` atomically: a killed process leaves the old checkpoint or the new one, never half.

    preprocessing: {"resize_mode": "pad"|"stretch", "image_size": int, "pad_color": [r, g, b]}
    extra: more of the "tim" block (data recipe, training recipe, metrics).
    """
    folder = Path(folder)
    tmp = folder.with_name(f".{folder.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        _write_checkpoint(model, tmp, label_names, preprocessing, extra)
        replace_folder(tmp, folder)
    finally:  # a failed write (full disk, read-only folder) leaves the old checkpoint and no partial copy
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def _write_checkpoint(model, tmp: Path, label_names, preprocessing: dict, extra: dict | None) -> None:
    size = int(preprocessing["image_size"])
    if any(not p.is_contiguous() for p in model.parameters()):  # channels_last weights: safetensors wants them packed
        model = copy.deepcopy(model).to(memory_format=torch.contiguous_format)
    timm.models.save_for_hf(
        model,
        tmp,
        model_config={"label_names": list(label_names), "tim": {"preprocessing": preprocessing, **(extra or {})}},
        safe_serialization=True,
        data_config={"input_size": (3, size, size), "crop_pct": 1.0},
    )
    path = tmp / CONFIG_NAME
    path.write_text(json.dumps(hub_layout(json.loads(path.read_text())), indent=2))


def hub_layout(config: dict) -> dict:
    """`config` as timm, the Hub and 🤗 transformers' TimmWrapper all read it; Tim reads both this and older layouts.

    - `num_classes` stays at the root only: timm's `save_for_hf` also records it in `model_args`, and transformers
      passes `num_classes=` itself next to `**model_args` ("got multiple values for keyword argument 'num_classes'").
      timm takes the root value (it becomes pretrained_cfg's num_classes), so nothing is lost.
    - `pretrained_cfg` states Tim's preprocessing (tim.preprocessing) as timm's eval transform can: the square's
      size, bicubic resampling, the whole picture (crop_pct 1.0) squashed or letterboxed (CROP_MODES).
    Used by every writer (save_checkpoint, tim calibrate) and to rewrite existing checkpoints (`rewrite_config`).
    """
    config = copy.deepcopy(config)
    args = {k: v for k, v in (config.get("model_args") or {}).items() if k != "num_classes"}
    if args:
        config["model_args"] = args
    else:
        config.pop("model_args", None)
    pre = config["tim"]["preprocessing"]
    size = int(pre["image_size"])
    config.setdefault("pretrained_cfg", {}).update(
        input_size=[3, size, size], interpolation="bicubic", crop_pct=1.0, crop_mode=CROP_MODES[pre["resize_mode"]],
    )
    for key in ("test_input_size", "test_crop_pct"):  # one preprocessing: Tim's
        config["pretrained_cfg"].pop(key, None)
    return config


def rewrite_config(folder: str | os.PathLike) -> Path:
    """Rewrite an existing checkpoint's config.json in `hub_layout` (weights untouched); returns the file.

    This is how the bundled checkpoints written before it were brought to the layout, without retraining:
    `python -c "from tim.checkpoint import rewrite_config; rewrite_config('tim/bundled/paintings50-lite0')"`.
    """
    path = Path(folder) / CONFIG_NAME
    config = hub_layout(read_config(folder))
    write_text_atomically(path, json.dumps(config, indent=2, ensure_ascii=False) + "\n")
    return path


def read_config(folder: str | os.PathLike) -> dict:
    """Read and validate CHECKPOINT/config.json; raise CheckpointError naming the problem."""
    folder = Path(folder)
    path = folder / CONFIG_NAME
    if not path.is_file():
        raise CheckpointError(f"{folder}: no {CONFIG_NAME}; a Tim checkpoint folder has config.json and model.safetensors.")
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path}: not valid JSON ({e}).") from None
    arch = config.get("architecture")
    if not arch or not timm.is_model(arch):
        raise CheckpointError(f"{path}: architecture {arch!r} is not a timm model (timm {timm.__version__}).")
    labels = config.get("label_names") or []
    if len(labels) != config.get("num_classes"):
        raise CheckpointError(
            f"{path}: {len(labels)} label names for {config.get('num_classes')} classifier outputs; they must match."
        )
    if "tim" not in config or "preprocessing" not in config["tim"]:
        raise CheckpointError(f"{path}: no 'tim.preprocessing' block; was this checkpoint written by Tim?")
    return config


def check_weights(folder: str | os.PathLike) -> Path:
    """The safetensors weights of `folder`; pickled weights alone are refused, never loaded."""
    folder = Path(folder)
    weights = folder / WEIGHTS_NAME
    if weights.is_file():
        return weights
    pickles = sorted(p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES) if folder.is_dir() else []
    if pickles:
        raise CheckpointError(
            f"{folder}: only pickled weights ({', '.join(pickles)}). Tim loads safetensors only, because a pickle "
            "can run code when opened. Convert it where you trust the file: "
            "safetensors.torch.save_file(torch.load(f, weights_only=True), 'model.safetensors')."
        )
    raise CheckpointError(f"{folder}: no {WEIGHTS_NAME}.")


def load_checkpoint(folder: str | os.PathLike) -> tuple[torch.nn.Module, dict]:
    """(model in eval mode, config) from a local checkpoint folder, through plain timm."""
    config = read_config(folder)
    check_weights(folder)
    model = timm.create_model(f"local-dir:{Path(folder).resolve()}", pretrained=True)
    return model.eval(), config
