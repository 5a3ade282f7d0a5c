""""Not one of the artists I know": an unknown-artist score, its threshold, and the statistics behind it.

A model trained on K artists names one of them for every picture. This module
scores how unlike the known artists a picture is (higher = less like any of
them) from what the model already computes, its logits and its pooled features
(the classifier's input), and says "unknown" above a threshold chosen on the
validation split so that a stated share of known-artist paintings is kept.

Candidate scores, compared side by side by `tim calibrate` (`candidate_scores`):

* ``max-probability``: 1 - the calibrated top probability;
* ``entropy``: the entropy of the calibrated probabilities (how spread the whole answer is, not only its top; for
  an ensemble the total uncertainty of the members' mean, and what outlier exposure in training aims at: the
  uniform answer has the highest);
* ``mahalanobis``: distance of the features to the nearest artist's mean, under a
  shared (Ledoit-Wolf) covariance fitted on the training split;
* ``knn-cosine``: 1 - mean cosine similarity to the 10 nearest training paintings;
* ``outlier-exposure``: a logistic head with an extra "unknown" class on the frozen,
  standardised features, trained on the training split plus paintings of other
  artists (`--unknown DIR`) with class-balanced weights; score = P(unknown);
* ``outlier-exposure+max-probability``: 1 - (1 - P(unknown)) * top probability.

The kept score's statistics are saved beside the weights as `unknown.safetensors`
(no pickles) and its settings in config.json (`tim.unknown`). A checkpoint without
them answers as before: every picture gets one of its artists.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from tim.checkpoint import UNKNOWN_NAME, CheckpointError, inside
from tim.errors import UserError

SCORES = ("max-probability", "entropy", "mahalanobis", "knn-cosine", "outlier-exposure",
          "outlier-exposure+max-probability")
NEEDS_OUTLIERS = ("outlier-exposure", "outlier-exposure+max-probability")
UNFITTED = ("max-probability", "entropy")  # read the model's answer alone: nothing is fitted, nothing is stored
KNN = 10


class OpenSetError(UserError):
    """Unknown-artist data or statistics Tim cannot use; the message says why and what to do."""


# ---------------------------------------------------------------- the detector a Predictor uses


@dataclass
class UnknownDetector:
    score_name: str
    threshold: float
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)  # statistics, saved in unknown.safetensors
    info: dict = field(default_factory=dict)  # the rest of config["tim"]["unknown"]

    def score(self, logits: torch.Tensor, features: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
        """Unknown-artist score per image (higher = less like any known artist)."""
        return SCORE_FUNCTIONS[self.score_name](self.tensors, logits.float(), features.float(), probs.float())

    def to_config(self) -> dict:
        return {"score": self.score_name, "threshold": float(self.threshold),
                **({"file": UNKNOWN_NAME} if self.tensors else {}), **self.info}

    def save(self, folder: Path) -> dict:
        """Write the statistics (if any) into `folder`; return the config block to store as tim.unknown."""
        if self.tensors:
            save_file({k: v.contiguous() for k, v in self.tensors.items()}, str(Path(folder) / UNKNOWN_NAME))
        return self.to_config()

    @classmethod
    def from_checkpoint(cls, config: dict, folder: str | Path | None) -> "UnknownDetector | None":
        block = (config.get("tim") or {}).get("unknown")
        if not block:
            return None
        name = block.get("score")
        if name not in SCORES:
            raise CheckpointError(f"config.json tim.unknown: score {name!r} is not one of {SCORES}")
        tensors = {}
        if block.get("file"):
            path = inside(folder or ".", block["file"], "tim.unknown.file")
            if folder is None or not path.is_file():
                raise CheckpointError(f"{path}: missing; config.json tim.unknown needs it (rerun `tim calibrate`, or "
                                      "remove the tim.unknown block to answer without the unknown-artist decision).")
            tensors = {k: v.float() for k, v in load_file(str(path)).items()}
        info = {k: v for k, v in block.items() if k not in ("score", "threshold", "file")}
        return cls(name, float(block["threshold"]), tensors, info)


def _max_probability(t, logits, features, probs):
    return 1.0 - probs.max(-1).values


def _entropy(t, logits, features, probs):
    return -(probs * probs.clamp_min(1e-12).log()).sum(-1)


def _mahalanobis(t, logits, features, probs):
    """min over artists of (f - mean_k)' P (f - mean_k), expanded so no N x K x D x D product is formed."""
    means, precision = t["class_means"], t["precision"]
    fp = features @ precision
    d2 = (fp * features).sum(-1, keepdim=True) - 2 * fp @ means.T + ((means @ precision) * means).sum(-1)
    return d2.min(-1).values


def _knn_cosine(t, logits, features, probs):
    f = torch.nn.functional.normalize(features, dim=-1)
    bank = torch.nn.functional.normalize(t["bank"], dim=-1)
    sims = f @ bank.T
    return 1.0 - sims.topk(min(KNN, bank.shape[0]), dim=-1).values.mean(-1)


def _oe_unknown_probability(t, features):
    z = (features - t["mean"]) / t["scale"]
    return (z @ t["coef"].T + t["intercept"]).softmax(-1)[:, -1]


def _outlier_exposure(t, logits, features, probs):
    return _oe_unknown_probability(t, features)


def _oe_times_confidence(t, logits, features, probs):
    return 1.0 - (1.0 - _oe_unknown_probability(t, features)) * probs.max(-1).values


def statistics_shapes(score: str, classes: int, features: int) -> dict[str, tuple]:
    """The tensors `score` reads from unknown.safetensors and their shapes (None: any length), for tim.validate."""
    k, d = classes, features
    return {
        "max-probability": {},
        "entropy": {},
        "mahalanobis": {"class_means": (k, d), "precision": (d, d)},
        "knn-cosine": {"bank": (None, d)},
        "outlier-exposure": {"mean": (d,), "scale": (d,), "coef": (k + 1, d), "intercept": (k + 1,)},
        "outlier-exposure+max-probability": {"mean": (d,), "scale": (d,), "coef": (k + 1, d), "intercept": (k + 1,)},
    }[score]


SCORE_FUNCTIONS = {
    "max-probability": _max_probability,
    "entropy": _entropy,
    "mahalanobis": _mahalanobis,
    "knn-cosine": _knn_cosine,
    "outlier-exposure": _outlier_exposure,
    "outlier-exposure+max-probability": _oe_times_confidence,
}


# ---------------------------------------------------------------- fitting statistics


def fit_statistics(score: str, train_features: np.ndarray, train_labels: np.ndarray,
                   outlier_features: np.ndarray | None = None, seed: int = 0) -> dict[str, torch.Tensor]:
    """The statistics `score` needs, from the training split's features (and other artists' for outlier exposure)."""
    f = np.asarray(train_features, dtype=np.float64)
    y = np.asarray(train_labels)
    if score in UNFITTED:
        return {}
    if score == "mahalanobis":
        from sklearn.covariance import LedoitWolf

        k = int(y.max()) + 1
        means = np.stack([f[y == c].mean(0) for c in range(k)])
        precision = LedoitWolf().fit(f - means[y]).precision_
        return {"class_means": torch.tensor(means, dtype=torch.float32),
                "precision": torch.tensor(precision, dtype=torch.float32)}
    if score == "knn-cosine":
        return {"bank": torch.tensor(f, dtype=torch.float32)}
    if score in NEEDS_OUTLIERS:
        if outlier_features is None or len(outlier_features) == 0:
            raise OpenSetError(f"the {score} score needs paintings of other artists: pass --unknown DIR")
        return fit_outlier_head(f, y, np.asarray(outlier_features, dtype=np.float64), seed)
    raise OpenSetError(f"unknown-artist score {score!r} is not one of {SCORES}")


def fit_outlier_head(known: np.ndarray, labels: np.ndarray, outliers: np.ndarray, seed: int = 0,
                     weight_decay: float = 0.01) -> dict[str, torch.Tensor]:
    """Logistic regression with K+1 classes (the last = "unknown") on standardised features, class-balanced.

    Full-batch L-BFGS on the mean weighted cross-entropy + weight_decay * |W|^2 (a few seconds for
    thousands of 1280-d features; weight_decay 0.01 measured best of 1e-4..1e-2 on the bundled model).
    """
    k = int(labels.max()) + 1
    x = np.concatenate([known, outliers])
    y = torch.as_tensor(np.concatenate([labels, np.full(len(outliers), k)]), dtype=torch.long)
    mean, scale = x.mean(0), x.std(0) + 1e-6
    z = torch.as_tensor((x - mean) / scale, dtype=torch.float32)
    counts = torch.bincount(y, minlength=k + 1).float().clamp(min=1)
    weight = len(y) / ((k + 1) * counts)
    torch.manual_seed(seed)
    head = torch.nn.Linear(z.shape[1], k + 1)
    opt = torch.optim.LBFGS(head.parameters(), max_iter=500, history_size=20, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(head(z), y, weight=weight) + weight_decay * head.weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return {"mean": torch.tensor(mean, dtype=torch.float32), "scale": torch.tensor(scale, dtype=torch.float32),
            "coef": head.weight.detach().clone(), "intercept": head.bias.detach().clone()}


def threshold_for(known_scores: np.ndarray, retention: float) -> float:
    """The score threshold that keeps (score <= threshold) at least `retention` of the known images."""
    if not 0 < retention <= 1:
        raise OpenSetError(f"retention {retention}: must be a share of known paintings to keep, in (0, 1]")
    return float(np.quantile(np.asarray(known_scores, dtype=np.float64), retention, method="higher"))


# ---------------------------------------------------------------- measuring


def auroc(known_scores: np.ndarray, unknown_scores: np.ndarray) -> float:
    """Probability that an unknown painting scores higher than a known one (ties count half)."""
    from sklearn.metrics import roc_auc_score

    y = np.r_[np.zeros(len(known_scores)), np.ones(len(unknown_scores))]
    return float(roc_auc_score(y, np.r_[known_scores, unknown_scores]))


def open_set_report(known_scores: np.ndarray, known_correct: np.ndarray, unknown_scores: np.ndarray,
                    threshold: float) -> dict:
    """AUROC, share of unknown rejected, share of known kept, and open-set accuracy at `threshold`."""
    known_scores, unknown_scores = np.asarray(known_scores), np.asarray(unknown_scores)
    kept = known_scores <= threshold
    rejected = unknown_scores > threshold
    right = int((kept & np.asarray(known_correct, bool)).sum()) + int(rejected.sum())
    return {
        "auroc": auroc(known_scores, unknown_scores),
        "unknown_rejected": float(rejected.mean()),
        "known_kept": float(kept.mean()),
        "open_set_accuracy": right / (len(known_scores) + len(unknown_scores)),
        "known_images": int(len(known_scores)),
        "unknown_images": int(len(unknown_scores)),
        "threshold": float(threshold),
    }


def split_artists(artists: list[str], fit_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """(fit artists, report artists): a seeded split of other artists' names, never of their images."""
    if not 0 <= fit_fraction <= 1:
        raise OpenSetError(f"--unknown-fit-fraction {fit_fraction}: must be between 0 and 1")
    order = np.random.default_rng(seed).permutation(len(artists))
    n_fit = int(round(fit_fraction * len(artists)))
    if len(artists) >= 2 and 0 < fit_fraction < 1:
        n_fit = min(max(n_fit, 1), len(artists) - 1)  # both parts get at least one artist
    fit = sorted(artists[i] for i in order[:n_fit])
    return fit, sorted(set(artists) - set(fit))


def artist_folds(artist_ids: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """A fold number per image such that all images of an artist fall in the same fold."""
    ids = np.unique(artist_ids)
    fold_of = dict(zip(np.random.default_rng(seed).permutation(ids), np.arange(len(ids)) % folds))
    return np.array([fold_of[a] for a in artist_ids])


def candidate_scores(names, train: dict, known: dict, outliers: dict, seed: int = 0, folds: int = 2) -> dict:
    """Scores of the known (validation) and outlier images for each candidate, honestly out of sample.

    train / known / outliers: dicts with "features" and "probs" (calibrated), train with "labels",
    outliers with "artists". Heads trained on outliers are cross-fitted by artist: an outlier painting
    is scored by a head that never saw its artist; the known images by the head fitted on every outlier.
    Returns {name: (known_scores, outlier_scores)}.
    """
    fold = artist_folds(outliers["artists"], folds, seed)
    heads: dict = {}  # one outlier-exposure head per fold (and "all"), shared by the scores that use it

    def statistics(name, part):
        if name not in NEEDS_OUTLIERS:
            return heads.setdefault(name, fit_statistics(name, train["features"], train["labels"]))
        if part not in heads:
            chosen = outliers["features"] if part == "all" else outliers["features"][fold != part]
            heads[part] = fit_statistics(name, train["features"], train["labels"], chosen, seed)
        return heads[part]

    def score(name, stats, data, mask=slice(None)):
        return SCORE_FUNCTIONS[name](stats, None, torch.from_numpy(data["features"][mask]).float(),
                                     torch.from_numpy(data["probs"][mask]).float()).numpy()

    out = {}
    for name in names:
        if name in NEEDS_OUTLIERS:
            outlier_scores = np.zeros(len(fold))
            for k in range(folds):
                outlier_scores[fold == k] = score(name, statistics(name, k), outliers, fold == k)
            out[name] = (score(name, statistics(name, "all"), known), outlier_scores)
        else:
            stats = statistics(name, None)
            out[name] = (score(name, stats, known), score(name, stats, outliers))
    return out
