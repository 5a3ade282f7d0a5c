"""Classification metrics with honest uncertainty, and a paired test of two models.

- `ArtistMetrics` is an `evaluate.Metric`: accuracy and precision / recall / F1,
  macro and weighted, computed by scikit-learn with zero_division=0. It is
  instantiated directly rather than through `evaluate.load("accuracy")`, which
  downloads the metric script from the Hub and so fails on an offline machine.
- `bootstrap_intervals` gives a seeded 95% percentile interval for every metric:
  a test split of a few hundred paintings gives an accuracy that can move by
  several points with another draw of paintings, and a table without intervals
  hides that.
- `paired_test` says whether two models evaluated on the same images really
  differ: the exact McNemar test on the images where exactly one is right, and a
  paired bootstrap interval of the accuracy difference.

The bootstrap is vectorised through one fact: the confusion matrix of a
bootstrap resample (n images drawn with replacement) is a multinomial draw of n
over the cells of the observed confusion matrix, with probabilities cell
count / n. So 1000 resamples are one `rng.multinomial` call, whatever n is, and
`metrics_from_confusion` turns a stack of confusion matrices into metrics with
scikit-learn's definitions.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import datasets
import evaluate
import numpy as np
from scipy.stats import binomtest
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

METRIC_NAMES = (
    "accuracy",
    "precision_macro",
    "recall_macro",
    "f1_macro",
    "precision_weighted",
    "recall_weighted",
    "f1_weighted",
)


class ArtistMetrics(evaluate.Metric):
    """Tim's classification metrics through the `evaluate` API, with no network.

    Use it like any evaluate metric (`add_batch(...)` then `compute()`, or
    `compute(predictions=..., references=...)`); integer artist indices in,
    a dict of METRIC_NAMES out. Macro averages run over the artists present in
    the references or the predictions, as scikit-learn's defaults do.
    """

    def _info(self):
        return evaluate.MetricInfo(
            description="Accuracy and macro / weighted precision, recall and F1 (scikit-learn, zero_division=0).",
            citation="",
            features=datasets.Features(
                {"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}
            ),
        )

    def _compute(self, predictions, references):
        out = {"accuracy": float(accuracy_score(references, predictions))}
        for average in ("macro", "weighted"):
            p, r, f, _ = precision_recall_fscore_support(
                references, predictions, average=average, zero_division=0
            )
            out[f"precision_{average}"] = float(p)
            out[f"recall_{average}"] = float(r)
            out[f"f1_{average}"] = float(f)
        return out


def compute_metrics(references, predictions) -> dict[str, float]:
    """METRIC_NAMES -> value for integer labels (kept in memory: no cache files are written)."""
    return ArtistMetrics(keep_in_memory=True).compute(
        predictions=np.asarray(predictions).tolist(), references=np.asarray(references).tolist()
    )


def metrics_from_confusion(cm: np.ndarray) -> dict[str, np.ndarray]:
    """METRIC_NAMES -> values for a confusion matrix (rows true, columns predicted) or a stack of them.

    Same definitions as `ArtistMetrics`: a ratio with a zero denominator is 0,
    and macro averages skip artists absent from both references and predictions.
    """
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diagonal(cm, axis1=-2, axis2=-1)
    true_count = cm.sum(axis=-1)
    pred_count = cm.sum(axis=-2)

    def ratio(num, den):
        return np.divide(num, den, out=np.zeros_like(num), where=den > 0)

    per_class = {
        "precision": ratio(tp, pred_count),
        "recall": ratio(tp, true_count),
        "f1": ratio(2 * tp, true_count + pred_count),
    }
    present = (true_count + pred_count) > 0
    total = true_count.sum(axis=-1)
    out = {"accuracy": tp.sum(axis=-1) / total}
    for name, values in per_class.items():
        out[f"{name}_macro"] = (values * present).sum(axis=-1) / present.sum(axis=-1)
        out[f"{name}_weighted"] = (values * true_count).sum(axis=-1) / total
    return {name: out[name] for name in METRIC_NAMES}


@dataclass(frozen=True)
class Interval:
    value: float
    low: float
    high: float

    def as_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        return f"{self.value:.3f} [{self.low:.3f}, {self.high:.3f}]"


def _percentiles(samples: np.ndarray, confidence: float) -> tuple[float, float]:
    tail = (1 - confidence) / 2
    low, high = np.quantile(samples, [tail, 1 - tail])
    return float(low), float(high)


def resample_cells(counts: np.ndarray, resamples: int, seed: int) -> np.ndarray:
    """`resamples` bootstrap draws of the cell counts `counts` (any shape): shape (resamples, *counts.shape).

    Drawing n items with replacement and counting them per cell is a
    multinomial draw of n with probabilities counts / n.
    """
    counts = np.asarray(counts, dtype=np.int64)
    n = int(counts.sum())
    if n == 0:
        raise ValueError("cannot bootstrap an empty set of predictions")
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(n, counts.ravel() / n, size=resamples)
    return draws.reshape(resamples, *counts.shape)


def bootstrap_intervals(
    references,
    predictions,
    num_classes: int,
    resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict[str, Interval]:
    """METRIC_NAMES -> Interval: the point estimate and a seeded bootstrap percentile interval.

    Each resample draws len(references) images of the split with replacement;
    the same seed gives the same intervals.
    """
    references, predictions = np.asarray(references), np.asarray(predictions)
    point = compute_metrics(references, predictions)
    cm = confusion_matrix(references, predictions, labels=np.arange(num_classes))
    samples = metrics_from_confusion(resample_cells(cm, resamples, seed))
    return {name: Interval(point[name], *_percentiles(samples[name], confidence)) for name in METRIC_NAMES}


def top_k_accuracy(references, probabilities, k: int = 5, resamples: int = 1000, seed: int = 0,
                   confidence: float = 0.95) -> Interval:
    """Share of images whose true artist is among the `k` most probable, with its bootstrap interval."""
    probabilities = np.asarray(probabilities)
    k = min(k, probabilities.shape[1])
    top = np.argsort(-probabilities, axis=1)[:, :k]
    hits = (top == np.asarray(references)[:, None]).any(axis=1)
    draws = resample_cells(np.array([np.sum(~hits), np.sum(hits)]), resamples, seed)
    return Interval(float(hits.mean()), *_percentiles(draws[:, 1] / len(hits), confidence))


def per_artist_table(references, predictions, artists: list[str]) -> list[dict]:
    """One row per artist (all of them, even with no test images): precision, recall, F1, support."""
    p, r, f, support = precision_recall_fscore_support(
        references, predictions, labels=np.arange(len(artists)), average=None, zero_division=0
    )
    return [
        {"artist": a, "precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(support[i])}
        for i, a in enumerate(artists)
    ]


@dataclass(frozen=True)
class PairedTest:
    """Model B against model A on the same images."""

    num_images: int
    accuracy_a: float
    accuracy_b: float
    only_a_correct: int  # images A gets right and B gets wrong
    only_b_correct: int
    mcnemar_p: float  # exact two-sided McNemar (binomial) p-value; 1.0 when they never disagree
    difference: Interval  # accuracy_b - accuracy_a with its paired-bootstrap interval


def paired_test(
    references, predictions_a, predictions_b, resamples: int = 1000, seed: int = 0, confidence: float = 0.95
) -> PairedTest:
    """Do models A and B differ in accuracy on these images, beyond what chance explains?

    Only the images where exactly one model is right carry information; under
    "no difference" each of them is a fair coin (exact McNemar). The paired
    bootstrap resamples images, keeping both models' answers on each image
    together, so it accounts for the two models sharing their hard cases.
    """
    references = np.asarray(references)
    correct_a = np.asarray(predictions_a) == references
    correct_b = np.asarray(predictions_b) == references
    n = len(references)
    if n == 0 or len(correct_a) != n or len(correct_b) != n:
        raise ValueError(f"paired test needs the same non-empty images for both models ({n}, {len(correct_a)}, "
                         f"{len(correct_b)} predictions)")
    only_a = int(np.sum(correct_a & ~correct_b))
    only_b = int(np.sum(~correct_a & correct_b))
    disagreements = only_a + only_b
    p = binomtest(only_a, disagreements, 0.5).pvalue if disagreements else 1.0
    # cells: [both wrong, only B right], [only A right, both right]
    cells = np.zeros((2, 2), dtype=np.int64)
    np.add.at(cells, (correct_a.astype(int), correct_b.astype(int)), 1)
    draws = resample_cells(cells, resamples, seed)
    differences = (draws[:, 0, 1] - draws[:, 1, 0]) / n
    accuracy_a, accuracy_b = float(correct_a.mean()), float(correct_b.mean())
    difference = Interval(accuracy_b - accuracy_a, *_percentiles(differences, confidence))
    return PairedTest(n, accuracy_a, accuracy_b, only_a, only_b, float(p), difference)
