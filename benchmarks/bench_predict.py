"""`tim predict` throughput vs a naive loop over the same images with the same model, plus top-1 agreement.

    python benchmarks/bench_predict.py [FOLDER] [--model CHECKPOINT] [--limit N] [--batch-size 32] [--workers N]

FOLDER defaults to ../shared/datasets/paintings-15. The model defaults to the
bundled one, else a random-init tf_efficientnet_lite0 checkpoint (timing only).
The naive loop is what one writes first: for each file, open and transform it
(the same tim preprocessing, so answers are comparable), run the model on a
batch of one under torch.no_grad, take the argmax. `tim predict` batches,
decodes in DataLoader workers while the model runs, and uses channels_last.
Goals: >= 2x the naive throughput, >= 99.5% top-1 agreement. Both sides run in this one process, one after
the other, on the same files; the first batch of each is not excluded (model warm-up happens before timing).
"""
from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import time
from pathlib import Path

import timm
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from tim import predict  # noqa: E402
from tim.catalog import bundled_checkpoints  # noqa: E402
from tim.checkpoint import save_checkpoint  # noqa: E402
from tim.images import ImageError  # noqa: E402
from tim.predictor import Predictor  # noqa: E402


def naive(predictor: Predictor, paths: list[str]) -> list[int | None]:
    """One image at a time: open + transform, forward a batch of one, argmax."""
    answers = []
    with torch.no_grad():
        for path in paths:
            try:
                x, _, _ = predictor.preprocess(path)
            except ImageError:
                answers.append(None)
                continue
            answers.append(int(predictor.model(x.unsqueeze(0)).argmax(-1)))
    return answers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", default=str(REPO.parent / "shared" / "datasets" / "paintings-15"))
    parser.add_argument("--model", help="checkpoint folder (default: bundled, else random-init Lite0)")
    parser.add_argument("--limit", type=int, help="use every k-th image so that about N are used")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=None)
    args = parser.parse_args()

    tmp = tempfile.TemporaryDirectory()
    ref = args.model or (str(bundled_checkpoints()[0]) if bundled_checkpoints() else None)
    if ref is None:
        model = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=15)
        ref = str(save_checkpoint(model, Path(tmp.name) / "lite0-random", [f"artist {i}" for i in range(15)],
                                  {"resize_mode": "pad", "image_size": 224, "pad_color": [0, 0, 0]}))
    inputs = predict.collect([args.folder])
    if args.limit and len(inputs) > args.limit:
        inputs = inputs[:: len(inputs) // args.limit][: args.limit]
    paths = [p for p, _ in inputs]

    fast = Predictor.load(ref)  # what `tim predict` uses (channels_last)
    plain = Predictor.load(ref, fast=False)  # the same weights as loaded, contiguous memory format
    warm = torch.stack([fast.preprocess(paths[0])[0]] * 2)
    fast.probabilities(warm)
    with torch.no_grad():
        plain.model(warm[:1])

    out = Path(tmp.name) / "results.csv"
    t = time.perf_counter()
    predict.run(fast, inputs, out, batch_size=args.batch_size, workers=args.workers, progress=False)
    t_tim = time.perf_counter() - t
    t = time.perf_counter()
    reference = naive(plain, paths)
    t_naive = time.perf_counter() - t

    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    index = {a: i for i, a in enumerate(fast.labels)}
    pairs = [(index[r["artist"]], ref_answer) for r, ref_answer in zip(rows, reference)
             if r["artist"] and ref_answer is not None]
    agree = sum(a == b for a, b in pairs) / max(1, len(pairs))
    errors = sum(1 for r in rows if r["error"])
    print(f"model {ref} ({fast.config.get('architecture')}, {fast.image_size}px), {len(paths)} images "
          f"from {args.folder} ({errors} unreadable), torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"tim predict: {t_tim:7.1f} s  {len(paths) / t_tim:6.1f} img/s  (batch {args.batch_size}, "
          f"workers {args.workers if args.workers is not None else 'default'})")
    print(f"naive loop:  {t_naive:7.1f} s  {len(paths) / t_naive:6.1f} img/s")
    print(f"speed-up {t_naive / t_tim:.2f}x (goal >= 2x); top-1 agreement {agree:.2%} on {len(pairs)} images "
          "(goal >= 99.5%)")
    tmp.cleanup()


if __name__ == "__main__":
    main()
