"""`tim predict` vs a naive per-image loop (end to end), and the model alone in each engine tried, in one run.

    python benchmarks/bench_predict.py [FOLDER] [--model CHECKPOINT] [--limit 400]
    python benchmarks/bench_predict.py --smoke          # a tiny random model on a few generated images (seconds)

FOLDER defaults to ../shared/datasets/paintings-15 (every k-th file, sorted, so that about
--limit are used); the model to the bundled one. Everything runs in this one process on the
same files, interleaved (every set-up on one round of images, then the next round), so
the ratios hold even on a machine that is busy with something else.

1. End to end, files to answers. The naive loop is what one writes first: for each file,
   the same tim preprocessing, the plain fp32 model (as loaded: eager, contiguous) on a batch
   of one under torch.no_grad, argmax. `tim predict` (tim.predict.run) with its defaults, then
   with other decoding set-ups (serial, DataLoader worker processes) and with --precision bf16.
   Agreement: top-1 answers equal to the naive loop's (the fp32 eager model). Goals: >= 2.5x, >= 99.5%.
2. The model alone on the same preprocessed images, per engine: eager fp32 (batch 1, 32),
   frozen TorchScript in chunks of 4 (Tim's former CPU path, deprecated), ONNX Runtime
   (batch 1, 8, 32), eager bf16 autocast (batch 8); each with its top-1 agreement with eager fp32.
   Goal: Tim's engine within 1.2x of the best. Decoding alone is timed too: end to end can
   at best approach the slower of decoding and the model.
3. What locating costs: `tim predict` (finds the paintings in each picture, straightens them) vs
   `tim predict --whole`, interleaved, on the clean scans and on Tim's simulated phone photos of
   the same paintings (tim.photos, both styles, seeded, saved as JPEGs). Goals: <= 1.3x on scans,
   <= 1.5x on photos.
"""
from __future__ import annotations

import argparse
import csv
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import timm
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from tim import engine as engines  # noqa: E402
from tim import predict  # noqa: E402
from tim.catalog import bundled_checkpoints  # noqa: E402
from tim.checkpoint import save_checkpoint  # noqa: E402
from tim.hub import load_model  # noqa: E402
from tim.images import ImageError  # noqa: E402
from tim.predictor import Predictor  # noqa: E402
from _smoke import tiny_paintings, use_threads  # noqa: E402 - benchmarks/_smoke.py


def smoke_inputs(folder: Path, n: int = 6) -> tuple[str, list[tuple[str, str]]]:
    """A random-init test_efficientnet checkpoint and n generated JPEGs in `folder`."""
    torch.manual_seed(0)
    model = timm.create_model("test_efficientnet", pretrained=False, num_classes=5)
    ref = str(save_checkpoint(model, folder / "tiny", [f"artist {i}" for i in range(5)],
                              {"resize_mode": "pad", "image_size": 64, "pad_color": [0, 0, 0]}))
    tiny_paintings(folder / "images", artists=1, per_artist=n, size=60)
    return ref, predict.collect([str(folder / "images")])


def naive(model: torch.nn.Module, predictor: Predictor, paths: list[str]) -> list[int | None]:
    """One image at a time: open + transform, forward a batch of one, argmax."""
    answers = []
    with torch.no_grad():
        for path in paths:
            try:
                x, _, _ = predictor.preprocess(path)
            except ImageError:
                answers.append(None)
                continue
            answers.append(int(model(x.unsqueeze(0)).argmax(-1)))
    return answers


def read_answers(out: Path, labels: list[str]) -> list[int | None]:
    index = {a: i for i, a in enumerate(labels)}
    with open(out, newline="") as f:
        return [index[r["artist"]] if r["artist"] else None for r in csv.DictReader(f)]


def agreement(a: list, b: list) -> tuple[float, int]:
    pairs = [(x, y) for x, y in zip(a, b) if x is not None and y is not None]
    return sum(x == y for x, y in pairs) / max(1, len(pairs)), len(pairs)




def model_alone(ref: str, predictor: Predictor, batch: torch.Tensor, repeats: int) -> list[tuple[str, float, float]]:
    """(engine, img/s, top-1 agreement with eager fp32) for each engine on the preprocessed `batch`."""
    model, _ = load_model(ref)
    model = model.eval()
    onnx = predictor.engine

    def eager(x):
        with torch.inference_mode():
            return model(x)

    def bf16(x):
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            return model(x.contiguous(memory_format=torch.channels_last)).float()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with torch.inference_mode():
            frozen = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(
                model.to(memory_format=torch.channels_last), batch[:4].contiguous(memory_format=torch.channels_last))))
    model.to(memory_format=torch.contiguous_format)

    def script(x):
        with torch.inference_mode():
            return frozen(x.contiguous(memory_format=torch.channels_last))

    runs = [("eager fp32, batch 1", eager, 1), ("eager fp32, batch 32", eager, 32),
            ("TorchScript frozen, chunks of 4 (former path)", script, 4)]
    if onnx is not None:
        runs += [(f"ONNX Runtime fp32, batch {b}" + (" (Tim's engine)" if b == Predictor.ENGINE_BATCH else ""),
                  lambda x: onnx.run(x, ("logits",))[0], b) for b in (1, 8, 32)]
    runs.append(("eager bf16 autocast, batch 8", bf16, 8))
    for _, fn, size in runs:
        fn(batch[:size])  # warm-up: allocator, kernels, graph
    seconds = [0.0] * len(runs)
    answers = [None] * len(runs)
    for _ in range(repeats):  # passes interleaved, so background load hits every engine alike
        for i, (_, fn, size) in enumerate(runs):
            t = time.perf_counter()
            answers[i] = torch.cat([fn(chunk) for chunk in batch.split(size)]).argmax(-1)
            seconds[i] += time.perf_counter() - t
    return [(name, repeats * len(batch) / s, float((a == answers[0]).float().mean()))
            for (name, _, _), s, a in zip(runs, seconds, answers)]


def photo_inputs(folder: Path, inputs: list[tuple[str, str]], n: int) -> list[tuple[str, str]]:
    """Simulated phone photos (both styles, seeded by position) of the first n inputs, as JPEGs in `folder`."""
    from PIL import Image

    from tim.photos import simulate_photo

    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i, (path, _) in enumerate(inputs[:n]):
        with Image.open(path) as im:
            photo = simulate_photo(im.convert("RGB"), seed=i, style=("phone", "oblique")[i % 2]).photo
        name = f"photo_{i:04d}.jpg"
        photo.save(folder / name, quality=90)
        out.append((str(folder / name), name))
    return out


def locating_cost(predictor: Predictor, sets: dict[str, list[tuple[str, str]]], batch_size: int, rounds: int,
                  out: Path) -> None:
    """Part 3: tim predict with locating vs --whole on each set of files, interleaved in `rounds` rounds."""
    print("\n3. what locating costs: tim predict (locating) vs tim predict --whole, interleaved")
    for name, files in sets.items():
        seconds = {"whole": 0.0, "located": 0.0}
        rows = 0
        step = max(1, len(files) // rounds)
        for start in range(0, len(files), step):
            chunk = files[start:start + step]
            for mode in seconds:
                t = time.perf_counter()
                predict.run(predictor, chunk, out, batch_size=batch_size, progress=False, whole=mode == "whole")
                seconds[mode] += time.perf_counter() - t
                if mode == "located":
                    with open(out, newline="") as f:
                        rows += sum(1 for _ in csv.DictReader(f))
        print(f"{name:<28}{len(files):5d} files  --whole {len(files) / seconds['whole']:7.1f} img/s   "
              f"located {len(files) / seconds['located']:7.1f} img/s ({rows} rows)   "
              f"located/whole {seconds['located'] / seconds['whole']:5.2f}x")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", default=str(REPO.parent / "shared" / "datasets" / "paintings-15"))
    parser.add_argument("--model", help="checkpoint folder (default: the bundled model)")
    parser.add_argument("--limit", type=int, default=400, help="use every k-th image so that about N are used")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--round", type=int, default=100, help="images per interleaved round in part 1")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved passes per engine in part 2")
    parser.add_argument("--photos", type=int, default=100, help="simulated phone photos in part 3")
    parser.add_argument("--only-locating", action="store_true", help="part 3 only")
    parser.add_argument("--threads", type=int, help="CPU threads for torch and ONNX Runtime (default: every core)")
    parser.add_argument("--smoke", action="store_true", help="tiny random model, a few generated images, seconds")
    args = parser.parse_args(argv)
    use_threads(args.threads)

    tmp = tempfile.TemporaryDirectory()
    if args.smoke:
        os.environ.setdefault("TIM_CACHE", str(Path(tmp.name) / "cache"))
        ref, inputs = smoke_inputs(Path(tmp.name))
        args.repeats = 1
    else:
        ref = args.model or str(bundled_checkpoints()[0])
        inputs = predict.collect([args.folder])
        if args.limit and len(inputs) > args.limit:
            inputs = inputs[:: len(inputs) // args.limit][: args.limit]
    paths = [p for p, _ in inputs]
    model, _ = load_model(ref)
    model.eval()
    tim = Predictor.load(ref)  # what `tim predict` uses: the engine on a CPU, fp32
    t = time.perf_counter()
    engine = tim.engine
    print(f"model {ref} ({tim.config.get('architecture')}, {tim.preprocessor.image_size}px), {len(paths)} images; "
          f"torch {torch.__version__}, {torch.get_num_threads()} torch threads, "
          f"engine {'ONNX Runtime, %d threads' % engine.threads if engine else 'none (eager)'} "
          f"(ready in {time.perf_counter() - t:.1f} s); cores {engines.cpu_threads()}; "
          f"CPU bf16 units: {torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()}")

    photos = photo_inputs(Path(tmp.name) / "photos", inputs, 4 if args.smoke else args.photos)
    predict.run(tim, photos[:2], Path(tmp.name) / "warm.csv", progress=False)  # warm-up: OpenCV, the engine
    locating_cost(tim, {"clean scans": inputs[: len(photos)], "simulated phone photos": photos}, args.batch_size,
                  1 if args.smoke else 5, Path(tmp.name) / "locating.csv")
    if args.only_locating:
        tmp.cleanup()
        return

    # 1. end to end, interleaved: each round of images goes through every set-up in turn
    warm = torch.stack([tim.preprocess(paths[0])[0]] * 2)
    bf16 = Predictor.load(ref, precision="bf16")
    for predictor in (tim, bf16):
        predictor.probabilities(warm)
    with torch.no_grad():
        model(warm[:1])
    setups = [("tim predict (default: decode threads + engine)", tim, None),
              ("tim predict, decoding serial (--workers 0)", tim, 0),
              ("tim predict, 1 DataLoader worker process", tim, 1),
              ("tim predict, 2 DataLoader worker processes", tim, 2),
              ("tim predict --precision bf16", bf16, None)]
    seconds = dict.fromkeys(["naive"] + [name for name, _, _ in setups], 0.0)
    answers: dict[str, list] = {name: [] for name in seconds}
    out = Path(tmp.name) / "results.csv"
    for start in range(0, len(inputs), args.round):
        chunk = inputs[start:start + args.round]
        t = time.perf_counter()
        answers["naive"] += naive(model, tim, [p for p, _ in chunk])
        seconds["naive"] += time.perf_counter() - t
        for name, predictor, workers in setups:
            t = time.perf_counter()
            predict.run(predictor, chunk, out, batch_size=args.batch_size, workers=workers, progress=False)
            seconds[name] += time.perf_counter() - t
            answers[name] += read_answers(out, predictor.labels)
    print(f"\n1. end to end, files -> answers, interleaved in rounds of {args.round} images "
          "(agreement: top-1 equal to the naive fp32 eager loop's)")
    for name, total in seconds.items():
        agree, n = agreement(answers[name], answers["naive"])
        label = "naive loop (eager fp32, batch 1)" if name == "naive" else name
        print(f"{label:<52}{len(paths) / total:8.1f} img/s {seconds['naive'] / total:6.2f}x   "
              f"agreement {agree:.2%} of {n}")

    # 2. the model alone
    t = time.perf_counter()
    batch = torch.stack([tim.preprocess(p)[0] for p in paths])
    decode = len(paths) / (time.perf_counter() - t)
    print(f"\n2. the model alone on the {len(batch)} preprocessed images ({args.repeats} interleaved passes); "
          f"decoding + preprocessing alone: {decode:.1f} img/s on one thread")
    results = model_alone(ref, tim, batch, args.repeats)
    best = max(speed for _, speed, _ in results)
    for name, speed, agree in results:
        print(f"{name:<52}{speed:8.1f} img/s  {best / speed:5.2f}x slower than the best   agreement {agree:.2%}")
    tmp.cleanup()


if __name__ == "__main__":
    main()
