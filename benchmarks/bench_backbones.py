"""Which offline ImageNet backbone to fine-tune: frozen-feature probes on the same split, and the cost of each.

For each candidate (architecture at its native input size) this prints, in one run:
- validation accuracy and macro-F1 of a logistic regression on the backbone's frozen pooled features
  (fitted on at most --per-artist training paintings per artist; the validation split is the one training uses);
- the model's inference time per image (eager fp32, batch 1) relative to the first candidate.
A probe is no fine-tune, but it ranks what each backbone already knows about paintings at a fraction of the cost.

    python benchmarks/bench_backbones.py --data ../shared/datasets/paintings-50
    python benchmarks/bench_backbones.py --smoke        # seconds, tiny random models and generated images
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import timm
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from torch.nn.functional import interpolate
from tqdm import tqdm

from tim.data import DataConfig, TransformedSplit, eval_transform, prepare_data
from tim.metrics import compute_metrics
from tim.models import build_model

CANDIDATES = ["tf_efficientnet_lite0:224", "tf_efficientnet_lite1:240", "tf_efficientnet_lite2:260"]


def features(model, split, size: int, batch_size: int = 32) -> np.ndarray:
    """Pooled pre-logit features of every image of `split`, resized to the backbone's input size."""
    cfg = timm.data.resolve_data_config(model=model)
    data = TransformedSplit(split, eval_transform(cfg["mean"], cfg["std"]))
    loader = torch.utils.data.DataLoader(data, batch_size=batch_size, num_workers=0)
    out = []
    with torch.inference_mode():
        for x, _ in tqdm(loader, desc=f"features at {size}px", leave=False):
            if x.shape[-1] != size:
                x = interpolate(x, size=(size, size), mode="bicubic", align_corners=False)
            out.append(model(x.contiguous(memory_format=torch.channels_last)).float().numpy())
    return np.concatenate(out)


def seconds_per_image(model, size: int, repeats: int) -> float:
    x = torch.randn(1, 3, size, size).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        for _ in range(3):
            model(x)
        start = time.perf_counter()
        for _ in range(repeats):
            model(x)
    return (time.perf_counter() - start) / repeats


def subsample(labels: np.ndarray, per_artist: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    keep = [rng.permutation(np.flatnonzero(labels == a))[:per_artist] for a in np.unique(labels)]
    return np.sort(np.concatenate(keep))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="../shared/datasets/paintings-50")
    p.add_argument("--candidates", nargs="+", default=CANDIDATES, help="ARCH:SIZE, the first is the reference")
    p.add_argument("--per-artist", type=int, default=60, help="training paintings per artist for the probe")
    p.add_argument("--pretrained", default="offline")
    p.add_argument("--repeats", type=int, default=30, help="batch-1 forwards timed per candidate")
    p.add_argument("--smoke", action="store_true", help="tiny random models on generated images (seconds)")
    args = p.parse_args()
    tmp = None
    if args.smoke:
        from _smoke import tiny_paintings

        tmp = tempfile.TemporaryDirectory()
        args.data = str(tiny_paintings(Path(tmp.name) / "paintings"))
        args.candidates, args.pretrained, args.repeats = ["test_efficientnet:48", "test_resnet:64"], "none", 2

    # the split training uses (stretch at 224, every artist kept); larger backbones get it resized
    data = prepare_data(DataConfig(source=args.data, min_images=1, resize_mode="stretch", image_size=224,
                                   cache_dir=str(Path(tmp.name) / "cache") if tmp else None))
    train_rows = subsample(np.asarray(data.splits["train"]["artist"]), args.per_artist)
    train, val = data.splits["train"].select(train_rows), data.splits["validation"]
    y_train, y_val = np.asarray(train["artist"]), np.asarray(val["artist"])
    torch.set_num_threads(torch.get_num_threads())
    print(f"{len(data.artists)} artists; probe fitted on {len(train)} training paintings, "
          f"scored on {len(val)} validation paintings; {torch.get_num_threads()} threads")

    rows = []
    for candidate in args.candidates:
        arch, size = candidate.split(":")
        size = int(size)
        model = build_model(arch, num_classes=0, pretrained=args.pretrained).eval()
        model = model.to(memory_format=torch.channels_last)
        started = time.perf_counter()
        f_train, f_val = features(model, train, size), features(model, val, size)
        extract = time.perf_counter() - started
        scaler = StandardScaler().fit(f_train)
        probe = LogisticRegression(max_iter=3000, C=0.5).fit(scaler.transform(f_train), y_train)
        scores = compute_metrics(y_val, probe.predict(scaler.transform(f_val)))
        rows.append((candidate, scores["accuracy"], scores["f1_macro"], seconds_per_image(model, size, args.repeats),
                     extract / (len(train) + len(val))))
    ref = rows[0][3]
    print(f"\n{'backbone':28} {'val acc':>8} {'val F1':>8} {'ms/img b1':>10} {'vs first':>9} {'ms/img b32':>11}")
    for name, acc, f1, sec, batch_sec in rows:
        print(f"{name:28} {acc:8.3f} {f1:8.3f} {sec * 1e3:10.1f} {sec / ref:8.2f}x {batch_sec * 1e3:11.1f}")
    if tmp:
        tmp.cleanup()


if __name__ == "__main__":
    main()
