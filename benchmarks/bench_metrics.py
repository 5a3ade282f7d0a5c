"""Seconds to bootstrap the test-split intervals (tim.metrics.bootstrap_intervals) of a full-size split.

    python benchmarks/bench_metrics.py [--images 5000] [--artists 31] [--resamples 1000]

`tim evaluate` and `tim compare` run this once per model; it should stay a few seconds at most.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from tim.metrics import bootstrap_intervals, paired_test  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=5000)
    p.add_argument("--artists", type=int, default=31)
    p.add_argument("--resamples", type=int, default=1000)
    p.add_argument("--smoke", action="store_true", help="tiny inputs, seconds: checks that the script still runs")
    args = p.parse_args(argv)
    if args.smoke:
        args.images, args.resamples = 200, 50

    rng = np.random.default_rng(0)
    references = rng.integers(0, args.artists, args.images)
    predictions = np.where(rng.random(args.images) < 0.7, references, rng.integers(0, args.artists, args.images))
    other = np.where(rng.random(args.images) < 0.7, references, rng.integers(0, args.artists, args.images))
    started = time.perf_counter()
    intervals = bootstrap_intervals(references, predictions, args.artists, resamples=args.resamples, seed=0)
    bootstrap_s = time.perf_counter() - started
    started = time.perf_counter()
    paired_test(references, predictions, other, resamples=args.resamples, seed=0)
    paired_s = time.perf_counter() - started
    acc = intervals["accuracy"]
    print(f"{args.images} images, {args.artists} artists, {args.resamples} resamples")
    print(f"bootstrap intervals: {bootstrap_s:.2f} s (accuracy {acc.value:.3f}, {acc.low:.3f} to {acc.high:.3f})")
    print(f"paired test        : {paired_s:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
