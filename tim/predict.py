"""`tim predict PATH... --out results.csv`: the app's pipeline for files and folders, as a CSV.

One row per image (path, artist, confidence, top-5, error, known, unknown_score);
a bad file gets a row with its error instead of stopping the run. `artist` is always
the most likely of the model's artists; `known` is 0 when Tim says the painting is
not by one of them (unknown_score above the checkpoint's threshold, see `tim calibrate`).
Decoding runs in DataLoader worker processes while the model works on the previous batch, which is what
makes it several times faster than opening and classifying one image at a time.
With --cam-dir each image's Grad-CAM overlay is written too, from the same forward.
"""
from __future__ import annotations

import argparse
import csv
import os
import sys
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from tim.examples import IMAGE_SUFFIXES
from tim.images import ImageError
from tim.predictor import Predictor, Preprocessor

COLUMNS = ["path", "artist", "confidence", "top5", "error", "known", "unknown_score"]


def collect(paths: list[str]) -> list[tuple[str, str]]:
    """(path, name relative to its argument) for each file named, and each image file under each folder named.

    Files named explicitly are always kept (a non-image gets an error row); inside
    folders only image suffixes are taken, hidden files and folders skipped, in sorted order.
    """
    found: list[tuple[str, str]] = []
    for arg in paths:
        root = Path(arg)
        if root.is_dir():
            for dirpath, dirnames, filenames in os.walk(root):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                for name in sorted(filenames):
                    if not name.startswith(".") and Path(name).suffix.lower() in IMAGE_SUFFIXES:
                        path = Path(dirpath) / name
                        found.append((str(path), str(path.relative_to(root))))
        else:
            found.append((str(root), root.name))
    return found


class ImageFiles(Dataset):
    """Files -> (index, tensor, box, original or None, error or None); errors are values, not exceptions."""

    def __init__(self, paths: list[str], preprocess: Preprocessor, keep_original: bool = False):
        self.paths = paths
        self.preprocess = preprocess
        self.keep_original = keep_original  # only --cam-dir needs the originals (they cost pickling)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        try:
            x, box, original = self.preprocess(self.paths[i])
        except ImageError as e:
            return i, None, None, None, str(e)
        except Exception as e:  # noqa: BLE001 - one odd file must not end a run over thousands
            return i, None, None, None, f"{self.paths[i]}: could not be read ({type(e).__name__}: {e})"
        return i, x, box, original if self.keep_original else None, None


def _as_list(batch):
    return batch


def top_text(top: list[tuple[str, float]]) -> str:
    return "; ".join(f"{artist}:{p:.4f}" for artist, p in top)


def _cam_path(cam_dir: Path, rel: str, used: set[Path]) -> Path:
    base = cam_dir / Path(rel).with_suffix("")
    path, n = base.with_name(base.name + "_cam.jpg"), 1
    while path in used:  # two inputs with the same relative name
        n += 1
        path = base.with_name(f"{base.name}_{n}_cam.jpg")
    used.add(path)
    return path


def run(predictor: Predictor, inputs: list[tuple[str, str]], out: str | os.PathLike, cam_dir: str | None = None,
        batch_size: int = 32, workers: int | None = None, k: int = 5, progress: bool = True) -> tuple[int, int]:
    """Write the CSV for `inputs` (from `collect`); returns (images, errors)."""
    if workers is None:  # on a CPU the model already uses every core: decoding alongside it only competes
        workers = 0 if predictor.device.type == "cpu" else min(4, os.cpu_count() or 1)
    paths = [p for p, _ in inputs]
    loader = DataLoader(ImageFiles(paths, predictor.preprocessor, keep_original=cam_dir is not None),
                        batch_size=batch_size, num_workers=workers, collate_fn=_as_list,
                        persistent_workers=False, prefetch_factor=2 if workers else None)
    cam_root = Path(cam_dir) if cam_dir else None
    used: set[Path] = set()
    errors = 0
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as f, tqdm(total=len(paths), unit="img", disable=not progress,
                                                desc="Predicting") as bar:
        writer = csv.writer(f)
        writer.writerow(COLUMNS + (["cam"] if cam_root else []))
        for batch in loader:
            good = [item for item in batch if item[4] is None]
            answers = {}
            if good:
                tensors = torch.stack([item[1] for item in good])
                if cam_root:
                    explained = predictor.explain_batch(tensors, [it[2] for it in good], [it[3] for it in good], k)
                    answers = {it[0]: (e.prediction, e) for it, e in zip(good, explained)}
                else:
                    predictions = predictor.to_predictions(predictor.answers(tensors), [it[2] for it in good], k)
                    answers = {it[0]: (p, None) for it, p in zip(good, predictions)}
            for i, _, _, _, error in batch:
                row = [paths[i]]
                if error is not None:
                    errors += 1
                    row += ["", "", "", error, "", ""] + ([""] if cam_root else [])
                else:
                    prediction, explanation = answers[i]
                    row += [prediction.artist, f"{prediction.confidence:.6f}", top_text(prediction.top), "",
                            int(prediction.known), f"{prediction.unknown_score:.6f}"]
                    if cam_root:
                        cam_path = _cam_path(cam_root, inputs[i][1], used)
                        cam_path.parent.mkdir(parents=True, exist_ok=True)
                        Image.fromarray(explanation.overlay).save(cam_path, quality=90)
                        row.append(str(cam_path))
                writer.writerow(row)
            bar.update(len(batch))
    return len(paths), errors


def add_cli(sub) -> None:
    p = sub.add_parser("predict", help="predict the artist of image files and folders into a CSV",
                       description=__doc__.splitlines()[0])
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files and folders (searched recursively)")
    p.add_argument("--model", help="checkpoint folder or Hub repo user/name[@rev] (default: the bundled model)")
    p.add_argument("--out", required=True, help="CSV to write: path, artist, confidence, top5, error, known "
                                                  "(0 = not one of the model's artists), unknown_score")
    p.add_argument("--cam-dir", help="also write each image's Grad-CAM overlay here (<name>_cam.jpg)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--workers", type=int, default=None, help="decoding processes (default: 0 when the model runs on the CPU, else min(4, CPUs))")
    p.add_argument("--top-k", type=int, default=5)
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from tim.catalog import default_model
    from tim.checkpoint import CheckpointError

    try:
        ref = args.model or default_model()
    except LookupError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        predictor = Predictor.load(ref)
    except (CheckpointError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    inputs = collect(args.paths)
    if not inputs:
        print(f"error: no image files in {' '.join(args.paths)}", file=sys.stderr)
        return 1
    total, errors = run(predictor, inputs, args.out, args.cam_dir, args.batch_size, args.workers, args.top_k)
    print(f"{total} images with {ref}: {total - errors} predicted, {errors} errors -> {args.out}"
          + (f"; Grad-CAMs in {args.cam_dir}" if args.cam_dir else ""))
    return 0
