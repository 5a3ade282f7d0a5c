"""`tim calibrate CHECKPOINT --data DATA [--unknown DIR]`: calibrated confidence and "not one of the artists I know".

Fits, on the checkpoint's own validation split (rebuilt from the data recipe in
config.json, refused if the data does not give the same split):

1. a calibration of the logits (tim.calibration; the method with the lowest
   cross-validated ECE), stored as config.json `tim.calibration`;
2. an unknown-artist score and its threshold (tim.openset), keeping `--retention`
   of the validation paintings as "known". With `--unknown DIR` (paintings of
   other artists, one folder per artist) that folder is split BY ARTIST (seeded):
   the fit part trains/compares the candidate scores, the other part is never
   used here and is what `tim evaluate --unknown DIR` reports on. The candidates
   are printed side by side on the same validation data and the best AUROC is kept.
   Without `--unknown` the score is 1 - calibrated top probability (nothing to measure others with).
3. with `--not-paintings DIR` (photos that are not paintings), "this doesn't look like a painting"
   (tim.painting): a logistic head on the model's pooled features and texture statistics, paintings
   (the training split, simulated phone photos of it as the locator straightens them, the fit part of
   `--unknown` as scans and as simulated photos) against the fit part of DIR, split BY CLASS (seeded),
   each of its photos also reframed a few times (tim.photos.reframed); the threshold lets
   `--painting-retention` of the validation scans pass. The held-out classes, simulated photos of validation paintings and the
   validation scans give the figures stored with it (and printed).

Everything is written into the checkpoint folder at once (config.json, unknown.safetensors, painting.safetensors),
by renaming a finished copy into place; the weights are not touched.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator

from tim.calibration import Calibration, calibrated_probabilities, ece, fit_best
from tim.checkpoint import (
    CONFIG_NAME,
    PAINTING_NAME,
    UNKNOWN_NAME,
    CheckpointError,
    hub_layout,
    load_checkpoint,
    read_config,
    replace_folder,
)
from tim.data import DataError, IndexedSplit, prepare_data
from tim.evaluation import EvaluationError, check_artists, open_pictures, simulated_photos, split_outputs
from tim.openset import (
    NEEDS_OUTLIERS,
    SCORES,
    UNFITTED,
    OpenSetError,
    UnknownDetector,
    candidate_scores,
    fit_statistics,
    open_set_report,
    split_artists,
    threshold_for,
)
from tim.outliers import trained_with_outliers
from tim.painting import (
    INPUTS,
    SCAN_RETENTION,
    PaintingDetector,
    fit_head,
    head_inputs,
    not_painting_files,
    rejected_share,
    split_classes,
)
from tim.painting import threshold_for as painting_threshold
from tim.predictor import Predictor
from tim.recipe import RecipeError, data_config_for, load_other_artists, select_artists
from tim.validate import validate_checkpoint

# scores compared when other artists' paintings are given; knn-cosine would store the whole training set
DEFAULT_CANDIDATES = ("max-probability", "entropy", "mahalanobis", "outlier-exposure",
                      "outlier-exposure+max-probability")


def raw_predictor(model, config: dict, device) -> Predictor:
    """A Predictor that answers with the plain softmax: calibration and unknown decision stripped from its config."""
    bare = json.loads(json.dumps(config))
    bare["tim"].pop("calibration", None)
    bare["tim"].pop("unknown", None)
    bare["tim"].pop("painting", None)
    return Predictor(model, bare, device=device)


def check_split(config: dict, data) -> None:
    """Refuse data whose rebuilt split differs from the one the checkpoint recorded (other images or recipe)."""
    recorded = (config["tim"].get("split_sizes") or {})
    metrics = config["tim"].get("metrics") or {}
    if not recorded and metrics.get("split") == "test" and metrics.get("num_images"):
        recorded = {"test": metrics["num_images"]}
    for split, n in recorded.items():
        if split in data.splits and len(data.splits[split]) != int(n):
            raise EvaluationError(
                f"the {split} split rebuilt from the data has {len(data.splits[split])} images, but the checkpoint "
                f"recorded {n}: this is not the data (or the split recipe) the model was trained and evaluated on. "
                "Point --data at the paintings it was trained on."
            )


def outputs(predictor: Predictor, rows, accelerator, batch_size: int, num_workers: int, desc: str) -> dict:
    logits, features, texture = split_outputs(predictor, IndexedSplit(rows, predictor.transform), batch_size,
                                              num_workers, accelerator, desc=desc)
    return {"logits": logits, "features": features, "texture": texture, "labels": np.asarray(rows["artist"])}


def choose_unknown_score(val: dict, train: dict | None, outliers: dict | None, retention: float,
                         candidates=DEFAULT_CANDIDATES, seed: int = 0) -> tuple[str, list[dict]]:
    """The candidate with the best AUROC on validation vs the fit part of the other artists; and the table."""
    if outliers is None or train is None:
        return "max-probability", []
    train = {**train, "probs": torch.as_tensor(train["logits"]).softmax(-1).numpy()}
    names = [c for c in candidates if c in SCORES]
    scores = candidate_scores(names, train, val, {**outliers, "artists": outliers["labels"]}, seed)
    table = []
    for name, (known_scores, outlier_scores) in scores.items():
        threshold = threshold_for(known_scores, retention)
        row = open_set_report(known_scores, val["correct"], outlier_scores, threshold)
        table.append({"score": name, **row})
    best = max(table, key=lambda r: r["auroc"])
    return best["score"], table


# training scans among the paintings with --only-painting (the full run has every one's features anyway)
ONLY_PAINTING_TRAIN = 2000
# simulated phone photos among the paintings the not-a-painting head is fitted on (training split), and per
# style for its figure (validation split): enough to measure a 3% goal, minutes on a 2-core CPU
PHOTOS_FIT = 600
PHOTOS_REPORT = 200
# other artists' paintings (the --unknown fit part) as simulated photos, per style, among the paintings: what a
# photo of a painting by an artist the model does not know looks like; and other shots of each fit not-painting photo
# (tim.photos.reframed) among the pictures that are not. Both added on the first bundled pair, A + B (README, issue
# 19): real gallery photos of paintings answered "not a painting" 16.7% -> 3.3%, held-out not-paintings 92.0% -> 92.8%
OTHER_PHOTOS_FIT = 1000
REFRAMED = 6


def photo_inputs(predictor: Predictor, rows, count: int, seed: int, inputs: tuple[str, ...]
                 ) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(style, what the not-a-painting head reads, owner) of the paintings the Predictor finds in simulated photos
    of `count` seeded rows per style, located and straightened as `analyse` does."""
    from tim.photos import STYLES  # OpenCV and albumentations only when photos are made

    picks = np.random.default_rng(seed).choice(len(rows), min(count, len(rows)), replace=False)
    out = []
    for style in STYLES:
        found = predictor.piece_outputs(p.photo for p in simulated_photos(rows, picks, style, seed))
        out.append((style, head_inputs(found.features, found.texture, inputs).numpy(), found.owner))
    return out


def reframed_pictures(pictures: list, seed: int):
    """REFRAMED other shots (tim.photos.reframed) of each of `pictures`, one at a time."""
    from tim.photos import reframed

    for i, picture in enumerate(pictures):
        yield from reframed(picture, REFRAMED, seed + i)


def fit_painting_decision(predictor: Predictor, prepared, train: dict, val: dict, outliers: dict | None,
                          folder: str, fit_fraction: float, seed: int, retention: float, out=print,
                          outlier_rows=None) -> PaintingDetector:
    """The not-a-painting head and threshold, with its held-out figures in `info` (see the module's docstring).
    outliers: features of the other artists' fit part; outlier_rows: those paintings, to photograph."""
    files = not_painting_files(folder)
    fit_files, held_files = split_classes(files, fit_fraction, seed)
    if not fit_files or not held_files:
        raise OpenSetError(f"--not-paintings {folder}: {len({c for _, c in files})} classes cannot be split into a "
                           "part to fit and a part to report on; give more classes or another --fit-fraction.")
    fit_pictures = list(open_pictures(predictor, [p for p, _ in fit_files]))  # decoded once, used three ways
    inputs = INPUTS if val["texture"].shape[1] else ("features",)  # a model without texture layers: features alone

    def read(found) -> np.ndarray:  # what the head reads, from split outputs (a dict) or Predictor.piece_outputs
        found = found if isinstance(found, dict) else found._asdict()
        return head_inputs(found["features"], found["texture"], inputs).numpy()

    # negatives as the Predictor meets them: each picture whole, what the locator finds in it, other shots of it
    negatives = np.concatenate([read(predictor.piece_outputs(fit_pictures, whole=True)),
                                read(predictor.piece_outputs(fit_pictures)),
                                read(predictor.piece_outputs(reframed_pictures(fit_pictures, seed), whole=True))])
    photos = [x for _, x, _ in photo_inputs(predictor, prepared.splits["train"], PHOTOS_FIT // 2, seed, inputs)]
    other_photos = [] if outlier_rows is None else \
        [x for _, x, _ in photo_inputs(predictor, outlier_rows, OTHER_PHOTOS_FIT, seed, inputs)]
    positives = np.concatenate([read(train), *photos, *other_photos] + ([read(outliers)] if outliers else []))
    detector = PaintingDetector(0.0, fit_head(positives, negatives, seed), inputs=inputs)
    score = lambda x: detector.score_inputs(x).numpy()  # noqa: E731
    val_scores = score(read(val))
    detector.threshold = painting_threshold(val_scores, retention)

    held = predictor.piece_outputs(open_pictures(predictor, [p for p, _ in held_files]))
    held = rejected_share(score(read(held)), held.owner, detector.threshold)
    photo_rejected = {style: rejected_share(score(x), owner, detector.threshold)
                      for style, x, owner in photo_inputs(predictor, prepared.splits["validation"],
                                                          PHOTOS_REPORT, seed + 1, inputs)}
    scans = float((val_scores < detector.threshold).mean())
    detector.info = {
        "score": "logistic head on standardised " + " and ".join(
            {"features": "pooled features", "texture": "texture statistics"}[i] for i in inputs) + " (P(painting))",
        "retention": retention, "not_paintings_dir": str(folder), "fit_fraction": fit_fraction, "seed": seed,
        "fit_classes": sorted({c for _, c in fit_files}), "report_classes": sorted({c for _, c in held_files}),
        "fitted_on": {"paintings": {"training scans": len(train["features"]),
                                    "simulated photos of training paintings": int(sum(len(f) for f in photos)),
                                    "other artists (fit part)": 0 if outliers is None else len(outliers["features"]),
                                    "simulated photos of other artists (fit part)":
                                        int(sum(len(f) for f in other_photos))},
                      "not_paintings": {"pictures": len(fit_files),
                                        "pieces (whole + located + reframed)": len(negatives)}},
        "held_out": {"not_paintings_rejected": held, "not_paintings_pictures": len(held_files),
                     "validation_scans_rejected": scans, "validation_scans": len(val_scores),
                     "validation_photos_rejected": photo_rejected, "validation_photos_per_style": PHOTOS_REPORT},
    }
    out(f"Not a painting: head fitted on {len(positives)} paintings (scans, simulated photos, other artists) vs "
        f"{len(negatives)} pieces and other shots of {len(fit_files)} non-painting photos; threshold {detector.threshold:.4f} "
        f"(P(painting)) lets {retention:.0%} of validation scans pass.")
    out(f"  held-out classes: {held:.1%} of {len(held_files)} non-painting photos answered 'doesn't look like a "
        f"painting'; validation scans {scans:.1%}; simulated photos of validation paintings "
        + ", ".join(f"{style} {v:.1%}" for style, v in photo_rejected.items()))
    return detector


def fit_painting_only(folder: Path, not_paintings: str, data: str | None = None, fit_fraction: float = 0.5,
                      seed: int = 0, retention: float = SCAN_RETENTION, batch_size: int = 64, num_workers: int = 0,
                      cache_dir: str | None = None, accelerator: Accelerator | None = None, out=print,
                      unknown: str | None = None) -> dict:
    """`--only-painting`: fit the not-a-painting decision alone, keeping the checkpoint's calibration and
    unknown-artist decision as they are (the head reads features, which they do not change). With `unknown`,
    the other artists the unknown-artist decision was fitted on (config tim.unknown.fit_artists; else the seeded
    half) are paintings too, as scans and as simulated photos."""
    accelerator = accelerator or Accelerator()
    validate_checkpoint(folder, replacing=("tim.painting",))
    model, config = load_checkpoint(folder)
    predictor = raw_predictor(model, config, accelerator.device)
    data_cfg = data_config_for(config, {k: v for k, v in (("source", data), ("cache_dir", cache_dir)) if v})
    prepared = prepare_data(data_cfg)
    check_artists(predictor.labels, prepared.artists, data_cfg.source)
    check_split(config, prepared)
    not_painting_files(not_paintings)
    outliers = outlier_rows = None
    if unknown:
        images, artists = load_other_artists(unknown, config, predictor.labels, cache_dir)
        fit_artists = (config["tim"].get("unknown") or {}).get("fit_artists") or split_artists(artists, 0.5, seed)[0]
        outlier_rows = select_artists(images, artists, fit_artists)
        outliers = outputs(predictor, outlier_rows, accelerator, batch_size, num_workers, "Other artists (fit part)")
    train_rows = prepared.splits["train"]
    picks = np.sort(np.random.default_rng(seed).choice(len(train_rows), min(ONLY_PAINTING_TRAIN, len(train_rows)),
                                                       replace=False))
    val = outputs(predictor, prepared.splits["validation"], accelerator, batch_size, num_workers, "Validation")
    train = outputs(predictor, train_rows.select(picks), accelerator, batch_size, num_workers, "Train (part)")
    painting = fit_painting_decision(predictor, prepared, train, val, outliers, not_paintings, fit_fraction, seed,
                                     retention, out, outlier_rows)
    if accelerator.is_main_process:
        write_into_checkpoint(folder, painting=painting)
    accelerator.wait_for_everyone()
    out(f"Wrote tim.painting to {folder / CONFIG_NAME} and {PAINTING_NAME} (calibration and unknown-artist kept)")
    return {"painting": painting.to_config()}


def calibrate_checkpoint(folder: str | Path, data: str | None = None, unknown: str | None = None,
                         retention: float = 0.95, fit_fraction: float = 0.5, seed: int = 0,
                         batch_size: int = 64, num_workers: int = 0, cache_dir: str | None = None,
                         score: str = "auto", accelerator: Accelerator | None = None,
                         out=print, not_paintings: str | None = None, not_paintings_fit_fraction: float = 0.5,
                         painting_retention: float = SCAN_RETENTION) -> dict:
    """Fit calibration, the unknown-artist decision and (with `not_paintings`) the not-a-painting decision;
    write them into `folder`; return the new tim blocks."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: not a checkpoint folder; `tim calibrate` writes into a local checkpoint "
                              "(download a Hub model with `hf download` first).")
    if score != "auto" and score not in SCORES:
        raise OpenSetError(f"--score {score!r}: choose auto or one of {', '.join(SCORES)}")
    if score in NEEDS_OUTLIERS and not unknown:
        raise OpenSetError(f"--score {score} needs paintings of other artists: pass --unknown DIR")
    accelerator = accelerator or Accelerator()
    # checked by tim.validate first, all but the two blocks this command rewrites (so it repairs broken ones)
    validate_checkpoint(folder, replacing=("tim.calibration", "tim.unknown") + (("tim.painting",) if not_paintings else ()))
    model, config = load_checkpoint(folder)
    predictor = raw_predictor(model, config, accelerator.device)
    overrides = {k: v for k, v in (("source", data), ("cache_dir", cache_dir)) if v is not None}
    data_cfg = data_config_for(config, overrides)
    prepared = prepare_data(data_cfg)
    check_artists(predictor.labels, prepared.artists, data_cfg.source)
    check_split(config, prepared)
    if len(prepared.splits["validation"]) == 0:
        raise EvaluationError(f"the validation split of {data_cfg.source} is empty; calibration is fitted on it.")
    if unknown:  # read and checked before any model time is spent
        images, artists = load_other_artists(unknown, config, predictor.labels, cache_dir)
    if not_paintings:
        not_painting_files(not_paintings)

    val = outputs(predictor, prepared.splits["validation"], accelerator, batch_size, num_workers, "Validation")
    calibration, cal_table = fit_best(val["logits"], val["labels"])
    plain = torch.as_tensor(val["logits"]).softmax(-1).numpy()
    probs = calibrated_probabilities(torch.as_tensor(val["logits"]), calibration).numpy()
    calibration.fitted_on = {"split": "validation", "images": len(val["labels"]),
                             "ece_before": ece(plain, val["labels"]), "ece_after": ece(probs, val["labels"]),
                             "selected_by": "lowest 5-fold cross-validated ECE on validation"}
    out(f"Calibration on {len(val['labels'])} validation images (ECE: 15 equal-width bins):")
    out(f"  {'method':20} {'cv ECE':>7} {'NLL':>7}")
    for row in cal_table:
        out(f"  {row['method']:20} {row['cv_ece']:7.4f} {row['nll']:7.4f}")
    out(f"  kept: {calibration.method} (ECE on validation {calibration.fitted_on['ece_before']:.4f} -> "
        f"{calibration.fitted_on['ece_after']:.4f}, top-1 answers unchanged)")

    val["probs"] = probs
    val["correct"] = probs.argmax(1) == val["labels"]
    train = outliers = outlier_rows = None
    unknown_info: dict = {"retention": retention}
    if unknown:
        fit_artists, report_artists = split_artists(artists, fit_fraction, seed)
        unknown_info.update(unknown_dir=str(unknown), fit_fraction=fit_fraction, seed=seed,
                            fit_artists=fit_artists, report_artists=report_artists)
        if fit_artists:
            outlier_rows = select_artists(images, artists, fit_artists)
            outliers = outputs(predictor, outlier_rows, accelerator, batch_size, num_workers,
                               "Other artists (fit part)")
            outliers["probs"] = calibrated_probabilities(torch.as_tensor(outliers["logits"]), calibration).numpy()
            train = outputs(predictor, prepared.splits["train"], accelerator, batch_size, num_workers, "Train")
            out(f"Other artists: {len(artists)} in {unknown}; {len(fit_artists)} for fitting "
                f"({len(outliers['labels'])} paintings), {len(report_artists)} held out for `tim evaluate --unknown`.")
    chosen, table = choose_unknown_score(val, train, outliers, retention, seed=seed)
    seen = bool(table) and trained_with_outliers(folder, config)
    if seen:  # heads fitted on the fit part would be chosen on paintings the network was trained on: keep to the
        # scores that fit nothing there (the network's own answer), best AUROC among them
        chosen = max((r for r in table if r["score"] in UNFITTED), key=lambda r: r["auroc"])["score"]
    if score != "auto":
        chosen = score
    if table:
        out(f"Unknown-artist scores on validation ({len(val['labels'])} known) vs the fit part of the other artists "
            f"({len(outliers['labels'])} paintings, outlier-exposure heads cross-fitted by artist), "
            f"threshold at {retention:.0%} of validation kept:")
        out(f"  {'score':34} {'AUROC':>6} {'rejected':>9} {'kept':>6} {'open-set acc':>12}")
        for row in table:
            out(f"  {row['score']:34} {row['auroc']:6.3f} {row['unknown_rejected']:9.1%} {row['known_kept']:6.1%} "
                f"{row['open_set_accuracy']:12.3f}")
        if seen:
            out("  the network was trained with outlier exposure on this fit part (tim.outliers), so the figures above "
                "flatter scores fitted on it; kept the best of the scores that read the network's own answer: "
                f"{chosen}")
    elif score == "auto":
        out("No --unknown DIR: the unknown-artist score is 1 - calibrated top probability (with paintings of other "
            "artists Tim would compare feature-space scores and outlier exposure and keep the best).")

    if (chosen not in UNFITTED or not_paintings) and train is None:
        train = outputs(predictor, prepared.splits["train"], accelerator, batch_size, num_workers, "Train")
    stats = {} if chosen in UNFITTED else fit_statistics(chosen, train["features"], train["labels"],
                                                         None if outliers is None else outliers["features"], seed)
    detector = UnknownDetector(chosen, 0.0, stats)
    known_scores = detector.score(torch.as_tensor(val["logits"]), torch.as_tensor(val["features"]),
                                  torch.as_tensor(probs)).numpy()
    detector.threshold = threshold_for(known_scores, retention)
    kept = float((known_scores <= detector.threshold).mean())
    unknown_info.update(validation_images=len(val["labels"]), validation_kept=kept,
                        candidates=table, selected_by="--score" if score != "auto" else (
                            "trained with outlier exposure on the fit part: the best AUROC among the scores that "
                            "fit nothing on it (" + ", ".join(UNFITTED) + ")" if seen else
                            "best AUROC on validation" if table else "no other artists given"))
    detector.info = unknown_info
    out(f"  kept: {chosen}, threshold {detector.threshold:.4f} (keeps {kept:.1%} of validation paintings as known)")

    painting = None
    if not_paintings:
        painting = fit_painting_decision(predictor, prepared, train, val, outliers, not_paintings,
                                         not_paintings_fit_fraction, seed, painting_retention, out, outlier_rows)

    if accelerator.is_main_process:
        write_into_checkpoint(folder, calibration, detector, painting)
    accelerator.wait_for_everyone()
    out(f"Wrote tim.calibration, tim.unknown{', tim.painting' if painting else ''} to {folder / CONFIG_NAME}"
        + (f" and {UNKNOWN_NAME}" if detector.tensors else "") + (f", {PAINTING_NAME}" if painting else ""))
    return {"calibration": calibration.to_dict(), "unknown": detector.to_config(),
            **({"painting": painting.to_config()} if painting else {})}


def write_into_checkpoint(folder: Path, calibration: Calibration | None = None,
                          detector: UnknownDetector | None = None, painting: PaintingDetector | None = None) -> None:
    """A copy of `folder` with the new config blocks and statistics, renamed into place (never half-written).

    A block not given is kept as the checkpoint has it (a not-a-painting decision reads the model's
    features, which calibration does not change; --only-painting leaves calibration and unknown-artist)."""
    folder = Path(folder)
    tmp = folder.with_name(f".{folder.name}.calibrate-tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(folder, tmp)
    config = read_config(tmp)
    if calibration is not None:
        config["tim"]["calibration"] = calibration.to_dict()
    if detector is not None:
        (tmp / UNKNOWN_NAME).unlink(missing_ok=True)
        config["tim"]["unknown"] = detector.save(tmp)
    if painting is not None:
        config["tim"]["painting"] = painting.save(tmp)
    (tmp / CONFIG_NAME).write_text(json.dumps(hub_layout(config), indent=2, ensure_ascii=False) + "\n")
    replace_folder(tmp, folder)


def add_cli(sub) -> None:
    p = sub.add_parser("calibrate", help="fit calibrated confidence and the unknown-artist decision into a checkpoint",
                       description=__doc__.split("\n\n")[0] + " Fits on the checkpoint's validation split and writes "
                       "config.json tim.calibration / tim.unknown (+ unknown.safetensors) into the checkpoint folder.",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("checkpoint", help="local checkpoint folder (written into)")
    p.add_argument("--data", help="where the training paintings are on this machine (default: the recorded source); "
                                  "the split is rebuilt from the checkpoint's recipe and refused if it differs")
    p.add_argument("--unknown", metavar="DIR", help="paintings of OTHER artists, one folder per artist: split by "
                                                    "artist into a fit part and a held-out report part")
    p.add_argument("--retention", type=float, default=0.95,
                   help="share of known-artist validation paintings the threshold keeps as known")
    p.add_argument("--unknown-fit-fraction", type=float, default=0.5,
                   help="share of the --unknown artists used for fitting (the rest is held out for tim evaluate)")
    p.add_argument("--score", default="auto", choices=("auto",) + SCORES,
                   help="unknown-artist score; auto = best AUROC among the measured candidates")
    p.add_argument("--not-paintings", metavar="DIR",
                   help="photos that are NOT paintings (animals, objects, people, documents): fit 'this doesn't "
                        "look like a painting'; split by class (file name up to its first '_', or subfolder) "
                        "into a fit part and a held-out part reported on")
    p.add_argument("--not-paintings-fit-fraction", type=float, default=0.5,
                   help="share of the --not-paintings classes used for fitting")
    p.add_argument("--only-painting", action="store_true",
                   help="with --not-paintings: fit only the not-a-painting decision, keep the checkpoint's "
                        "calibration and unknown-artist decision as they are (with --unknown, the other artists "
                        "that decision was fitted on count as paintings too)")
    p.add_argument("--painting-retention", type=float, default=SCAN_RETENTION,
                   help="share of validation scans the not-a-painting threshold lets pass as paintings")
    p.add_argument("--seed", type=int, default=0, help="seed of the artist split and the heads")
    p.add_argument("--batch-size", type=int, default=64, help="images per forward pass")
    p.add_argument("--num-workers", type=int, default=0, help="DataLoader workers")
    p.add_argument("--cache-dir", help="prepared-image cache (default ~/.cache/tim/prepared)")
    p.set_defaults(func=run_cli)


def run_cli(args: argparse.Namespace) -> int:
    try:
        if args.only_painting:
            if not args.not_paintings:
                raise OpenSetError("--only-painting fits the not-a-painting decision: pass --not-paintings DIR")
            if not Path(args.checkpoint).is_dir():
                raise CheckpointError(f"{args.checkpoint}: not a checkpoint folder.")
            fit_painting_only(Path(args.checkpoint), args.not_paintings, args.data, args.not_paintings_fit_fraction,
                              args.seed, args.painting_retention, args.batch_size, args.num_workers, args.cache_dir,
                              unknown=args.unknown)
            return 0
        calibrate_checkpoint(args.checkpoint, args.data, args.unknown, args.retention, args.unknown_fit_fraction,
                             args.seed, args.batch_size, args.num_workers, args.cache_dir, args.score,
                             not_paintings=args.not_paintings,
                             not_paintings_fit_fraction=args.not_paintings_fit_fraction,
                             painting_retention=args.painting_retention)
    except (EvaluationError, RecipeError, CheckpointError, DataError, OpenSetError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0
