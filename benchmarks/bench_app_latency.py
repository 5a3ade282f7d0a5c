"""Warm latency of what the app does per image (prediction + Grad-CAM on the original) vs a plain forward.

    python benchmarks/bench_app_latency.py [--archs resnet50 convnext_tiny tf_efficientnet_lite0] [--runs 15]

Both sides use the same Predictor model (eval, channels_last) on the same
preprocessed 224x224 input; random init is fine for timing. "explain" is
Predictor.explain_batch: one forward, a backward through the head only, the CAM
cropped to the picture and drawn on it. Goal: explain <= 1.3x plain forward.
Runs are interleaved and the median is reported, so background load hits both sides alike.
On a machine that is busy with something else, --threads 1 gives steadier numbers (two
OpenMP threads on two shared cores mostly measure the contention).
"""
from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import timm
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tim.checkpoint import save_checkpoint  # noqa: E402
from tim.predictor import Predictor  # noqa: E402


def painting(width: int = 640, height: int = 480) -> bytes:
    """A non-square JPEG, so the padding and the CAM mapping do real work."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x / width, y / height, (x + y) / (width + height)], -1) * 200
    buffer = io.BytesIO()
    Image.fromarray((base + rng.normal(0, 20, base.shape)).clip(0, 255).astype(np.uint8)).save(buffer, "JPEG")
    return buffer.getvalue()


def bench(arch: str, runs: int, size: int = 224) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        model = timm.create_model(arch, pretrained=False, num_classes=15)
        folder = save_checkpoint(model, Path(tmp) / arch, [f"artist {i}" for i in range(15)],
                                 {"resize_mode": "pad", "image_size": size, "pad_color": [0, 0, 0]})
        predictor = Predictor.load(str(folder))
    x, box, original = predictor.preprocess(painting())
    batch = x.unsqueeze(0)
    model = predictor.model

    def plain():
        with torch.inference_mode():
            model(batch.contiguous(memory_format=torch.channels_last))

    def explain():
        predictor.explain_batch(batch, [box], [original])

    for _ in range(3):  # warm-up: allocator, oneDNN kernels, the CAM object
        plain()
        explain()
    times = {plain: [], explain: []}
    for _ in range(runs):
        for fn in (plain, explain):
            t = time.perf_counter()
            fn()
            times[fn].append(time.perf_counter() - t)
    return statistics.median(times[plain]), statistics.median(times[explain])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", nargs="+", default=["resnet50", "convnext_tiny", "tf_efficientnet_lite0"])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's own choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; median of {args.runs} interleaved runs")
    print(f"{'model':<24}{'forward ms':>12}{'explain ms':>12}{'ratio':>8}")
    for arch in args.archs:
        fwd, exp = bench(arch, args.runs)
        print(f"{arch:<24}{fwd * 1e3:>12.1f}{exp * 1e3:>12.1f}{exp / fwd:>7.2f}x")


if __name__ == "__main__":
    main()
