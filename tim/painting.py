""""This doesn't look like a painting": a painting score, its threshold, and the head behind it.

Distinct from "not one of the artists I know" (tim.openset): that one asks whether a painting is by
one of the model's artists; this one asks whether the picture is a painting at all (a pet, a selfie,
a document, a screenshot of a web page). It reads what the model computes anyway, in the same forward:
the pooled features (the classifier's input) and the texture statistics of the stage before the last
(tim.models.TextureTap: per channel, mean and spread over positions), standardised, through a logistic
head fitted by `tim calibrate --not-paintings DIR` (the two-class case of tim.openset's
outlier-exposure head: paintings vs not-paintings, class-balanced).

Why the texture too: the pooled features are trained to tell 50 artists apart, and a fine-tuned model
sees a toaster or a zebra "in the style of" someone; the mid-level statistics still describe paint,
canvas and print against photographed things. Measured on the bundled pair (held-out classes of
not-paintings rejected at 99% of validation scans kept; cross-validated over the fit classes in brackets):
pooled features 91.2% (92.1%), texture alone 92.8% (90.9%), both 96.0% (95.6%).

painting_score = P(painting); a picture is a painting when its score is at or above the threshold, chosen
so that a stated share (default 99%) of the validation paintings pass.

The head is saved beside the weights as `painting.safetensors` (no pickles), the rest in config.json
`tim.painting` (`inputs`: ["features", "texture"]; a head fitted before the texture, without `inputs`, reads
the features alone). A checkpoint without them answers as before: every picture counts as a painting.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from tim.checkpoint import PAINTING_NAME, CheckpointError, inside
from tim.images import IMAGE_SUFFIXES
from tim.openset import OpenSetError, fit_outlier_head, split_artists

# share of the validation paintings that must pass (goal: at most 1% of clean scans rejected)
SCAN_RETENTION = 0.99
# the head's L2 penalty: measured on the 15-artist model's features (held-out classes rejected at 99% of the
# validation scans kept): 1e-4 0.809, 1e-3 0.813, 1e-2 0.825, 3e-2 0.845, 0.1 0.849, 0.3 0.829, 1.0 0.781
WEIGHT_DECAY = 0.1
INPUTS = ("features", "texture")  # what a head fitted now reads (INPUTS_ALLOWED: what a checkpoint may say)
INPUTS_ALLOWED = (["features"], ["features", "texture"])


@dataclass
class PaintingDetector:
    threshold: float  # a picture is a painting when painting_score >= threshold
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)  # the head: mean, scale, coef, intercept
    info: dict = field(default_factory=dict)  # the rest of config["tim"]["painting"]: what it was fitted on, figures
    inputs: tuple[str, ...] = INPUTS  # what the head reads, joined in this order

    def score(self, features: torch.Tensor, texture: torch.Tensor | None = None) -> torch.Tensor:
        """P(painting) per image from its pooled features (N x D) and, when the head reads it, texture (N x T)."""
        return self.score_inputs(head_inputs(features, texture, self.inputs))

    def score_inputs(self, x) -> torch.Tensor:
        """P(painting) per image from what the head reads, already joined (`head_inputs`)."""
        t = self.tensors
        z = (torch.as_tensor(x).float() - t["mean"]) / t["scale"]
        return (z @ t["coef"].T + t["intercept"]).softmax(-1)[:, 0]  # class 0 = painting, 1 = not a painting

    def is_painting(self, scores: torch.Tensor) -> torch.Tensor:
        return scores >= self.threshold

    def to_config(self) -> dict:
        return {"file": PAINTING_NAME, "threshold": float(self.threshold), "inputs": list(self.inputs), **self.info}

    def save(self, folder: Path) -> dict:
        """Write the head into `folder`; return the config block to store as tim.painting."""
        save_file({k: v.contiguous() for k, v in self.tensors.items()}, str(Path(folder) / PAINTING_NAME))
        return self.to_config()

    @classmethod
    def from_checkpoint(cls, config: dict, folder: str | Path | None) -> "PaintingDetector | None":
        block = (config.get("tim") or {}).get("painting")
        if not block:
            return None
        path = inside(folder or ".", block.get("file", PAINTING_NAME), "tim.painting.file")
        if folder is None or not path.is_file():
            raise CheckpointError(f"{path}: missing; config.json tim.painting needs it (rerun `tim calibrate "
                                  "--not-paintings DIR`, or remove the tim.painting block to answer every picture "
                                  "as a painting).")
        tensors = {k: v.float() for k, v in load_file(str(path)).items()}
        missing = {"mean", "scale", "coef", "intercept"} - set(tensors)
        if missing:
            raise CheckpointError(f"{path}: lacks {sorted(missing)}; rerun `tim calibrate --not-paintings DIR`.")
        info = {k: v for k, v in block.items() if k not in ("file", "threshold", "inputs")}
        return cls(float(block["threshold"]), tensors, info, tuple(block.get("inputs", ["features"])))


def head_inputs(features, texture, inputs: tuple[str, ...] = INPUTS) -> torch.Tensor:
    """What a head reading `inputs` is given: the features, joined with the texture when it reads that (float32)."""
    x = torch.as_tensor(features).float()
    if "texture" not in inputs:
        return x
    if texture is None or texture.shape[1] == 0:
        raise CheckpointError("the not-a-painting head reads texture statistics this model does not give (its "
                              "architecture has no stages in timm's feature_info); rerun `tim calibrate "
                              "--not-paintings DIR` on it.")
    return torch.cat([x, torch.as_tensor(texture).float()], dim=1)


def fit_head(paintings: np.ndarray, others: np.ndarray, seed: int = 0) -> dict[str, torch.Tensor]:
    """The logistic head (class 0 = painting, 1 = not a painting) on standardised features, class-balanced."""
    if len(others) == 0:
        raise OpenSetError("no pictures that are not paintings to fit on: check --not-paintings DIR")
    return fit_outlier_head(np.asarray(paintings, np.float64), np.zeros(len(paintings), dtype=int),
                            np.asarray(others, np.float64), seed, weight_decay=WEIGHT_DECAY)


def threshold_for(scan_scores: np.ndarray, retention: float = SCAN_RETENTION) -> float:
    """The lowest painting score that still lets `retention` of the clean validation scans pass."""
    if not 0 < retention <= 1:
        raise OpenSetError(f"retention {retention}: must be a share of paintings to keep, in (0, 1]")
    return float(np.quantile(np.asarray(scan_scores, dtype=np.float64), 1 - retention, method="lower"))


def not_painting_files(folder: str | Path) -> list[tuple[str, str]]:
    """(path, class) for each image of `folder`: the class is the file name's stem up to its first '_'
    (`n01440764_tench.jpg` -> `n01440764`), or the subfolder's name when the images are in subfolders."""

    root = Path(folder)
    if not root.is_dir():
        raise OpenSetError(f"--not-paintings {folder}: no such folder; give a folder of photos that are not "
                           "paintings (animals, objects, people, documents).")
    found = []
    for path in sorted(root.rglob("*")):
        if path.suffix.lower() not in IMAGE_SUFFIXES or any(p.startswith(".") for p in path.relative_to(root).parts):
            continue
        cls = path.parent.name if path.parent != root else path.stem.split("_")[0]
        found.append((str(path), cls))
    if not found:
        raise OpenSetError(f"--not-paintings {folder}: no images in it.")
    return found


def split_classes(files: list[tuple[str, str]], fit_fraction: float = 0.5, seed: int = 0):
    """(fit files, held-out files): a seeded split of the classes (never of one class's pictures)."""
    fit, _ = split_artists(sorted({c for _, c in files}), fit_fraction, seed)
    fit = set(fit)
    return [f for f in files if f[1] in fit], [f for f in files if f[1] not in fit]


def rejected_share(scores: np.ndarray, owner: np.ndarray, threshold: float) -> float:
    """Share of pictures none of whose answers is a painting: `scores` has one painting score per piece,
    `owner[j]` the picture piece j came from (Predictor.piece_outputs)."""
    scores, owner = np.asarray(scores), np.asarray(owner)
    if len(owner) == 0:
        return float("nan")
    return float(np.mean([bool((scores[owner == i] < threshold).all()) for i in np.unique(owner)]))
