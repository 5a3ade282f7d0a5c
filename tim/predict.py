"""`tim predict PATH... --out results.csv`: the app's pipeline for files and folders, as a CSV.

One row per painting found in each image (path, artist, confidence, top5, error, known, unknown_score,
artist_name, painting, region, corners): the paintings in a photo are found and straightened (tim.locate),
largest first (region 1, 2, ...; corners = x1 y1 x2 y2 x3 y3 x4 y4 in the file's pixels, clockwise from
top-left); a picture that already is the painting is answered whole (region 0, no corners), as is every
file with --whole. A bad file gets a row with its error instead of stopping the run. `artist` is always
the most likely of the model's artists, as the model names it (its key, e.g. Claude_Monet); `artist_name`
and `top5` name artists as the app shows them (Claude Monet); `known` is 0 when Tim says the painting is
not by one of them (unknown_score above the checkpoint's threshold, see `tim calibrate`); `painting` is 0
when Tim says the picture doesn't look like a painting (then `known` is 0 too).
Images are decoded by a pool of threads (or DataLoader worker processes with --workers)
while the model, in Tim's ONNX Runtime engine on a CPU, works on the ones before: several
times faster than opening and classifying one image at a time, with the model's own fp32 answers.
With --cam-dir each image's Grad-CAM overlay is written too, from the same forward.

Beyond one machine: `accelerate launch [--multi_gpu --num_processes N ...] -m tim predict ...`
splits the images between the processes (GPUs, nodes); the main process writes the one CSV,
in input order, every image exactly once.
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import os
import sys
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from accelerate import PartialState
from accelerate.utils import gather_object, parse_flag_from_env
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from tim.images import IMAGE_SUFFIXES, ImageError
from tim.plots import display_name
from tim.predictor import PRECISIONS, Predictor, Preprocessor
from tim.spreadsheet import safe_row

# new columns go at the end, so a script that reads columns by position keeps working
COLUMNS = ["path", "artist", "confidence", "top5", "error", "known", "unknown_score", "artist_name", "painting",
           "region", "corners"]


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
    """Files -> (index, pieces or None, error or None): a Piece per painting found in the file (one, the whole
    picture, with `whole`); errors are values, not exceptions."""

    def __init__(self, paths: list[str], preprocess: Preprocessor, keep_original: bool = False, whole: bool = False):
        self.paths = paths
        self.preprocess = preprocess
        self.keep_original = keep_original  # only --cam-dir needs the pictures (they cost pickling)
        self.whole = whole

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        try:
            _, pieces = self.preprocess.pieces(self.paths[i], self.whole)
        except ImageError as e:
            return i, None, str(e)
        except Exception as e:  # noqa: BLE001 - one odd file must not end a run over thousands
            return i, None, f"{self.paths[i]}: could not be read ({type(e).__name__}: {e})"
        if not self.keep_original:
            for piece in pieces:
                piece.picture = None
        return i, pieces, None


def _as_list(batch):
    return batch


def top_text(top: list[tuple[str, float]]) -> str:
    """'Claude Monet:0.9120; Alfred Sisley:0.0411; ...': the app's display names (tim.plots.display_name)."""
    return "; ".join(f"{display_name(artist)}:{p:.4f}" for artist, p in top)


def corners_text(corners) -> str:
    """x1 y1 x2 y2 x3 y3 x4 y4 (pixels, clockwise from top-left); empty for the whole picture."""
    return "" if corners is None else " ".join(f"{v:.0f}" for v in corners.reshape(-1))


def piece_cam_path(cam: Path, region: int) -> Path:
    """The first painting's overlay at the file's cam path, the n-th beside it as <name>_painting<n>_cam.jpg."""
    return cam if region <= 1 else cam.with_name(cam.name.replace("_cam.jpg", f"_painting{region}_cam.jpg"))


def _cam_paths(cam_dir: Path, inputs: list[tuple[str, str]]) -> list[Path]:
    """<cam_dir>/<relative name>_cam.jpg for every input, numbered where two inputs share a relative name."""
    used: set[Path] = set()
    out = []
    for _, rel in inputs:
        base = cam_dir / Path(rel).with_suffix("")
        path, n = base.with_name(base.name + "_cam.jpg"), 1
        while path in used:
            n += 1
            path = base.with_name(f"{base.name}_{n}_cam.jpg")
        used.add(path)
        out.append(path)
    return out


def decode_threads() -> int:
    """Decoding threads beside the model on a CPU (PIL and ONNX Runtime release the GIL)."""
    return 2


def threaded_batches(dataset: ImageFiles, batch_size: int, threads: int):
    """Batches of dataset items in order, decoded by `threads` threads up to two batches ahead of the consumer."""
    # each thread takes this process's torch thread count (OpenMP keeps one per thread): see `run`
    with ThreadPoolExecutor(threads, thread_name_prefix="tim-decode", initializer=torch.set_num_threads,
                            initargs=(torch.get_num_threads(),)) as pool:
        indices = iter(range(len(dataset)))
        pending = deque(pool.submit(dataset.__getitem__, i) for _, i in zip(range(2 * batch_size), indices))
        batch = []
        while pending:
            batch.append(pending.popleft().result())
            nxt = next(indices, None)
            if nxt is not None:
                pending.append(pool.submit(dataset.__getitem__, nxt))
            if len(batch) == batch_size or not pending:
                yield batch
                batch = []


def decoded_batches(dataset: ImageFiles, batch_size: int, workers: int | None, device: torch.device):
    """Decoding beside the model: threads by default on a CPU, else DataLoader worker processes."""
    if workers is None and device.type == "cpu":
        return threaded_batches(dataset, batch_size, decode_threads())
    if workers is None:
        workers = min(4, os.cpu_count() or 1)
    return DataLoader(dataset, batch_size=batch_size, num_workers=workers, collate_fn=_as_list,
                      persistent_workers=False, prefetch_factor=2 if workers else None)


def answer(predictor: Predictor, inputs: list[tuple[str, str]], cams: list[Path] | None = None,
           batch_size: int = 32, workers: int | None = None, k: int = 5, bar=None, whole: bool = False
           ) -> list[list[str]]:
    """The CSV rows for `inputs`, in order (one per painting found, largest first); with `cams` (one path per
    input) each overlay is written there."""
    paths = [p for p, _ in inputs]
    dataset = ImageFiles(paths, predictor.preprocessor, keep_original=cams is not None, whole=whole)
    rows: list[list[str]] = []
    width = len(COLUMNS) + (cams is not None)  # an error row's cells, the cam column included
    for batch in decoded_batches(dataset, batch_size, workers, predictor.device):
        pieces = [(i, piece) for i, found, _ in batch if found for piece in found]
        answers: dict[int, list] = {}
        if pieces:
            outcomes = predictor.answer_pieces([piece for _, piece in pieces], k, explain=cams is not None)
            for (i, _), outcome in zip(pieces, outcomes):
                answers.setdefault(i, []).append((outcome.prediction, outcome) if cams is not None else (outcome, None))
        for i, _, error in batch:
            if error is not None:
                rows.append([paths[i], "", "", "", error] + [""] * (width - 5))
                continue
            for prediction, explanation in answers[i]:
                row = [paths[i], prediction.artist, f"{prediction.confidence:.6f}", top_text(prediction.top), "",
                       int(prediction.known), f"{prediction.unknown_score:.6f}", display_name(prediction.artist),
                       int(prediction.painting), prediction.region, corners_text(prediction.corners)]
                if cams is not None:
                    cam = piece_cam_path(cams[i], prediction.region)
                    cam.parent.mkdir(parents=True, exist_ok=True)
                    Image.fromarray(explanation.overlay).save(cam, quality=90)
                    row.append(str(cam))
                rows.append(row)
        if bar is not None:
            bar.update(len(batch))
    return rows


@contextlib.contextmanager
def torch_threads(n: int):
    """torch's CPU threads set to `n` inside the block, restored after it."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def process_state() -> PartialState:
    """This process's place under `accelerate launch` (one process otherwise); CPU processes with ACCELERATE_USE_CPU."""
    return PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"))


# images per process between two gatherings: bounds memory on a million images, keeps the (temporary) CSV growing
ROUND = 2048


def run(predictor: Predictor, inputs: list[tuple[str, str]], out: str | os.PathLike, cam_dir: str | None = None,
        batch_size: int = 32, workers: int | None = None, k: int = 5, progress: bool = True,
        whole: bool = False) -> tuple[int, int]:
    """Write the CSV for `inputs` (from `collect`); returns (images, errors).

    Under `accelerate launch` every process answers its share of each round of images
    (split_between_processes), the rows are gathered, and the main process writes them in input order.
    """
    state = process_state()
    # with the engine, torch only normalises images and runs Grad-CAM heads: one OpenMP thread each, so the
    # decoding threads and ONNX Runtime's threads are not fighting over the cores with idle-spinning OpenMP teams
    threads = torch_threads(1) if predictor.engine is not None else contextlib.nullcontext()
    cams = _cam_paths(Path(cam_dir), inputs) if cam_dir else None
    errors = 0
    f = writer = None
    out = Path(out)
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")  # replaces `out` only once every row is written
    if state.is_main_process:
        out.parent.mkdir(parents=True, exist_ok=True)
        f = open(tmp, "w", newline="")
        writer = csv.writer(f)
        writer.writerow(COLUMNS + (["cam"] if cam_dir else []))
    try:
        with threads, tqdm(total=len(inputs), unit="img", disable=not progress or not state.is_main_process,
                           desc="Predicting") as bar:
            step = ROUND * state.num_processes
            for start in range(0, len(inputs), step):
                todo = list(range(start, min(start + step, len(inputs))))
                with state.split_between_processes(todo) as mine:
                    rows = answer(predictor, [inputs[i] for i in mine], [cams[i] for i in mine] if cams else None,
                                  batch_size, workers, k, bar if state.num_processes == 1 else None, whole)
                if state.num_processes > 1:
                    rows = gather_object(rows)  # every process's rows, in process order = input order
                    bar.update(len(todo))
                errors += sum(1 for row in rows if row[4])
                if writer is not None:
                    writer.writerows(map(safe_row, rows))  # no cell a spreadsheet would run (tim.spreadsheet)
                    f.flush()
        if f is not None:
            f.close()
            os.replace(tmp, out)
    finally:
        if f is not None:
            f.close()
            tmp.unlink(missing_ok=True)  # a crash or Ctrl-C: the old CSV stays, no half-written copy
    return len(inputs), errors


def add_cli(sub) -> None:
    p = sub.add_parser("predict", help="predict the artist of image files and folders into a CSV",
                       description=__doc__.splitlines()[0])
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files and folders (searched recursively)")
    p.add_argument("--model", help="checkpoint folder or Hub repo user/name[@rev] (default: the bundled model)")
    p.add_argument("--out", required=True, help="CSV to write: path, artist, confidence, top5, error, known "
                                                  "(0 = not one of the model's artists), unknown_score, artist_name, "
                                                  "painting (0 = doesn't look like a painting), region (0 = whole "
                                                  "picture; 1, 2, ... = paintings found, largest first), corners")
    p.add_argument("--whole", action="store_true",
                   help="answer each file whole (one row, region 0): no looking for paintings in it")
    p.add_argument("--cam-dir", help="also write each image's Grad-CAM overlay here (<name>_cam.jpg)")
    p.add_argument("--batch-size", type=int, default=32, help="images decoded and answered together")
    p.add_argument("--workers", type=int, default=None,
                   help="DataLoader decoding processes (default: decoding threads beside the model on a CPU, "
                        "else min(4, CPUs))")
    p.add_argument("--precision", choices=PRECISIONS, default="fp32",
                   help="fp32 (default): the model's own answers; bf16: autocast, faster on CPUs with bf16 units, "
                        "answers may differ (tim evaluate --precision bf16 measures how often)")
    p.add_argument("--top-k", type=int, default=5, help="artists listed in the top5 column")
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
        predictor = Predictor.load(ref, device=process_state().device, precision=args.precision)
    except (CheckpointError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if Path(args.out).is_dir():
        print(f"error: --out {args.out} is a folder; name the CSV file to write (e.g. {Path(args.out) / 'results.csv'})",
              file=sys.stderr)
        return 1
    inputs = collect(args.paths)
    if not inputs:
        print(f"error: no image files in {' '.join(args.paths)}", file=sys.stderr)
        return 1
    total, errors = run(predictor, inputs, args.out, args.cam_dir, args.batch_size, args.workers, args.top_k,
                        whole=args.whole)
    if not process_state().is_main_process:
        return 0
    print(f"{total} images with {ref}: {total - errors} predicted, {errors} errors -> {args.out}"
          + (f"; Grad-CAMs in {args.cam_dir}" if args.cam_dir else ""))
    return 0
