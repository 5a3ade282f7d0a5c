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

An ensemble (`tim ensemble`, tim/ensemble.py) is one checkpoint folder whose members are checkpoints inside it:

    ENSEMBLE/
      config.json        label_names, num_classes, pretrained_cfg and the "tim" block (preprocessing, data recipe,
                         calibration, unknown, painting, metrics) for the whole, and
                         tim.ensemble = {"members": ["member-1", "member-2"], "combine": "mean-probability"}
      member-1/          a checkpoint as above (each loads alone with `timm.create_model("local-dir:ENSEMBLE/member-1")`)
      member-2/
      unknown.safetensors, painting.safetensors, README.md   one decision and one card for the whole

`load_checkpoint` returns a `tim.models.Ensemble` for it: the mean of the members' probabilities.
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
from tim.models import Ensemble

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
# what `tim calibrate --not-paintings` writes: the "doesn't look like a painting" head (tim.painting)
PAINTING_NAME = "painting.safetensors"
# Tim's square (tim.images.square) as timm's eval transform says it: crop_pct 1.0 keeps the whole picture;
# `squash` resizes to the square like `stretch`, `border` letterboxes like `pad` (timm fills with the mean colour).
CROP_MODES = {"stretch": "squash", "pad": "border"}
# an ensemble: config.json tim.ensemble names its member folders; their probabilities are averaged
COMBINE = "mean-probability"
MAX_MEMBERS = 8


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


# config.json is read whole into memory: larger than this is not a config (a hostile or mistaken file)
MAX_CONFIG_BYTES = 16 * 1024 * 1024


def read_config(folder: str | os.PathLike) -> dict:
    """CHECKPOINT/config.json as a dict; CheckpointError naming the file for anything that is not a JSON object.

    Only the JSON level is checked here (what `tim card` and `tim push` need); `tim.validate` checks
    every field a model needs before it is loaded.
    """
    folder = Path(folder)
    path = inside(folder, CONFIG_NAME)
    if not path.is_file():
        raise CheckpointError(f"{folder}: no {CONFIG_NAME}; a Tim checkpoint folder has config.json and model.safetensors.")
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise CheckpointError(f"{path}: {path.stat().st_size:,} bytes is not a config (at most {MAX_CONFIG_BYTES:,}).")
    try:
        config = json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as e:
        raise CheckpointError(f"{path}: not a text file (byte {e.start} is not UTF-8); expected a JSON object.") from None
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path}: not valid JSON ({e}).") from None
    except RecursionError:
        raise CheckpointError(f"{path}: JSON nested too deeply to be a config; expected a JSON object.") from None
    if not isinstance(config, dict):
        kind = {list: "an array", str: "a string", int: "a number", float: "a number", bool: "a boolean"}.get(
            type(config), "null")
        shown = "" if config is None else f" ({shorten(config)})"
        raise CheckpointError(f"{path}: holds {kind}{shown}, not a JSON object; "
                              "expected an object with architecture, num_classes, label_names and tim.")
    return config


def shorten(value, most: int = 60) -> str:
    text = json.dumps(value) if not isinstance(value, (bytes, bytearray)) else repr(value)
    return text if len(text) <= most else text[:most] + "..."


def inside(folder: str | os.PathLike, name, field: str | None = None, directory: bool = False) -> Path:
    """The file `name` (as written in config.json's `field`, or a fixed name) inside `folder`; else CheckpointError.
    With `directory`, a folder inside `folder` (an ensemble's member).

    A checkpoint may come from anyone: a name that is absolute, climbs out with `..`, or is a symlink
    whose target lies outside the folder is refused before it is opened. In a Hugging Face cache
    snapshot every file is a symlink into the repo's own `blobs/` folder, which counts as inside.
    """
    folder = Path(folder)
    said = f"{folder / CONFIG_NAME} {field} = {shorten(name)}" if field else f"{folder / str(name)}"
    kind = "folder" if directory else "file"
    if not isinstance(name, str) or not name:
        raise CheckpointError(f"{said}: expected a {kind} name inside the checkpoint folder.")
    relative = Path(name)
    if relative.is_absolute() or ".." in relative.parts or "\\" in name or relative == Path("."):
        raise CheckpointError(f"{said}: must name a {kind} inside the checkpoint folder (no absolute path, no '..').")
    path = folder / relative
    roots = [folder.resolve()]
    for snapshot in [folder, *folder.parents][:2]:  # an ensemble's member is one folder deeper in the snapshot
        if snapshot.parent.name == "snapshots":  # huggingface_hub cache: snapshots/<commit>/<name> -> ../../blobs/<hash>
            roots.append((snapshot.parent.parent / "blobs").resolve())
            break
    try:
        target = path.resolve(strict=True)
    except FileNotFoundError:
        return path  # missing: the caller says what it needed
    except (OSError, RuntimeError) as e:  # a symlink loop
        raise CheckpointError(f"{said}: cannot be resolved ({e}); expected a file inside the checkpoint folder.") from None
    if not any(target.is_relative_to(root) for root in roots):
        raise CheckpointError(f"{said}: is a link to {target}, outside the checkpoint folder; "
                              "a checkpoint may only use its own files.")
    if directory and not target.is_dir():
        raise CheckpointError(f"{said}: {path} is not a folder.")
    if not directory and not target.is_file():
        raise CheckpointError(f"{said}: {path} is not a regular file.")
    return path


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


def ensemble_members(folder: str | os.PathLike, config: dict) -> list[Path]:
    """The member folders of an ensemble checkpoint (config.json tim.ensemble.members), each inside `folder`;
    [] for a single model. Only the names are checked here; tim.validate checks each member fully."""
    block = config.get("tim", {}).get("ensemble") if isinstance(config.get("tim"), dict) else None
    if block in (None, {}):
        return []
    names = block.get("members") if isinstance(block, dict) else None
    where = f"{Path(folder) / CONFIG_NAME} tim.ensemble.members"
    if not isinstance(names, list) or not 1 <= len(names) <= MAX_MEMBERS:
        raise CheckpointError(f"{where} = {shorten(names)}: expected a list of 1 to {MAX_MEMBERS} member folder "
                              "names inside the ensemble's folder.")
    if len(set(map(str, names))) != len(names):
        raise CheckpointError(f"{where} = {shorten(names)}: names a member twice; expected each member once.")
    return [inside(folder, name, "tim.ensemble.members", directory=True) for name in names]


def is_ensemble(config: dict) -> bool:
    return isinstance(config.get("tim"), dict) and config["tim"].get("ensemble") not in (None, {})


def has_model(folder: str | os.PathLike) -> bool:
    """True when `folder` looks like a checkpoint: config.json with model.safetensors, or an ensemble's config."""
    folder = Path(folder)
    if not (folder / CONFIG_NAME).is_file():
        return False
    if (folder / WEIGHTS_NAME).is_file():
        return True
    try:
        return is_ensemble(read_config(folder))
    except CheckpointError:
        return False


def load_checkpoint(folder: str | os.PathLike) -> tuple[torch.nn.Module, dict]:
    """(model in eval mode, config) from a local checkpoint folder, through plain timm; for an ensemble, a
    tim.models.Ensemble of its members (each loaded through plain timm).

    For a checkpoint Tim did not just write itself, go through tim.hub.open_checkpoint, which runs
    tim.validate first (a checkpoint may come from anyone)."""
    config = read_config(folder)
    members = ensemble_members(folder, config)
    if members:
        return Ensemble([_load_model(member) for member in members]).eval(), config
    return _load_model(folder), config


def _load_model(folder: str | os.PathLike) -> torch.nn.Module:
    check_weights(folder)
    return timm.create_model(f"local-dir:{Path(folder).resolve()}", pretrained=True).eval()
