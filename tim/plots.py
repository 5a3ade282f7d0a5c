"""The figures of `tim evaluate` and `tim compare`, and reading a run's log.csv.

Figures are drawn on `matplotlib.figure.Figure` objects and saved through the
Agg canvas, never through pyplot: no GUI backend is needed, and nothing global
changes for a program (the app) that imports Tim.
"""
from __future__ import annotations

import csv
import math
import os
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def display_name(artist: str) -> str:
    """'Vincent_van_Gogh' -> 'Vincent van Gogh': folder names made readable for axis labels."""
    return artist.replace("_", " ")


def _save(fig: Figure, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    return path


def plot_confusion_matrix(cm: np.ndarray, artists: list[str], path: str | os.PathLike, title: str = "") -> Path:
    """Row-normalised confusion matrix (each row: where one artist's paintings went), values in the cells.

    Rows with no images stay empty; cells that are exactly 0 are left blank so
    the mistakes stand out in a 31-artist matrix.
    """
    cm = np.asarray(cm, dtype=np.float64)
    rows = cm.sum(axis=1, keepdims=True)
    normalised = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    k = len(artists)
    side = max(5.0, 0.42 * k + 2.5)
    fig = Figure(figsize=(side + 1.5, side))
    ax = fig.subplots()
    image = ax.imshow(normalised, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the artist's test paintings")
    names = [display_name(a) for a in artists]
    ax.set_xticks(range(k), names, rotation=45, ha="right", rotation_mode="anchor", fontsize=8)
    ax.set_yticks(range(k), names, fontsize=8)
    ax.set_xlabel("predicted artist")
    ax.set_ylabel("true artist")
    fontsize = 8 if k <= 15 else 6
    for i in range(k):
        for j in range(k):
            if cm[i, j] > 0:
                colour = "white" if normalised[i, j] > 0.5 else "black"
                ax.text(j, i, f"{normalised[i, j]:.2f}", ha="center", va="center", color=colour, fontsize=fontsize)
    ax.set_title(title or "Confusion matrix (rows normalised)")
    return _save(fig, path)


def read_log(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """A run's log.csv as column -> float array (empty cells become NaN)."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"{path}: the training log has no epochs yet")

    def number(text):
        try:
            return float(text)
        except (TypeError, ValueError):
            return math.nan

    return {column: np.array([number(row[column]) for row in rows]) for column in rows[0]}


def plot_training_curves(log: dict[str, np.ndarray], path: str | os.PathLike, title: str = "") -> Path:
    """Accuracy and loss per epoch, train against validation, side by side."""
    fig = Figure(figsize=(11, 4))
    acc_ax, loss_ax = fig.subplots(1, 2)
    epochs = log["epoch"]
    for ax, metric in ((acc_ax, "accuracy"), (loss_ax, "loss")):
        for split, style in (("train", "-o"), ("val", "-s")):
            column = f"{split}_{metric}"
            if column in log:
                ax.plot(epochs, log[column], style, markersize=3, label="train" if split == "train" else "validation")
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    acc_ax.set_title("Accuracy")
    loss_ax.set_title("Loss")
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def plot_run_comparison(logs: dict[str, dict[str, np.ndarray]], path: str | os.PathLike) -> Path:
    """Validation accuracy and validation loss of several runs, overlaid (one colour per run)."""
    fig = Figure(figsize=(11, 4))
    acc_ax, loss_ax = fig.subplots(1, 2)
    for name, log in logs.items():
        acc_ax.plot(log["epoch"], log["val_accuracy"], "-o", markersize=3, label=name)
        loss_ax.plot(log["epoch"], log["val_loss"], "-o", markersize=3, label=name)
    for ax, label in ((acc_ax, "validation accuracy"), (loss_ax, "validation loss")):
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    acc_ax.set_title("Validation accuracy")
    loss_ax.set_title("Validation loss")
    return _save(fig, path)


def plot_reliability(before: dict, after: dict, path: str | os.PathLike, title: str = "") -> Path:
    """Reliability diagram: accuracy against confidence per bin, before and after calibration (tim.calibration)."""
    fig = Figure(figsize=(5.5, 5))
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="perfect calibration")
    for table, name, marker in ((before, "before", "o"), (after, "after", "s")):
        counts = np.asarray(table["count"])
        used = counts > 0
        ax.plot(np.asarray(table["confidence"])[used], np.asarray(table["accuracy"])[used], marker=marker,
                label=f"{name}: ECE {table['ece']:.3f}")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence (top probability), per bin")
    ax.set_ylabel("accuracy in the bin")
    ax.legend(loc="upper left")
    ax.set_title(title or "Reliability diagram")
    return _save(fig, path)


def plot_score_histogram(known: np.ndarray, unknown: np.ndarray, threshold: float | None,
                         path: str | os.PathLike, title: str = "") -> Path:
    """Histograms of the unknown-artist score for paintings of known and of unknown artists, with the threshold."""
    fig = Figure(figsize=(6.5, 4))
    ax = fig.subplots()
    both = np.r_[known, unknown]
    bins = np.linspace(float(both.min()), float(both.max()) + 1e-9, 31)
    ax.hist(known, bins=bins, alpha=0.6, density=True, label=f"known artists ({len(known)})")
    ax.hist(unknown, bins=bins, alpha=0.6, density=True, label=f"other artists ({len(unknown)})")
    if threshold is not None and math.isfinite(threshold):
        ax.axvline(threshold, color="black", linestyle="--", label=f"threshold {threshold:.3f}")
    ax.set_xlabel("unknown-artist score (higher = less like a known artist)")
    ax.set_ylabel("density")
    ax.legend()
    ax.set_title(title or "Unknown-artist score")
    return _save(fig, path)
