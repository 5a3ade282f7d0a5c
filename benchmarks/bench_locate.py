"""Tim's painting locator (tim.locate) measured on real gallery photos, clean scans and simulated phone photos.

    python benchmarks/bench_locate.py [--gallery DIR] [--data DIR] [--model CHECKPOINT] [--scans 400] [--photos 150]
    python benchmarks/bench_locate.py --smoke          # a tiny random model on a few generated pictures (seconds)

1. Real photos (../shared/datasets/gallery-photos: phone photos of artworks with masks): the IoU of the union of
   the outlines found with the artwork mask ([] = the whole picture): median, share >= 0.8, share >= 0.9.
   Goals: median >= 0.90, >= 85% of photos at >= 0.8.
2. Clean scans: the test split the model held out (rebuilt from its data recipe, as `tim evaluate` does; every
   k-th painting so that about --scans are used): the share used whole, and the accuracy answered whole and as
   located (the largest painting found, straightened). Goals: >= 98% used whole; accuracy within 0.5 point.
3. Simulated photos (tim.photos, seeded: painting i gets seed i) of every k-th test painting, both styles: the
   model's accuracy on the photo as it is, located + straightened (the largest painting found; the whole photo
   when none is), and perfectly cropped (the simulator's own crop). Goals: located >= 0.55, and at most 10 points
   under perfectly cropped.
4. Cost: locating per picture (ms) on each kind, and straightening the painting found, beside one model
   prediction (Predictor.predict on one picture file) timed in the same run, interleaved picture by picture.
Beside 1-3, how evenly the wall is lit (`light_spread`) where a painting was found: the one signal measured that
tells most scans cut on their sheet from photographed walls, and what a rule on it would cost (docs/locating.md).
"""
from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import timm
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from tim.catalog import bundled_checkpoints  # noqa: E402
from tim.checkpoint import save_checkpoint  # noqa: E402
from tim.data import prepare_data  # noqa: E402
from tim.evaluation import data_config_for  # noqa: E402
from tim.locate import (SEARCH_SIDE, SNAP_SIDE, field_terms, find_paintings, lab_of, rgb_array,  # noqa: E402
                        shrunk, straighten, wall_colour_field)
from tim.photos import STYLES, simulate_photo  # noqa: E402
from tim.predictor import Predictor  # noqa: E402
from _smoke import tiny_paintings, use_threads  # noqa: E402 - benchmarks/_smoke.py

DATASETS = REPO.parent / "shared" / "datasets"
EVEN = 5.0  # Lab lightness (of 255): a wall lit more evenly than this (std over the picture) is lit like a scanner's


def light_spread(picture: Image.Image) -> float:
    """How unevenly the 'wall' is lit: the std over the picture of the lightness of the wall's colour field, as
    tim.locate fits it to the picture's border (a scanner lights a sheet evenly; a room lights a wall unevenly)."""
    fine, _ = shrunk(rgb_array(picture), SNAP_SIDE)
    lab = lab_of(shrunk(fine, SEARCH_SIDE)[0])
    return float((field_terms(*lab.shape[:2]) @ wall_colour_field(lab)[:, 0]).std())


def evenly_lit(spreads: list[float]) -> str:
    """'k of n lit evenly (spread < EVEN), spread quantiles' for the pictures where a painting was found."""
    if not spreads:
        return "no painting found"
    q = np.quantile(spreads, [0.1, 0.5])
    return (f"{sum(s < EVEN for s in spreads)} of {len(spreads)} with a painting found lit evenly "
            f"(light spread < {EVEN:g}; 10th percentile {q[0]:.1f}, median {q[1]:.1f})")


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


def smoke_inputs(folder: Path) -> tuple[str, Path, list[tuple[str, str]]]:
    """A random-init test_efficientnet checkpoint, 2 simulated 'gallery' photos with masks, 6 generated scans."""
    torch.manual_seed(0)
    model = timm.create_model("test_efficientnet", pretrained=False, num_classes=2)
    ref = str(save_checkpoint(model, folder / "tiny", ["Artist_0", "Artist_1"],
                              {"resize_mode": "stretch", "image_size": 64, "pad_color": [0, 0, 0]}))
    scans = tiny_paintings(folder / "scans", artists=2, per_artist=3, size=96)
    paintings = sorted((str(p), p.parent.name) for p in scans.glob("*/*.jpg"))
    gallery = folder / "gallery" / "photos"
    gallery.mkdir(parents=True)
    for i, (path, _) in enumerate(paintings[:2]):
        shot = simulate_photo(Image.open(path), seed=i)
        shot.photo.save(gallery / f"{i:05d}.jpg")
        mask = np.zeros(shot.photo.size[::-1], np.uint8)
        cv2.fillPoly(mask, [np.round(shot.corners).astype(np.int32)], 255)
        Image.fromarray(mask).save(gallery / f"{i:05d}.png")
    return ref, folder / "gallery", paintings


def test_paintings(ref: str, data: str | None) -> list[tuple[str, str]]:
    """(path, artist) of the test split the checkpoint held out, from its data recipe (source: `data` if given)."""
    config = json.loads((Path(ref) / "config.json").read_text())
    prepared = prepare_data(data_config_for(config, {"source": data} if data else None))
    test = prepared.splits["test"]
    return [(path, prepared.artists[a]) for path, a in zip(test["path"], test["artist"])]


def every_kth(items: list, n: int) -> list:
    return items[:: max(1, len(items) // n)][:n] if n and len(items) > n else items


def outline_iou(regions: list[np.ndarray], mask: np.ndarray) -> float:
    """IoU of the union of the regions (none: the whole picture) with the bool mask."""
    found = np.zeros(mask.shape, np.uint8)
    if not regions:
        found[:] = 1
    for corners in regions:
        cv2.fillPoly(found, [np.round(corners).astype(np.int32)], 1)
    found = found.astype(bool)
    return float((found & mask).sum() / max(1, (found | mask).sum()))


class Clock:
    """Seconds spent locating and predicting, per kind of picture."""

    def __init__(self):
        self.locate: dict[str, list[float]] = {}
        self.predict: list[float] = []

    def find(self, kind: str, picture: Image.Image) -> list[np.ndarray]:
        t = time.perf_counter()
        regions = find_paintings(picture)
        self.locate.setdefault(kind, []).append(time.perf_counter() - t)
        return regions

    def answer(self, predictor: Predictor, path: str) -> str:
        """The model's artist for the picture file at `path` (read, preprocessed, answered: timed)."""
        t = time.perf_counter()
        answer = predictor.predict([path])[0]
        self.predict.append(time.perf_counter() - t)
        return answer.artist


def artist(predictor: Predictor, picture: Image.Image) -> str:
    """The model's artist for a picture in memory (sent as lossless PNG bytes, untimed)."""
    data = io.BytesIO()
    picture.save(data, format="PNG")
    return predictor.predict([data.getvalue()])[0].artist


def gallery_report(folder: Path, clock: Clock) -> None:
    photos = sorted(p for p in folder.glob("*/*.jpg") if p.with_suffix(".png").exists())
    if not photos:
        sys.exit(f"error: no photos with masks (NNNNN.jpg + NNNNN.png in subfolders) under {folder}; give --gallery")
    ious, counts, spreads = [], [], []
    for path in photos:
        picture = Image.open(path).convert("RGB")
        regions = clock.find("real photos", picture)
        ious.append(outline_iou(regions, np.asarray(Image.open(path.with_suffix(".png")).convert("L")) > 127))
        counts.append(len(regions))
        spreads += [light_spread(picture)] if regions else []
    ious = np.array(ious)
    print(f"\n1. real photos ({folder}): {len(photos)} photos, {sum(c == 0 for c in counts)} answered whole, "
          f"{sum(c > 1 for c in counts)} with several paintings found")
    print(f"   IoU of the outlines with the masks: median {np.median(ious):.3f}, >= 0.8: {(ious >= 0.8).mean():.1%}, "
          f">= 0.9: {(ious >= 0.9).mean():.1%}   (goals: median >= 0.90, >= 0.8 for >= 85%)")
    worst = np.argsort(ious)[:5]
    print("   lowest: " + ", ".join(f"{photos[i].parent.name}/{photos[i].name} {ious[i]:.2f}" for i in worst))
    print(f"   {evenly_lit(spreads)}")


def scan_report(paintings: list[tuple[str, str]], predictor: Predictor, clock: Clock) -> None:
    """The share used whole, and what cutting the others costs: accuracy answered whole vs as located (the
    largest painting found, straightened; the whole scan when none is)."""
    whole = right_whole = right_located = 0
    spreads = []
    for path, truth in paintings:
        picture = Image.open(path).convert("RGB")
        regions = clock.find("clean scans", picture)
        whole += not regions
        spreads += [light_spread(picture)] if regions else []
        answer = clock.answer(predictor, path)
        right_whole += answer == truth
        right_located += (artist(predictor, straighten(picture, regions[0])) if regions else answer) == truth
    n = len(paintings)
    print(f"\n2. clean scans: {whole / n:.1%} of {n} test paintings used whole (goal >= 98%); accuracy answered "
          f"whole {right_whole / n:.3f}, as located {right_located / n:.3f} ({right_whole} vs {right_located} right; "
          "goal: within 0.005)")
    print(f"   {evenly_lit(spreads)}")


def simulated_report(paintings: list[tuple[str, str]], predictor: Predictor, clock: Clock, folder: Path) -> None:
    """Each photo is written as a JPEG (quality 95) for the model's as-is answer, as a user's file would come."""
    print(f"\n3. simulated photos of {len(paintings)} test paintings (seed = index), accuracy:")
    print(f"   {'style':<10}{'as is':>8}{'located':>10}{'perfect crop':>14}{'found':>8}")
    for style in STYLES:
        right = {"as is": 0, "located": 0, "perfect crop": 0}
        found, spreads = 0, []
        for seed, (path, truth) in enumerate(paintings):
            shot = simulate_photo(Image.open(path), seed=seed, style=style)
            photo = folder / f"{style}-{seed}.jpg"
            shot.photo.save(photo, quality=95)
            picture = Image.open(photo).convert("RGB")  # as a user's file: what the locator sees
            regions = clock.find(f"{style} photos", picture)
            t = time.perf_counter()
            located = straighten(shot.photo, regions[0]) if regions else shot.photo
            clock.locate.setdefault(f"straightening, {style}", []).append(time.perf_counter() - t)
            found += bool(regions)
            spreads += [light_spread(picture)] if regions else []
            right["as is"] += clock.answer(predictor, str(photo)) == truth
            right["located"] += artist(predictor, located) == truth
            right["perfect crop"] += artist(predictor, shot.cropped) == truth
        n = len(paintings)
        print(f"   {style:<10}{right['as is'] / n:8.3f}{right['located'] / n:10.3f}{right['perfect crop'] / n:14.3f}"
              f"{found / n:8.0%}   {evenly_lit(spreads)}")
    print("   (goals: located >= 0.55, and at most 10 points under the perfect crop)")


def cost_report(clock: Clock) -> None:
    model_ms = 1000 * float(np.median(clock.predict))
    print(f"\n4. cost on this CPU ({cpu_name()}, {torch.get_num_threads()} torch threads), medians: "
          f"one model prediction (Predictor.predict, one picture) {model_ms:.1f} ms")
    for kind, seconds in clock.locate.items():
        ms = 1000 * np.array(seconds)
        name = kind if kind.startswith("straightening") else "locating, " + kind
        print(f"   {name:<25} median {np.median(ms):6.1f} ms, 90th percentile {np.quantile(ms, 0.9):6.1f} ms"
              f"  = {np.median(ms) / model_ms:.2f}x one prediction")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gallery", default=str(DATASETS / "gallery-photos"), help="photos NNNNN.jpg + masks .png")
    parser.add_argument("--data", help="where the model's paintings are on this machine (default: its recipe's)")
    parser.add_argument("--model", help="checkpoint folder (default: the bundled model)")
    parser.add_argument("--scans", type=int, default=400, help="about this many test paintings as clean scans")
    parser.add_argument("--photos", type=int, default=150, help="about this many test paintings, simulated photos")
    parser.add_argument("--threads", type=int, help="CPU threads for torch and ONNX Runtime (default: every core)")
    parser.add_argument("--smoke", action="store_true", help="tiny random model, generated pictures, seconds")
    args = parser.parse_args(argv)
    use_threads(args.threads)
    tmp = tempfile.TemporaryDirectory()
    if args.smoke:
        ref, gallery, paintings = smoke_inputs(Path(tmp.name))
    else:
        ref = args.model or str(bundled_checkpoints()[0])
        gallery, paintings = Path(args.gallery), test_paintings(ref, args.data)
    predictor = Predictor.load(ref)
    predictor.predict([paintings[0][0]])  # warm-up: the engine is built or found
    clock = Clock()
    print(f"model {ref}; CPU {cpu_name()}")
    gallery_report(gallery, clock)
    scan_report(every_kth(paintings, args.scans), predictor, clock)
    simulated_report(every_kth(paintings, args.photos), predictor, clock, Path(tmp.name))
    cost_report(clock)


if __name__ == "__main__":
    main()
