"""Knowledge distillation: a student trained on its teachers' answers as well as on the labels.

`--teacher CHECKPOINT` (repeatable) averages the teachers' softened probabilities
on every training painting, once before the first epoch, through each teacher's
own model and normalisation but the student's prepared pixels (so a teacher must
use the student's resize mode and image size). The loss is then

    (1 - w) * cross-entropy(labels) + w * T^2 * cross-entropy(teachers' probabilities at T)

with w = --distill-weight and T = --distill-temperature (Hinton et al., 2015).
"""
from __future__ import annotations

import numpy as np
import torch

from tim.errors import ConfigError


def teacher_targets(teachers: list[str], train_split, artists: list[str], preprocessing: dict, temperature: float,
                    batch_size: int, num_workers: int, accelerator) -> torch.Tensor:
    """N x K averaged probabilities at `temperature` for the rows of `train_split`, in row order."""
    from tim.data import IndexedSplit
    from tim.evaluation import artist_mismatch, split_outputs
    from tim.predictor import Predictor

    total = None
    for ref in teachers:
        teacher = Predictor.load(ref)
        mismatch = artist_mismatch(teacher.labels, artists)
        if mismatch is not None:
            raise ConfigError(f"--teacher {ref}: it knows other artists than this run's data ({mismatch}); "
                              "use a teacher trained on the same artists.")
        theirs = teacher.config["tim"]["preprocessing"]
        if (theirs["resize_mode"], int(theirs["image_size"])) != (preprocessing["resize_mode"],
                                                                    preprocessing["image_size"]):
            raise ConfigError(f"--teacher {ref}: it was trained on {theirs['resize_mode']} {theirs['image_size']} px "
                              f"pictures, this run uses {preprocessing['resize_mode']} "
                              f"{preprocessing['image_size']} px; choose a teacher with the same preprocessing.")
        logits = split_outputs(teacher, IndexedSplit(train_split, teacher.transform), batch_size, num_workers,
                               accelerator, desc=f"Teacher {ref}")[0]
        probs = torch.softmax(torch.as_tensor(np.asarray(logits)) / temperature, dim=-1)
        total = probs if total is None else total + probs
    return total / len(teachers)


class DistillationLoss(torch.nn.Module):
    """criterion(logits, labels, row_index): the labels' loss mixed with the teachers' (see the module doc)."""

    def __init__(self, hard: torch.nn.Module, targets: torch.Tensor, weight: float, temperature: float):
        super().__init__()
        self.hard, self.weight, self.temperature = hard, weight, temperature
        self.register_buffer("targets", targets)

    def forward(self, logits: torch.Tensor, labels: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        t = self.temperature
        soft = -(self.targets[index] * torch.log_softmax(logits.float() / t, dim=-1)).sum(-1).mean() * t * t
        return (1 - self.weight) * self.hard(logits, labels) + self.weight * soft
