"""`tim average START FINETUNED ... --out FOLDER`: one model whose weights are the weighted mean of checkpoints.

A network fine-tuned from another stays in its basin, so the straight line between the two sets of weights
passes through good networks, and a point on it often keeps what each end is good at (WiSE-FT, Wortsman et
al. 2022, "Robust fine-tuning of zero-shot models"; "model soups" for several fine-tunes of one start).
Tim's use: the clean-scan model (stage 1) and its fine-tune for phone photos (member D), averaged 0.4 / 0.6,
is one member of the bundled pair (README, "The bundled model").

Only checkpoints that share a start average well (one fine-tuned from the other, or several from the same
one); the mean of two networks trained from different starts answers nonsense, and nothing in a checkpoint
proves where it started, so measure the result on validation (`benchmarks/pair_members.py`) before using it.

The result is a plain checkpoint in timm's layout (it loads with timm alone, and can be an ensemble member).
Its config keeps the shared labels, preprocessing and data recipe, the last checkpoint's training recipe (the
fine-tune, which names its start), and `tim.average`: where the weights came from and with what weights. What
described one source alone (its epoch and validation figures, calibration and decisions) is dropped: run
`tim calibrate` on the result, or on the ensemble it joins.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import torch

from tim.checkpoint import MAX_MEMBERS, CheckpointError, is_ensemble, save_checkpoint
from tim.ensemble import MEMBER_ONLY, check_compatible, source_name
from tim.hub import open_checkpoint

# what a source's config says about that source alone, not about the average: what an ensemble member drops,
# and the source's own training outcome
SOURCE_ONLY = MEMBER_ONLY + ("epoch", "validation", "metrics", "ensemble")


class AverageError(CheckpointError):
    """Checkpoints that cannot be averaged, weights that make no mean, or an --out that would be lost."""


def mean_weights(weights: list[float] | None, count: int) -> list[float]:
    """The weights, checked and scaled to sum to 1 (equal when None)."""
    if weights is None:
        return [1.0 / count] * count
    if len(weights) != count:
        raise AverageError(f"--weights: {len(weights)} values for {count} checkpoints; give one per checkpoint.")
    if any(not w > 0 for w in weights):  # also refuses nan
        raise AverageError(f"--weights {' '.join(map(str, weights))}: every weight must be above 0.")
    total = sum(weights)
    return [w / total for w in weights]


def average_state(states: list[dict[str, torch.Tensor]], weights: list[float], names: list[str]
                  ) -> dict[str, torch.Tensor]:
    """The weighted mean of each floating-point tensor (computed in float32, kept in its dtype); other tensors
    (BatchNorm's batch counter) are the last checkpoint's. AverageError names the first tensor that differs."""
    first = states[0]
    for name, state in zip(names[1:], states[1:]):
        if set(state) != set(first):
            missing = sorted(set(first) ^ set(state))[0]
            raise AverageError(f"{names[0]} and {name}: tensor {missing} is in one and not the other; only "
                               "checkpoints of the same architecture can be averaged.")
        for key, tensor in state.items():
            if tensor.shape != first[key].shape:
                raise AverageError(f"{names[0]} and {name}: tensor {key} is {tuple(first[key].shape)} vs "
                                   f"{tuple(tensor.shape)}; only checkpoints of the same architecture can be averaged.")
    out = {}
    for key, tensor in first.items():
        if tensor.is_floating_point():
            mean = sum(w * state[key].float() for w, state in zip(weights, states))
            out[key] = mean.to(tensor.dtype)
        else:
            out[key] = states[-1][key].clone()
    return out


def average_config(configs: list[dict], sources: list[str], weights: list[float]) -> dict:
    """The tim block of the average: the shared recipe, the last source's training, and tim.average."""
    tim_block = {k: v for k, v in configs[-1]["tim"].items() if k not in SOURCE_ONLY and k != "preprocessing"}
    tim_block["average"] = {"sources": sources, "weights": [round(w, 6) for w in weights]}
    return json.loads(json.dumps(tim_block))


def build_average(refs: list[str], out: str | os.PathLike, weights: list[float] | None = None,
                  overwrite: bool = False) -> Path:
    """Average the checkpoints `refs` (local folders or Hub repos) into the checkpoint `out`; return `out`.
    Everything is checked before anything is written, and `out` is replaced whole (tim.checkpoint)."""
    out = Path(out)
    if not 2 <= len(refs) <= MAX_MEMBERS:
        raise AverageError(f"averaging takes 2 to {MAX_MEMBERS} checkpoints; got {len(refs)} ({', '.join(refs)}).")
    weights = mean_weights(weights, len(refs))
    if out.exists() and not overwrite:
        raise AverageError(f"{out} already exists; pass --overwrite to replace it, or choose another --out folder.")
    models, configs, folders = [], [], []
    for ref in refs:
        model, config, folder = open_checkpoint(ref)  # validated; safetensors only
        if is_ensemble(config):
            raise AverageError(f"{ref} is an ensemble; average its members' checkpoints instead.")
        models.append(model)
        configs.append(config)
        folders.append(folder)
    architectures = {c["architecture"] for c in configs}
    if len(architectures) > 1:
        raise AverageError(f"{', '.join(refs)}: architectures differ ({' vs '.join(sorted(architectures))}); only "
                           "checkpoints of the same architecture, fine-tuned from one start, can be averaged.")
    check_compatible(folders, configs, "checkpoints to average")
    state = average_state([m.state_dict() for m in models], weights, refs)
    model = models[-1]
    model.load_state_dict(state)
    base = configs[-1]
    return save_checkpoint(model, out, base["label_names"], base["tim"]["preprocessing"],
                           average_config(configs, [source_name(r) for r in refs], weights))


def add_cli(sub) -> None:
    p = sub.add_parser("average", help="average the weights of checkpoints fine-tuned from one another",
                       description="One checkpoint whose weights are the weighted mean of the given checkpoints' "
                                   "(same architecture, artists, preprocessing and data recipe; fine-tuned from one "
                                   "another or from one start, or the mean answers nonsense). Measure it on "
                                   "validation, then run `tim calibrate` on it or on the ensemble it joins.")
    p.add_argument("checkpoints", nargs="+", metavar="CHECKPOINT",
                   help=f"checkpoint folders or Hub repos (2 to {MAX_MEMBERS}); the last one's training recipe is kept")
    p.add_argument("--weights", type=float, nargs="+", metavar="W",
                   help="one weight per checkpoint, above 0, scaled to sum to 1 (default: equal)")
    p.add_argument("--out", required=True, help="the checkpoint folder to write")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.set_defaults(func=_command)


def _command(args: argparse.Namespace) -> int:
    out = build_average(args.checkpoints, args.out, args.weights, args.overwrite)
    weights = mean_weights(args.weights, len(args.checkpoints))
    print(f"Wrote {out}: " + " + ".join(f"{w:.2f} x {source_name(r)}" for w, r in zip(weights, args.checkpoints))
          + f". Next: measure it on validation (benchmarks/pair_members.py), then tim calibrate {out}, or join it "
          "to an ensemble with tim ensemble.")
    return 0
