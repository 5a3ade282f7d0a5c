"""`tim export CHECKPOINT OUT --fp16`: a smaller copy of a checkpoint, checked before it is trusted.

Half-precision weights halve the size (Lite0: 13.6 MB -> 6.8 MB), which is what
lets a model ship inside the repo. The copy is accepted only if its top-1
answers agree with the original's on the checkpoint's own test split (default:
on >= 99.5% of the images); the agreement is recorded in the copy's config and
the evaluation files (metrics, confusion matrix, curves) and model card come along.
An ensemble (tim/ensemble.py) is copied whole: every member in half precision, checked as one model.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
from pathlib import Path

import numpy as np
from accelerate import Accelerator

from tim.card import write_card
from tim.checkpoint import (
    CONFIG_NAME, CONFUSION_NAME, CURVES_NAME, EVAL_RESULTS_NAME, PAINTING_NAME, RELIABILITY_NAME,
    UNKNOWN_HISTOGRAM_NAME, UNKNOWN_NAME, hub_layout, is_ensemble, load_checkpoint, replace_folder, save_checkpoint,
)
from tim.ensemble import folder_size, save_ensemble
from tim.data import IndexedSplit, prepare_data
from tim.errors import UserError
from tim.evaluation import predict_split
from tim.hub import open_checkpoint
from tim.predictor import Predictor
from tim.recipe import data_config_for

EVAL_FILES = (EVAL_RESULTS_NAME, CONFUSION_NAME, CURVES_NAME, RELIABILITY_NAME, UNKNOWN_HISTOGRAM_NAME)


class ExportError(UserError):
    """The exported copy does not behave like the original; the message gives the numbers."""


def top1(model, config, rows, accelerator, batch_size: int = 64) -> np.ndarray:
    answers_only = {**config, "tim": {k: v for k, v in config["tim"].items() if k != "unknown"}}  # top-1 needs no more
    predictor = Predictor(model, answers_only, device=accelerator.device)
    probabilities = predict_split(predictor, IndexedSplit(rows, predictor.transform), batch_size, 0, accelerator,
                                  desc="Checking")
    return probabilities.argmax(axis=1)


def export_checkpoint(ref: str, out: str | Path, fp16: bool = True, data_overrides: dict | None = None,
                      min_agreement: float = 0.995, split: str = "test", notes: list[str] | None = None,
                      overwrite: bool = False) -> float:
    """Write `out`, a copy of checkpoint `ref` (half precision if `fp16`); return the top-1 agreement.

    The copy is built and checked in a hidden folder beside `out` and only then put in its place
    (tim.checkpoint.replace_folder), so a refused copy, an error or a killed process leaves an
    existing `out` as it was. An existing `out` is replaced only with `overwrite`.
    `notes` (what the data is, what the model cannot do) go into the config and the model card's limits.
    """
    out = Path(out)
    if out.exists() and not overwrite:
        raise ExportError(f"{out} already exists; pass --overwrite to replace it (only after the new copy passes "
                          "its check), or choose another output folder.")
    model, config, source = open_checkpoint(ref)
    rows = prepare_data(data_config_for(config, data_overrides)).splits[split]
    staging = out.with_name(f".{out.name}.export{os.getpid()}")  # holds a folder named like `out` (the card uses it)
    shutil.rmtree(staging, ignore_errors=True)
    try:
        staging.mkdir(parents=True)
        copy_ = staging / out.name
        agreement = _write_checked_copy(model, config, rows, ref, source, copy_, fp16, min_agreement, split, notes)
        replace_folder(copy_, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return agreement


def _write_checked_copy(model, config, rows, ref, source: Path, folder: Path, fp16, min_agreement, split,
                        notes) -> float:
    """Write the copy of `ref` (read from `source`) into `folder`, check it against `model` on `rows`, add the
    record, eval files and card."""
    tim_block = dict(config["tim"])
    preprocessing = tim_block.pop("preprocessing")
    tim_block.pop("export", None)
    copied = copy.deepcopy(model).half() if fp16 else model
    if is_ensemble(config):  # every member in its folder, the root config for the whole
        save_ensemble(copied, folder, {**config, "tim": {**tim_block, "preprocessing": preprocessing}}, source)
    else:
        save_checkpoint(copied, folder, config["label_names"], preprocessing, tim_block)
    accelerator = Accelerator(cpu=True)
    exported, exported_config = load_checkpoint(folder)
    agreement = float(np.mean(top1(model, config, rows, accelerator) == top1(exported, exported_config, rows,
                                                                               accelerator)))
    if agreement < min_agreement:
        raise ExportError(f"the {'fp16 ' if fp16 else ''}copy agrees with {ref} on {agreement:.2%} of the {len(rows)} "
                          f"{split} images, below the required {min_agreement:.2%}; keep the original.")

    for name in (UNKNOWN_NAME, PAINTING_NAME):  # the unknown-artist statistics and the not-a-painting head
        if (source / name).is_file():
            shutil.copy2(source / name, folder / name)
    exported_config["tim"]["export"] = {"dtype": "float16" if fp16 else "float32", "source": Path(ref).name,
                                        "top1_agreement": agreement, "checked_on": f"{split} ({len(rows)} images)"}
    if notes:
        exported_config["tim"]["notes"] = list(notes)
    (folder / CONFIG_NAME).write_text(json.dumps(hub_layout(exported_config), indent=2))
    for name in EVAL_FILES:
        if (source / name).is_file():
            shutil.copy2(source / name, folder / name)
    write_card(folder)
    return agreement


def add_cli(sub) -> None:
    p = sub.add_parser("export", help="copy a checkpoint in half precision, checked against the original")
    p.add_argument("checkpoint", help="checkpoint folder or Hub repo to copy")
    p.add_argument("out", help="folder to write the copy into")
    p.add_argument("--fp32", dest="fp16", action="store_false", help="keep full precision")
    p.add_argument("--data", help="where the checkpoint's data is on this machine (default: as recorded)")
    p.add_argument("--min-agreement", type=float, default=0.995,
                   help="least share of the split's images on which the copy must name the same artist")
    p.add_argument("--note", dest="notes", action="append", help="a line for the model card's limits (repeatable)")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists (only once the new copy passes)")
    p.set_defaults(func=_command)


def _command(args: argparse.Namespace) -> int:
    overrides = {"source": args.data} if args.data else None
    agreement = export_checkpoint(args.checkpoint, args.out, args.fp16, overrides, args.min_agreement,
                                  notes=args.notes, overwrite=args.overwrite)  # errors: tim.cli prints them
    size = folder_size(Path(args.out)) / 2**20  # an ensemble's members included
    print(f"Wrote {args.out} ({size:.1f} MB); top-1 agreement with {args.checkpoint}: {agreement:.2%}")
    return 0
