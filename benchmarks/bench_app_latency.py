"""Warm latency of what the app does per image (prediction + Grad-CAM) vs Tim's fastest prediction of that image.

    python benchmarks/bench_app_latency.py [--model CHECKPOINT ...] [--image FILE] [--runs 15]
    python benchmarks/bench_app_latency.py --archs resnet50 convnext_tiny   # random-init models, timing only
    python benchmarks/bench_app_latency.py --smoke                         # tiny random model, seconds

For one image file, both sides start from the file and use the same Predictor, as the app does:
"predict" is Predictor.predict([file]) (decode, square, normalise, the model in Tim's fastest
path: the ONNX Runtime engine on a CPU), "explain" is Predictor.explain([file]) (the same,
plus the Grad-CAM: the head's backward in PyTorch from the engine's feature map, the CAM
cropped to the picture and drawn on it). The model-only forward of the engine is shown too.
Goal: explain <= 1.5x predict. "app whole" and "app located" are the app's answer with and
without "Use the whole picture" (Predictor.analyse(..., explain=True): locating the paintings,
straightening them, prediction and Grad-CAM on each), on the image and on Tim's simulated phone
photo of it (tim.photos, seeded). Goals: located <= 1.3x whole on a scan, <= 1.5x on a photo.
Runs are interleaved and the median is reported, so
background load hits both sides alike. Default model: the bundled one; default image: a
painting from ../shared/datasets/paintings-15 if present, else a generated 640x480 JPEG.
"""
from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import timm
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from tim.catalog import bundled_checkpoints  # noqa: E402
from tim.checkpoint import save_checkpoint  # noqa: E402
from tim.predictor import Predictor  # noqa: E402
from _smoke import use_threads  # noqa: E402 - benchmarks/_smoke.py

PAINTINGS = REPO.parent / "shared" / "datasets" / "paintings-15"


def painting(width: int = 640, height: int = 480) -> bytes:
    """A non-square JPEG, so the padding and the CAM mapping do real work."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x / width, y / height, (x + y) / (width + height)], -1) * 200
    buffer = io.BytesIO()
    Image.fromarray((base + rng.normal(0, 20, base.shape)).clip(0, 255).astype(np.uint8)).save(buffer, "JPEG")
    return buffer.getvalue()


def random_checkpoint(folder: Path, arch: str, size: int) -> str:
    model = timm.create_model(arch, pretrained=False, num_classes=15)
    return str(save_checkpoint(model, folder / arch, [f"artist {i}" for i in range(15)],
                               {"resize_mode": "pad", "image_size": size, "pad_color": [0, 0, 0]}))


def steps_for(ref: str, image: str) -> tuple[dict, bool]:
    """The three timed steps for one checkpoint, warmed up; and whether it runs in the engine."""
    predictor = Predictor.load(ref)
    engine = predictor.engine
    batch = predictor.preprocess(image)[0].unsqueeze(0)

    def forward():
        if engine is not None:
            engine.run(batch, ("logits",))
        else:
            with torch.inference_mode():
                predictor.model(batch.contiguous(memory_format=torch.channels_last))

    steps = {"model forward": forward, "predict": lambda: predictor.predict([image]),
             "explain": lambda: predictor.explain([image]),
             "app whole": lambda: predictor.analyse([image], whole=True, explain=True),
             "app located": lambda: predictor.analyse([image], explain=True)}
    for _ in range(3):  # warm-up: allocator, kernels, the CAM object
        for fn in steps.values():
            fn()
    return steps, engine is not None


def bench(refs: list[str], image: str, runs: int) -> list[dict]:
    """Median seconds per step for each checkpoint; runs interleave every step of every model, so load hits all."""
    prepared = [steps_for(ref, image) for ref in refs]
    times = [{name: [] for name in steps} for steps, _ in prepared]
    for _ in range(runs):
        for (steps, _), model_times in zip(prepared, times):
            for name, fn in steps.items():
                t = time.perf_counter()
                fn()
                model_times[name].append(time.perf_counter() - t)
    return [{name: statistics.median(ts) for name, ts in model_times.items()} | {"engine": engine}
            for model_times, (_, engine) in zip(times, prepared)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", nargs="+", help="checkpoint folder(s) (default: the bundled model); with several, "
                        "each model's predict time is also given relative to the first")
    parser.add_argument("--archs", nargs="+", help="random-init timm architectures instead of --model")
    parser.add_argument("--image", help="image file (default: a painting of paintings-15, else a generated JPEG)")
    parser.add_argument("--size", type=int, default=224, help="image size of random-init checkpoints")
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--threads", type=int, help="CPU threads for torch and ONNX Runtime (default: every core)")
    parser.add_argument("--smoke", action="store_true", help="tiny random model, generated image, seconds")
    args = parser.parse_args(argv)
    use_threads(args.threads)

    tmp = tempfile.TemporaryDirectory()
    folder = Path(tmp.name)
    if args.smoke:
        os.environ.setdefault("TIM_CACHE", str(folder / "cache"))
        args.archs, args.size, args.runs, args.image = ["test_efficientnet", "test_resnet"], 64, 3, None
    image = args.image
    if image is None:
        found = sorted(PAINTINGS.glob("*/*.jpg"))[:1] if not args.smoke else []
        image = str(found[0]) if found else str(folder / "painting.jpg")
        if not found:
            Path(image).write_bytes(painting())
    refs = [random_checkpoint(folder, a, args.size) for a in args.archs] if args.archs else \
        (args.model or [str(bundled_checkpoints()[0])])
    with Image.open(image) as im:
        shape = f"{im.width}x{im.height}"
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; image {image} ({shape}); "
          f"median of {args.runs} interleaved runs")
    print(f"{'model':<28}{'path':>8}{'forward ms':>12}{'predict ms':>12}{'explain ms':>12}{'explain/predict':>17}"
          f"{'predict vs first':>18}")
    results = bench(refs, image, args.runs)
    for ref, r in zip(refs, results):
        print(f"{Path(ref).name:<28}{'engine' if r['engine'] else 'eager':>8}{r['model forward'] * 1e3:>12.1f}"
              f"{r['predict'] * 1e3:>12.1f}{r['explain'] * 1e3:>12.1f}{r['explain'] / r['predict']:>16.2f}x"
              f"{r['predict'] / results[0]['predict']:>17.2f}x")
    from tim.photos import simulate_photo

    photo = str(folder / "photo.jpg")
    with Image.open(image) as im:
        simulate_photo(im.convert("RGB"), seed=0).photo.save(photo, quality=90)
    print(f"\nthe app's answer (prediction + Grad-CAM per painting), 'Use the whole picture' on vs off; "
          f"photo: {photo} ({Image.open(photo).width}x{Image.open(photo).height}, simulated from the image)")
    print(f"{'model':<28}{'picture':>8}{'whole ms':>12}{'located ms':>12}{'located/whole':>15}")
    for name, picture in (("scan", image), ("photo", photo)):
        for ref, r in zip(refs, bench(refs, picture, args.runs)):
            print(f"{Path(ref).name:<28}{name:>8}{r['app whole'] * 1e3:>12.1f}{r['app located'] * 1e3:>12.1f}"
                  f"{r['app located'] / r['app whole']:>14.2f}x")
    tmp.cleanup()


if __name__ == "__main__":
    main()
