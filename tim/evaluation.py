"""`tim evaluate CHECKPOINT`: test-split numbers for a checkpoint, with intervals and figures.

Honest evaluation means three things here:
- the same images: the split is rebuilt from the data recipe saved in the
  checkpoint (config["tim"]["data"]), so it is the test split the model never
  trained on; `--data` only says where those paintings are on this machine;
- the same preprocessing: images go through the checkpoint's own Predictor
  (its square mode, size, pad colour, mean/std), as in the app;
- every image once: under `accelerate launch` each process sees part of the
  split and the last batch is padded with repeats; `gather_for_metrics` drops
  the repeats, and the gathered indices are checked to be the split, exactly.

Results go next to the weights:
eval_results.json, predictions.csv, confusion_matrix.png, training_curves.png.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator, PartialState
from sklearn.metrics import confusion_matrix
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from tim.checkpoint import (
    CONFIG_NAME,
    CONFUSION_NAME,
    CURVES_NAME,
    EVAL_RESULTS_NAME,
    PREDICTIONS_NAME,
    RELIABILITY_NAME,
    UNKNOWN_HISTOGRAM_NAME,
    CheckpointError,
)
from tim.data import SPLITS, DataError, IndexedSplit, prepare_data
from tim.errors import UserError
from tim.hub import open_checkpoint
from tim.spreadsheet import safe_row
from tim.metrics import METRIC_NAMES, bootstrap_intervals, per_artist_table, top_k_accuracy
from tim.plots import (
    display_name,
    plot_confusion_matrix,
    plot_reliability,
    plot_score_histogram,
    plot_training_curves,
    read_log,
)
from tim.predictor import PRECISIONS, Predictor
from tim.recipe import RecipeError, data_config_for, load_other_artists, select_artists  # noqa: F401 - data_config_for: also here

LOG_NAME = "log.csv"


class EvaluationError(UserError):
    """The checkpoint and the data cannot be evaluated together; the message says why and what to do."""


def artist_mismatch(checkpoint_artists: list[str], data_artists: list[str]) -> str | None:
    """How a model's artists differ from the data's (None: the same artists, in the same order)."""
    if list(checkpoint_artists) == list(data_artists):
        return None
    missing = [a for a in checkpoint_artists if a not in data_artists]
    extra = [a for a in data_artists if a not in checkpoint_artists]
    detail = []
    if missing:
        detail.append(f"the model knows {missing} but the data has no such artist")
    if extra:
        detail.append(f"the data has {extra} that the model never learned")
    return "; ".join(detail) or "the same artists in a different order"


def check_artists(checkpoint_artists: list[str], data_artists: list[str], source: str) -> None:
    """Refuse to evaluate when the data's artists are not the model's, in the same order."""
    detail = artist_mismatch(checkpoint_artists, data_artists)
    if detail is None:
        return
    raise EvaluationError(
        f"the artists of {source} do not match the checkpoint's label_names: {detail}. "
        f"The checkpoint has {len(checkpoint_artists)} artists, the data {len(data_artists)}. "
        "Point --data at the paintings the model was trained on."
    )


def default_output_dir(ref: str) -> Path:
    """The checkpoint folder itself when local; ./evaluations/<user--name> for a Hub model."""
    if Path(ref).is_dir():
        return Path(ref)
    return Path("evaluations") / ref.replace("/", "--").replace("@", "--")


def evaluate_checkpoint(
    ref: str,
    data_config_overrides: dict | None = None,
    split: str = "test",
    batch_size: int = 64,
    output_dir: str | os.PathLike | None = None,
    log_path: str | os.PathLike | None = None,
    resamples: int = 1000,
    seed: int = 0,
    num_workers: int = 0,
    accelerator: Accelerator | None = None,
    precision: str = "fp32",
    unknown_dir: str | os.PathLike | None = None,
    photos: int | None = None,
    not_paintings_dir: str | os.PathLike | None = None,
    painting_photos: list[str] | None = None,
) -> dict:
    """Evaluate a checkpoint on a split of its own data recipe; write the result files; return eval_results.

    unknown_dir: paintings of other artists (one folder per artist) to measure the unknown-artist decision on;
    when the checkpoint was calibrated with part of that folder, only its held-out artists are used.
    photos: robustness: the split's paintings (all with 0, else that many, seeded) as Tim's simulated phone
    photos in both styles, answered whole, located (the paintings found, straightened) and perfectly cropped.
    not_paintings_dir: photos that are not paintings: the not-a-painting decision measured on them (only the
    classes held out when it was fitted); painting_photos: real photos of paintings (files), answered located:
    the share that Tim says doesn't look like a painting.

    ref: a local checkpoint folder or a Hub id (tim.hub.open_checkpoint).
    data_config_overrides: DataConfig fields to change, usually {"source": path} (the `--data` flag).
    log_path: the run's log.csv for training_curves.png (default: CHECKPOINT/../log.csv).
    precision: "fp32" (the model's answers) or "bf16"; then the fp32 answers are computed too and
    results["precision"]["top1_agreement_with_fp32"] says on which share of the images they agree
    (and the bf16 metrics are not copied into the checkpoint's config).
    Runs on every process under `accelerate launch`; only the main process writes files.
    The returned dict is the content of eval_results.json, on every process.
    """
    if split not in SPLITS:
        raise EvaluationError(f"split {split!r} is not one of {SPLITS}")
    accelerator = accelerator or Accelerator()
    model, config, folder = open_checkpoint(ref)  # folder: where unknown.safetensors is (a Hub model: the cache)
    local = Path(ref).is_dir()
    predictor = Predictor(model, config, device=accelerator.device, precision=precision,
                          checkpoint=Path(ref) if local else None, folder=folder)
    data_cfg = data_config_for(config, data_config_overrides)
    with accelerator.main_process_first():  # the main process builds the image cache, the others reuse it
        data = prepare_data(data_cfg)
    check_artists(predictor.labels, data.artists, data_cfg.source)
    rows = data.splits[split]
    if len(rows) == 0:
        raise EvaluationError(f"the {split} split of {data_cfg.source} is empty (fractions {data_cfg.fractions})")

    logits, features, texture = split_outputs(predictor, IndexedSplit(rows, predictor.transform), batch_size,
                                              num_workers, accelerator, desc=f"Evaluating on {split}")
    answers = predictor.answer(torch.from_numpy(logits), torch.from_numpy(features), torch.from_numpy(texture))
    probabilities = answers.probabilities.numpy()
    precision_block = {"name": precision}
    if precision != "fp32":
        reference = Predictor(model, config, device=accelerator.device, checkpoint=predictor.checkpoint,
                              folder=folder)
        fp32 = predict_split(reference, IndexedSplit(rows, reference.transform), batch_size, num_workers,
                             accelerator, desc=f"fp32 answers on {split}")
        precision_block["top1_agreement_with_fp32"] = float(np.mean(fp32.argmax(1) == probabilities.argmax(1)))
    references = np.asarray(rows["artist"])
    predictions = probabilities.argmax(axis=1)
    artists = predictor.labels
    intervals = bootstrap_intervals(references, predictions, len(artists), resamples, seed)
    results = {
        "checkpoint": str(ref),
        "architecture": config.get("architecture"),
        "split": split,
        "num_images": int(len(predictions)),  # answers gathered, each image once
        "processes": accelerator.num_processes,
        "data": data_cfg.to_dict(),
        "metrics": {name: intervals[name].as_dict() for name in METRIC_NAMES},
        "bootstrap": {"resamples": resamples, "seed": seed, "confidence": 0.95},
        "top5_accuracy": top_k_accuracy(references, probabilities, 5, resamples, seed).as_dict(),
        "per_artist": per_artist_table(references, predictions, artists),
        "precision": precision_block,
    }
    results["calibration"], reliability_tables = calibration_report(predictor, logits, probabilities, references)
    unknown = None
    if unknown_dir is not None:
        unknown = unknown_report(predictor, config, answers, probabilities.argmax(1) == references, unknown_dir,
                                 data_cfg.cache_dir, batch_size, num_workers, accelerator)
        results["unknown"] = unknown["report"]
    results["painting"] = painting_report(predictor, answers, not_paintings_dir, painting_photos)
    if photos is not None:
        results["photos"] = photo_report(predictor, rows, references, predictions == references, photos, seed,
                                         progress=accelerator.is_local_main_process)
    if accelerator.is_main_process:
        out = Path(output_dir) if output_dir is not None else default_output_dir(ref)
        write_results(out, results, rows["path"], references, probabilities, artists)
        plot_reliability(*reliability_tables, out / RELIABILITY_NAME, title=f"{split} split, {len(references)} "
                         f"images ({results['calibration']['method'] or 'not calibrated'})")
        if unknown is not None:
            rep = unknown["report"]
            plot_score_histogram(unknown["known"], unknown["unknown"], rep["threshold"], out / UNKNOWN_HISTOGRAM_NAME,
                                 title=f"{rep['score']}: AUROC {rep['auroc']:.3f}, {rep['unknown_rejected']:.1%} of "
                                       f"other artists rejected, {rep['known_kept']:.1%} known kept")
        log = None
        if log_path:
            log = Path(log_path)
        elif local:
            log = Path(ref).resolve().parent / LOG_NAME
        if log is not None and log.is_file():
            plot_training_curves(read_log(log), out / CURVES_NAME, title=f"{log.parent.name}/{Path(ref).name}")
        elif log_path:  # asked for explicitly, so say why there is no figure
            print(f"warning: no training log at {log_path}; training_curves.png not drawn", file=sys.stderr)
        if local and split == "test" and precision == "fp32":
            record_metrics(ref, results)
    accelerator.wait_for_everyone()
    return results


def split_outputs(predictor: Predictor, dataset: IndexedSplit, batch_size: int, num_workers: int,
                  accelerator: Accelerator, desc: str = "Evaluating") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(logits N x K, pooled features N x D, texture N x T) for every image of `dataset`, in its row order, each
    exactly once (Predictor.outputs, gathered across processes)."""
    loader = accelerator.prepare(DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers))
    gathered, gathered_index = [], []
    with torch.inference_mode():
        for images, _, index in tqdm(loader, desc=desc, disable=not accelerator.is_local_main_process):
            outputs = [column.to(accelerator.device) for column in predictor.outputs(images)]
            *outputs, index = accelerator.gather_for_metrics((*outputs, index.to(accelerator.device)))
            gathered.append([column.cpu() for column in outputs])
            gathered_index.append(index.cpu())
    index = torch.cat(gathered_index).numpy() if gathered_index else np.zeros(0, dtype=int)
    if not np.array_equal(np.sort(index), np.arange(len(dataset))):
        raise RuntimeError(
            f"evaluation gathered {len(index)} answers for {len(np.unique(index))} distinct images of a split of "
            f"{len(dataset)}; every image must be counted exactly once"
        )
    order = np.argsort(index)
    logits, features, texture = (torch.cat(column).numpy()[order] for column in zip(*gathered))
    return logits, features, texture


def simulated_photos(rows, indices, style: str, seed: int = 0):
    """Tim's simulated phone photos (tim.photos) of the paintings `rows[indices]`, one at a time (seeded by
    `seed` + row index, so two runs agree): an iterator of SimulatedPhoto."""
    from tim.data import pixels_to_image
    from tim.photos import simulate_photo

    pixels = rows.select_columns(["pixels"]).with_format(None)
    for i in indices:
        yield simulate_photo(pixels_to_image(pixels[int(i)]["pixels"]), seed=seed + int(i), style=style)


def open_pictures(predictor: Predictor, paths):
    """The decoded pictures of `paths`, one at a time, as the Predictor opens them to locate paintings."""
    from tim.predictor import LOCATE_DRAFT

    for path in paths:
        yield predictor.preprocessor.open(path, LOCATE_DRAFT)


def photo_report(predictor: Predictor, rows, references: np.ndarray, clean_right: np.ndarray, limit: int,
                 seed: int = 0, chunk: int = 32, progress: bool = True) -> dict:
    """Accuracy of the split's paintings as simulated photos (each style): whole, located, perfectly cropped;
    and the share of the located photos Tim says are no painting (none of their answers is one). Beside them,
    the accuracy on the same paintings as clean scans (`clean_right`: the split's answers right or wrong): a
    sample can be easier or harder than the split."""
    from tim.photos import STYLES

    picks = np.arange(len(rows))
    if limit and limit < len(rows):
        picks = np.sort(np.random.default_rng(seed).choice(len(rows), limit, replace=False))
    report = {"images": int(len(picks)), "seed": seed, "accuracy_clean": float(clean_right[picks].mean())}
    for style in STYLES:
        right = {"whole": [], "located": [], "cropped": []}
        rejected, found = [], []
        sims = simulated_photos(rows, picks, style, seed)
        bar = tqdm(total=len(picks), desc=f"Simulated {style} photos", unit="photo", disable=not progress)
        for start in range(0, len(picks), chunk):
            batch = [next(sims) for _ in picks[start : start + chunk]]
            truth = references[picks[start : start + chunk]]
            for name, pictures, whole in (("whole", [b.photo for b in batch], True),
                                          ("located", [b.photo for b in batch], False),
                                          ("cropped", [b.cropped for b in batch], True)):
                pieces = predictor.piece_outputs(pictures, whole=whole)
                owner = pieces.owner
                first = np.unique(owner, return_index=True)[1]  # each photo's largest painting answers for it
                right[name].append(pieces.logits[first].argmax(1) == truth)
                if name == "located":
                    ans = predictor.answer(*(torch.from_numpy(x) for x in (pieces.logits, pieces.features,
                                                                           pieces.texture)))
                    painting = ans.painting.numpy()
                    rejected += [not painting[owner == i].any() for i in np.unique(owner)]
                    found += [int(np.sum(owner == i)) for i in np.unique(owner)]
            bar.update(len(batch))
        bar.close()
        report[style] = {**{f"accuracy_{k}": float(np.concatenate(v).mean()) for k, v in right.items()},
                         "not_a_painting": float(np.mean(rejected)), "paintings_found_mean": float(np.mean(found))}
    return report


def painting_report(predictor: Predictor, answers, not_paintings_dir=None, painting_photos=None) -> dict | None:
    """The not-a-painting decision on the split's scans, on the held-out classes of `not_paintings_dir` and on
    real photos of paintings; None when the checkpoint has no such decision."""
    from tim.painting import not_painting_files, rejected_share

    detector = predictor.painting
    if detector is None:
        return None
    report = {"threshold": detector.threshold, "scans_rejected": float((~answers.painting).float().mean()),
              "scans": int(len(answers.painting)), "fitted": detector.info.get("held_out")}

    def rejected(paths):
        found = predictor.piece_outputs(open_pictures(predictor, paths))
        scores = detector.score(torch.from_numpy(found.features), torch.from_numpy(found.texture)).numpy()
        return rejected_share(scores, found.owner, detector.threshold)

    if not_paintings_dir:
        fitted = set(detector.info.get("fit_classes") or [])
        held = [p for p, c in not_painting_files(not_paintings_dir) if c not in fitted]
        if not held:
            raise EvaluationError(f"every class of {not_paintings_dir} was used to fit the not-a-painting decision; "
                                  "report on other pictures.")
        report.update(not_paintings_dir=str(not_paintings_dir), not_paintings_held_out=len(held),
                      not_paintings_rejected=rejected(held))
    if painting_photos:
        report.update(painting_photos=len(painting_photos), painting_photos_rejected=rejected(painting_photos))
    return report


def calibration_report(predictor: Predictor, logits: np.ndarray, calibrated: np.ndarray,
                       references: np.ndarray) -> tuple[dict, tuple[dict, dict]]:
    """ECE before (plain softmax) and after the checkpoint's calibration; and the two reliability tables."""
    from tim.calibration import BINS, ece, reliability

    plain = torch.from_numpy(logits).softmax(-1).numpy()
    before, after = reliability(plain, references), reliability(calibrated, references)
    before["ece"], after["ece"] = ece(plain, references), ece(calibrated, references)
    cal = predictor.calibration
    return {"method": cal.method if cal else None, "bins": BINS, "ece_before": before["ece"],
            "ece_after": after["ece"], "mean_confidence_before": float(plain.max(1).mean()),
            "mean_confidence_after": float(calibrated.max(1).mean()),
            "top1_unchanged": bool((plain.argmax(1) == calibrated.argmax(1)).all())}, (before, after)


def unknown_report(predictor: Predictor, config: dict, answers, known_correct: np.ndarray, unknown_dir,
                   cache_dir: str | None, batch_size: int, num_workers: int, accelerator: Accelerator) -> dict:
    """The unknown-artist decision measured on the split's paintings (known) and other artists' (unknown)."""
    from tim.openset import open_set_report

    images, artists = load_other_artists(str(unknown_dir), config, predictor.labels, cache_dir)
    detector = predictor.unknown
    held_out = None
    if detector is not None and detector.info.get("fit_artists"):
        fitted = set(detector.info["fit_artists"])
        held_out = [a for a in artists if a not in fitted]
        if not held_out:
            raise EvaluationError(f"every artist of {unknown_dir} was used to fit the unknown-artist decision; "
                                  "report on other artists (or recalibrate with --unknown-fit-fraction below 1).")
        images = select_artists(images, artists, held_out)
    outputs = split_outputs(predictor, IndexedSplit(images, predictor.transform), batch_size, num_workers,
                            accelerator, desc="Other artists")
    other = predictor.answer(*map(torch.from_numpy, outputs))
    threshold = detector.threshold if detector is not None else float("inf")
    known, unknown = answers.unknown_score.numpy(), other.unknown_score.numpy()
    report = open_set_report(known, known_correct, unknown, threshold)
    report.update(
        score=detector.score_name if detector else "1 - top probability (no decision stored: every answer is known)",
        dir=str(unknown_dir), artists=len(held_out if held_out is not None else artists),
        held_out_only=held_out is not None,
        note=(f"only the {len(held_out)} artists of {unknown_dir} held out when the decision was fitted"
              if held_out is not None else f"all {len(artists)} artists of {unknown_dir}"),
        unknown_named_over_half=float((other.probabilities.max(-1).values > 0.5).float().mean()),
    )
    if not np.isfinite(report["threshold"]):
        report["threshold"] = None
    return {"report": report, "known": known, "unknown": unknown}


def predict_split(predictor: Predictor, dataset: IndexedSplit, batch_size: int, num_workers: int,
                  accelerator: Accelerator, desc: str = "Evaluating") -> np.ndarray:
    """Calibrated class probabilities (N x K, in the split's row order) for every image of `dataset`, each once."""
    outputs = split_outputs(predictor, dataset, batch_size, num_workers, accelerator, desc)
    return predictor.answer(*map(torch.from_numpy, outputs)).probabilities.numpy()


def write_results(out: Path, results: dict, paths: list[str], references: np.ndarray, probabilities: np.ndarray,
                  artists: list[str]) -> None:
    """eval_results.json, predictions.csv and confusion_matrix.png in `out`."""
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomically(out / EVAL_RESULTS_NAME, results)
    predictions = probabilities.argmax(axis=1)
    with open(out / PREDICTIONS_NAME, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "true", "predicted", "confidence"])
        for path, true, pred, probs in zip(paths, references, predictions, probabilities):
            writer.writerow(safe_row([path, artists[true], artists[pred], f"{probs[pred]:.6f}"]))
    cm = confusion_matrix(references, predictions, labels=np.arange(len(artists)))
    acc = results["metrics"]["accuracy"]
    title = (f"{results['split']} split, {results['num_images']} images: accuracy {acc['value']:.3f} "
             f"[{acc['low']:.3f}, {acc['high']:.3f}]")
    plot_confusion_matrix(cm, artists, out / CONFUSION_NAME, title=title)


def write_json_atomically(path: Path, content: dict) -> None:
    """Write to a temporary file, then rename: a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(content, indent=2, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def record_metrics(folder: str | os.PathLike, results: dict) -> None:
    """Copy the metric values (no intervals) into config["tim"]["metrics"], so the app can show test accuracy."""
    path = Path(folder) / CONFIG_NAME
    config = json.loads(path.read_text())
    config["tim"]["metrics"] = {
        "split": results["split"],
        "num_images": results["num_images"],
        **{name: m["value"] for name, m in results["metrics"].items()},
    }
    write_json_atomically(path, config)


def format_summary(results: dict) -> str:
    """The metrics with their intervals, then the per-artist table, as plain text."""
    boot = results["bootstrap"]
    lines = [
        f"{results['checkpoint']} on the {results['split']} split: {results['num_images']} images, "
        f"{len(results['per_artist'])} artists",
        "",
        f"{'metric':20} {'value':>7}   {int(boot['confidence'] * 100)}% interval",
    ]
    top5 = {"top5_accuracy": results["top5_accuracy"]} if "top5_accuracy" in results else {}  # older results lack it
    for name, m in {**results["metrics"], **top5}.items():
        lines.append(f"{name:20} {m['value']:7.3f}   [{m['low']:.3f}, {m['high']:.3f}]")
    lines.append(f"(bootstrap: {boot['resamples']} resamples of the images, seed {boot['seed']})")
    agreement = results.get("precision", {}).get("top1_agreement_with_fp32")
    if agreement is not None:
        lines.append(f"precision {results['precision']['name']}: top-1 answer agrees with fp32 on {agreement:.2%} "
                     f"of the {results['num_images']} images")
    lines.append("")
    cal = results.get("calibration")
    if cal:
        lines += [f"calibration: {cal['method'] or 'none'}; ECE ({cal['bins']} bins) {cal['ece_before']:.3f} before, "
                  f"{cal['ece_after']:.3f} after; mean confidence {cal['mean_confidence_before']:.3f} -> "
                  f"{cal['mean_confidence_after']:.3f} (accuracy {results['metrics']['accuracy']['value']:.3f})", ""]
    unk = results.get("unknown")
    if unk:
        lines += [
            f"unknown artists: {unk['unknown_images']} paintings by {unk['note']}",
            f"  score {unk['score']}" + (f", threshold {unk['threshold']:.4f}" if unk["threshold"] is not None else ""),
            f"  AUROC known vs unknown     {unk['auroc']:.3f}",
            f"  unknown paintings rejected {unk['unknown_rejected']:.1%}",
            f"  known paintings kept       {unk['known_kept']:.1%}",
            f"  open-set accuracy          {unk['open_set_accuracy']:.3f} (known named right + unknown rejected, "
            f"over all {unk['known_images'] + unk['unknown_images']})",
            "",
        ]
    lines += painting_summary(results.get("painting")) + photo_summary(results.get("photos"))
    width = max(20, *(len(display_name(r["artist"])) for r in results["per_artist"]))
    lines.append(f"{'artist':{width}} {'precision':>9} {'recall':>7} {'f1':>6} {'support':>8}")
    for r in results["per_artist"]:
        lines.append(f"{display_name(r['artist']):{width}} {r['precision']:9.3f} {r['recall']:7.3f} "
                     f"{r['f1']:6.3f} {r['support']:8d}")
    return "\n".join(lines)


def painting_summary(rep: dict | None) -> list[str]:
    if not rep:
        return []
    lines = [f"not a painting (P(painting) < {rep['threshold']:.4f}):",
             f"  scans of this split answered 'doesn't look like a painting'   {rep['scans_rejected']:.1%} of "
             f"{rep['scans']}"]
    if "not_paintings_rejected" in rep:
        lines.append(f"  held-out non-painting photos answered so              {rep['not_paintings_rejected']:.1%} of "
                     f"{rep['not_paintings_held_out']} ({rep['not_paintings_dir']})")
    if "painting_photos_rejected" in rep:
        lines.append(f"  real photos of paintings answered so                  {rep['painting_photos_rejected']:.1%} of "
                     f"{rep['painting_photos']}")
    return lines + [""]


def photo_summary(rep: dict | None) -> list[str]:
    if not rep:
        return []
    from tim.photos import STYLES

    clean = f"; {rep['accuracy_clean']:.3f} as clean scans" if "accuracy_clean" in rep else ""
    lines = [f"simulated phone photos of {rep['images']} paintings of this split (seed {rep['seed']}{clean}): accuracy",
             f"  {'style':8} {'whole':>6} {'located':>8} {'cropped':>8} {'not a painting':>15} {'found':>6}"]
    for style in STYLES:
        r = rep[style]
        lines.append(f"  {style:8} {r['accuracy_whole']:6.3f} {r['accuracy_located']:8.3f} {r['accuracy_cropped']:8.3f}"
                     f" {r['not_a_painting']:15.1%} {r['paintings_found_mean']:6.2f}")
    return lines + ["  (whole: the photo as it is; located: the largest painting found, straightened; cropped: the "
                    "painting perfectly cropped, same light and camera)", ""]


def add_cli(sub) -> None:
    p = sub.add_parser("evaluate", help="test-split metrics with intervals, confusion matrix and curves",
                       description="Evaluate a checkpoint on the split its data recipe defines. Runs under "
                                   "`accelerate launch` too; every image is counted once.")
    p.add_argument("checkpoint", help="checkpoint folder (e.g. runs/NAME/best) or Hub model id")
    p.add_argument("--data", help="where the training paintings are on this machine (default: the recorded source)")
    p.add_argument("--split", choices=SPLITS, default="test", help="which split of the checkpoint's data to read")
    p.add_argument("--batch-size", type=int, default=64, help="per process")
    p.add_argument("--output-dir", help="default: the checkpoint folder (./evaluations/NAME for a Hub model)")
    p.add_argument("--log", help="the run's log.csv for training_curves.png (default: CHECKPOINT/../log.csv)")
    p.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples for the intervals")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    p.add_argument("--num-workers", type=int, default=0, help="DataLoader workers")
    p.add_argument("--cache-dir", help="prepared-image cache (default ~/.cache/tim/prepared)")
    p.add_argument("--precision", choices=PRECISIONS, default="fp32",
                   help="fp32 (default) or bf16; with bf16 the top-1 agreement with fp32 is measured and printed")
    p.add_argument("--unknown", metavar="DIR",
                   help="paintings of OTHER artists (one folder per artist): measure the unknown-artist decision "
                        "(AUROC, rejected, kept, open-set accuracy, unknown_scores.png); when the checkpoint was "
                        "calibrated with part of DIR, only its held-out artists are used")
    p.add_argument("--photos", nargs="?", type=int, const=0, default=None, metavar="N",
                   help="robustness: the split's paintings (all, or N of them, seeded) as simulated phone photos in "
                        "both styles, accuracy whole / located / perfectly cropped beside the clean figure")
    p.add_argument("--not-paintings", metavar="DIR",
                   help="photos that are NOT paintings: share answered 'doesn't look like a painting' (only the "
                        "classes held out when `tim calibrate --not-paintings` fitted the decision)")
    p.add_argument("--painting-photos", nargs="+", metavar="FILE",
                   help="real photos of paintings (e.g. gallery-photos/*/*.jpg): share answered 'doesn't look like "
                        "a painting' (a check: should be near 0)")
    p.set_defaults(func=run_cli)


def run_cli(args: argparse.Namespace) -> int:
    from tim.openset import OpenSetError

    overrides = {k: v for k, v in (("source", args.data), ("cache_dir", args.cache_dir)) if v is not None}
    try:
        results = evaluate_checkpoint(
            args.checkpoint, overrides, split=args.split, batch_size=args.batch_size, output_dir=args.output_dir,
            log_path=args.log, resamples=args.resamples, seed=args.seed, num_workers=args.num_workers,
            precision=args.precision,
            unknown_dir=args.unknown, photos=args.photos, not_paintings_dir=args.not_paintings,
            painting_photos=args.painting_photos,
        )
    except (EvaluationError, RecipeError, CheckpointError, DataError, OpenSetError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if PartialState().is_main_process:
        out = Path(args.output_dir) if args.output_dir else default_output_dir(args.checkpoint)
        written = [n for n in (EVAL_RESULTS_NAME, PREDICTIONS_NAME, CONFUSION_NAME, CURVES_NAME, RELIABILITY_NAME,
                               UNKNOWN_HISTOGRAM_NAME) if (out / n).is_file()]
        print(format_summary(results))
        print(f"\nWrote {', '.join(written)} to {out}")
    return 0
