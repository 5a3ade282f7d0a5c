"""Model references: a local checkpoint folder or a Hugging Face Hub repo id."""
from __future__ import annotations

from pathlib import Path

import torch

from tim.checkpoint import load_checkpoint


def load_model(ref: str) -> tuple[torch.nn.Module, dict]:
    """(model, config) for a model reference. Local folders only for now; the Hub comes with the Hub issue."""
    if Path(ref).is_dir():
        return load_checkpoint(ref)
    raise FileNotFoundError(f"model {ref!r}: no such checkpoint folder")
