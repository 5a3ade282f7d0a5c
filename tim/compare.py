"""`tim compare RUN_OR_CHECKPOINT...`: several evaluated models side by side, on the same images.

A comparison is only fair on the same test paintings, so models evaluated on
different images are refused (images are matched by their path inside the data
source, so a copy of the paintings in another folder still counts as the same).
For each model after the first, a paired test against the first says whether
the accuracy difference is more than the luck of which paintings ended up in
the test split (tim.metrics.paired_test).

Writes OUT/comparison.csv (every metric with its interval), OUT/comparison.md
(the printed table) and OUT/curves.png (validation accuracy and loss of the
runs whose log.csv is found).
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from tim.checkpoint import EVAL_RESULTS_NAME, PREDICTIONS_NAME
from tim.errors import UserError
from tim.evaluation import LOG_NAME
from tim.metrics import METRIC_NAMES, PairedTest, bootstrap_intervals, paired_test
from tim.plots import plot_run_comparison, read_log


class CompareError(UserError):
    """These models cannot be compared; the message says why and what to do."""


@dataclass
class EvaluatedModel:
    name: str
    folder: Path  # the checkpoint folder holding eval_results.json
    results: dict  # eval_results.json
    predictions: dict[str, tuple[str, str]]  # image (path inside the data source) -> (true, predicted artist)
    log: Path | None  # the run's log.csv, when there is one


def image_key(path: str, source: str) -> str:
    """An image's path inside its data source: the same paintings evaluated from another folder still match."""
    try:
        return Path(path).relative_to(source).as_posix()
    except ValueError:
        return path


def find_evaluated(ref: str | os.PathLike) -> EvaluatedModel:
    """An evaluated checkpoint folder, or a run folder (its best/, else last/ checkpoint)."""
    ref = Path(ref)
    candidates = [ref, ref / "best", ref / "last"]
    folder = next((c for c in candidates if (c / EVAL_RESULTS_NAME).is_file()), None)
    if folder is None:
        checkpoint = ref / "best" if (ref / "best").is_dir() else ref
        raise CompareError(
            f"{ref}: no {EVAL_RESULTS_NAME} here or in best/ or last/; run `tim evaluate {checkpoint}` first."
        )
    if not (folder / PREDICTIONS_NAME).is_file():
        raise CompareError(f"{folder}: {PREDICTIONS_NAME} is missing; evaluate it again: `tim evaluate {folder}`.")
    results = json.loads((folder / EVAL_RESULTS_NAME).read_text())
    with open(folder / PREDICTIONS_NAME, newline="") as f:
        source = results["data"]["source"]
        predictions = {image_key(row["path"], source): (row["true"], row["predicted"]) for row in csv.DictReader(f)}
    log = folder.resolve().parent / LOG_NAME
    if folder != ref:  # a run folder: named after the run
        name = ref.resolve().name
    elif log.is_file():  # a checkpoint inside a run: run/best
        name = f"{folder.resolve().parent.name}/{folder.resolve().name}"
    else:
        name = folder.resolve().name
    return EvaluatedModel(name, folder, results, predictions, log if log.is_file() else None)


def check_same_images(models: list[EvaluatedModel]) -> None:
    """Refuse models evaluated on different images (or with different true artists for an image)."""
    first = models[0]
    for other in models[1:]:
        only_first = first.predictions.keys() - other.predictions.keys()
        only_other = other.predictions.keys() - first.predictions.keys()
        if only_first or only_other:
            example = sorted(only_first or only_other)[0]
            raise CompareError(
                f"{first.name} and {other.name} were evaluated on different images: {len(only_first)} only in "
                f"{first.name}'s predictions, {len(only_other)} only in {other.name}'s (e.g. {example}). "
                "Evaluate them on the same test split: the same data recipe and the same --data."
            )
        relabelled = [p for p, (true, _) in first.predictions.items() if other.predictions[p][0] != true]
        if relabelled:
            raise CompareError(
                f"{first.name} and {other.name} disagree on the true artist of {len(relabelled)} images "
                f"(e.g. {relabelled[0]}); they were not evaluated on the same labelled data."
            )


def keep_common_images(models: list[EvaluatedModel]) -> int:
    """Restrict every model to the images all of them were evaluated on; return how many remain.

    For models trained on different data (15 artists and 50, say): the images in every test split were
    seen in training by none of them, so they compare the models fairly on what they share.
    """
    common = set.intersection(*(set(m.predictions) for m in models))
    if not common:
        raise CompareError(f"{', '.join(m.name for m in models)} share no evaluated image; nothing to compare on.")
    for m in models:
        m.predictions = {p: m.predictions[p] for p in common}
    return len(common)


def paired_against_first(models: list[EvaluatedModel], resamples: int = 1000, seed: int = 0) -> list[PairedTest | None]:
    """For each model, the paired test of it (B) against the first model (A); None for the first."""
    paths = sorted(models[0].predictions)
    truth = [models[0].predictions[p][0] for p in paths]
    first = [models[0].predictions[p][1] for p in paths]
    tests: list[PairedTest | None] = [None]
    for other in models[1:]:
        tests.append(paired_test(truth, first, [other.predictions[p][1] for p in paths], resamples, seed))
    return tests


def comparison_rows(models: list[EvaluatedModel], tests: list[PairedTest | None], resamples: int = 1000,
                    seed: int = 0, recompute: bool = False) -> list[dict]:
    """One flat row per model: every metric with low/high, and the paired test against the first.

    The metrics are those of `tim evaluate`, or with `recompute` (a subset of the images) recomputed from the
    predictions kept, so they describe exactly the images compared.
    """
    rows = []
    for model, test in zip(models, tests):
        row = {"model": model.name, "checkpoint": str(model.folder), "num_images": len(model.predictions)}
        if recompute:
            metrics = {name: m.as_dict() for name, m in image_metrics(model, resamples, seed).items()}
        else:
            metrics = model.results["metrics"]
        for name in METRIC_NAMES:
            m = metrics[name]
            row.update({name: m["value"], f"{name}_low": m["low"], f"{name}_high": m["high"]})
        if test is not None:
            row.update(
                accuracy_difference=test.difference.value, accuracy_difference_low=test.difference.low,
                accuracy_difference_high=test.difference.high, mcnemar_p=test.mcnemar_p,
                only_first_correct=test.only_a_correct, only_this_correct=test.only_b_correct,
            )
        rows.append(row)
    return rows


def image_metrics(model: EvaluatedModel, resamples: int, seed: int) -> dict:
    """METRIC_NAMES -> Interval over the model's (true, predicted) pairs; artists indexed by name."""
    pairs = sorted(model.predictions.values())
    names = {a: i for i, a in enumerate(sorted({a for pair in pairs for a in pair}))}
    true = [names[t] for t, _ in pairs]
    predicted = [names[p] for _, p in pairs]
    return bootstrap_intervals(true, predicted, len(names), resamples, seed)


def markdown_table(rows: list[dict]) -> str:
    def interval(row, name):
        return f"{row[name]:.3f} [{row[f'{name}_low']:.3f}, {row[f'{name}_high']:.3f}]"

    first = rows[0]["model"]
    header = ["model", "images", "accuracy [95% CI]", "macro F1 [95% CI]", "weighted F1 [95% CI]",
              f"Δ accuracy vs {first} [95% CI]", "McNemar p"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    for row in rows:
        paired = ["—", "—"]
        if "mcnemar_p" in row:
            paired = [f"{row['accuracy_difference']:+.3f} [{row['accuracy_difference_low']:+.3f}, "
                      f"{row['accuracy_difference_high']:+.3f}]", f"{row['mcnemar_p']:.3g}"]
        cells = [row["model"], str(row["num_images"]), interval(row, "accuracy"), interval(row, "f1_macro"),
                 interval(row, "f1_weighted"), *paired]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def compare(refs: list[str | os.PathLike], out_dir: str | os.PathLike = "comparison",
            resamples: int = 1000, seed: int = 0, common_images: bool = False) -> list[dict]:
    """Compare evaluated runs or checkpoints; write comparison.csv, comparison.md and curves.png; return the rows.

    common_images: compare on the images every model was evaluated on instead of refusing different test splits.
    """
    if len(refs) < 2:
        raise CompareError("give two or more runs or checkpoints to compare")
    models = [find_evaluated(r) for r in refs]
    seen: dict[str, int] = {}
    for m in models:  # two runs called "best" must stay distinguishable in the table
        seen[m.name] = seen.get(m.name, 0) + 1
        if seen[m.name] > 1:
            m.name = f"{m.name} ({seen[m.name]})"
    if common_images:
        keep_common_images(models)
    check_same_images(models)
    rows = comparison_rows(models, paired_against_first(models, resamples, seed), resamples, seed, common_images)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    columns = list(dict.fromkeys(k for row in rows for k in row))
    with open(out / "comparison.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    (out / "comparison.md").write_text(markdown_table(rows) + "\n")
    logs = {m.name: read_log(m.log) for m in models if m.log is not None}
    if logs:
        plot_run_comparison(logs, out / "curves.png")
    return rows


def add_cli(sub) -> None:
    p = sub.add_parser("compare", help="table of several evaluated runs on the same test split, with paired tests")
    p.add_argument("runs", nargs="+", metavar="RUN_OR_CHECKPOINT",
                   help="run folders (their best/ checkpoint) or checkpoint folders, evaluated with `tim evaluate`")
    p.add_argument("--out", default="comparison", help="folder for comparison.csv, comparison.md and curves.png")
    p.add_argument("--resamples", type=int, default=1000, help="paired-bootstrap resamples")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    p.add_argument("--common-images", action="store_true",
                   help="compare on the images every model was evaluated on (models trained on different data)")
    p.set_defaults(func=run_cli)


def run_cli(args: argparse.Namespace) -> int:
    try:
        rows = compare(args.runs, args.out, args.resamples, args.seed, args.common_images)
    except CompareError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(markdown_table(rows))
    print(f"\nΔ accuracy: each model minus {rows[0]['model']}, paired bootstrap over the same images; "
          "McNemar p: exact test on the images where exactly one of the two is right.")
    print(f"Wrote comparison.csv, comparison.md{', curves.png' if (Path(args.out) / 'curves.png').exists() else ''} "
          f"to {args.out}")
    return 0
