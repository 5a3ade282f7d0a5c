"""What the benchmarks share: tiny inputs for their `--smoke` mode (seconds-long runs that only check a script
still works), and the thread limit of `--threads`.

tests/test_benchmarks.py runs every benchmarks/*.py with --smoke, so a refactor cannot break one unnoticed;
the numbers of a smoke run mean nothing.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image


def tiny_paintings(root: Path, artists: int = 3, per_artist: int = 12, size: int = 48) -> Path:
    """`artists` folders of random-stroke JPEGs, enough for Tim's split (no two alike, so none are merged)."""
    rng = np.random.default_rng(0)
    for a in range(artists):
        folder = root / f"Artist_{a}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_artist):
            pixels = rng.integers(0, 256, (size, size + 4 * (i % 3), 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"{a}_{i}.jpg", quality=80)
    return root


def use_threads(n: int | None) -> None:
    """Run torch and ONNX Runtime on `n` threads (None: every core). On a machine shared with other jobs, one
    thread each gives steadier numbers. ONNX Runtime gets it through OMP_NUM_THREADS (tim.engine.cpu_threads)."""
    if n:
        torch.set_num_threads(n)
        os.environ["OMP_NUM_THREADS"] = str(n)
