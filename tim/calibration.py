"""Calibrated confidence: turn a model's logits into probabilities that mean what they say.

A calibration is fitted on the validation split and stored in the checkpoint's
config.json (`tim.calibration`); `calibrated_probabilities` is the one function
that applies it, wherever a model answers. Every method here divides the logits
of an image by a positive temperature, so the top-1 answer never moves:

* ``temperature``: one temperature for every image, fitted by negative log-likelihood
  (Guo et al., 2017);
* ``temperature-brier``: one temperature, fitted by the Brier score (a proper score that a few
  confident mistakes sway less than the log-likelihood: steadier on a small validation split);
* ``temperature-ece``: one temperature, fitted to minimise the expected calibration error;
* ``adaptive``: a temperature per image, log T = a + b * m, where m is the image's
  log-odds of its top class under plain softmax. Label smoothing and class weights
  distort confident and unsure answers differently, which one temperature cannot undo.

The method kept is the one with the lowest ECE in a cross-validation over the
validation images (`fit_best`), so the choice is not tuned on the images it is judged on.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.optimize import minimize, minimize_scalar

METHODS = ("temperature", "temperature-brier", "temperature-ece", "adaptive")
BINS = 15  # equal-width confidence bins for ECE and the reliability diagram


@dataclass
class Calibration:
    method: str
    temperature: float = 1.0  # `a` = log(temperature) for the adaptive method
    slope: float = 0.0  # adaptive: log T = log(temperature) + slope * (m - center)
    center: float = 0.0
    fitted_on: dict = field(default_factory=dict)  # where and how it was fitted, with ECE before/after

    def temperatures(self, logits: torch.Tensor) -> torch.Tensor:
        """Per-image temperatures N x 1 (always > 0, so the top-1 answer never moves)."""
        log_t = torch.full((len(logits), 1), float(np.log(self.temperature)), dtype=logits.dtype)
        if self.method == "adaptive" and self.slope:
            log_t = log_t + self.slope * (top_log_odds(logits)[:, None] - self.center)
        return log_t.clamp(-5, 5).exp()

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        return (logits / self.temperatures(logits)).softmax(-1)

    def to_dict(self) -> dict:
        d = {"method": self.method, "temperature": self.temperature}
        if self.method == "adaptive":
            d.update(slope=self.slope, center=self.center)
        return {**d, **({"fitted_on": self.fitted_on} if self.fitted_on else {})}

    @classmethod
    def from_dict(cls, d: dict) -> "Calibration":
        if d.get("method") not in METHODS:
            raise ValueError(f"calibration method {d.get('method')!r} is not one of {METHODS}")
        return cls(d["method"], float(d.get("temperature", 1.0)), float(d.get("slope", 0.0)),
                   float(d.get("center", 0.0)), dict(d.get("fitted_on") or {}))

    @classmethod
    def from_config(cls, config: dict) -> "Calibration | None":
        """The checkpoint's calibration, or None when it has none (then answers are a plain softmax)."""
        block = (config.get("tim") or {}).get("calibration")
        return cls.from_dict(block) if block else None


def calibrated_probabilities(logits: torch.Tensor, calibration: Calibration | None) -> torch.Tensor:
    """Probabilities from logits: the calibration's, or a plain softmax when there is none."""
    logits = torch.as_tensor(logits).float()
    return logits.softmax(-1) if calibration is None else calibration.probabilities(logits)


def top_log_odds(logits: torch.Tensor) -> torch.Tensor:
    """log(p / (1 - p)) of each image's top class under plain softmax."""
    log_p = torch.as_tensor(logits).float().log_softmax(-1)
    top = log_p.max(-1).values
    return top - torch.log1p(-top.exp().clamp(max=1 - 1e-6))


# ---------------------------------------------------------------- measuring


def ece(probs: np.ndarray, labels: np.ndarray, bins: int = BINS) -> float:
    """Expected calibration error: |accuracy - confidence| per equal-width confidence bin, weighted by its share."""
    table = reliability(probs, labels, bins)
    n = max(1, sum(table["count"]))
    return float(sum(c * abs(a - f) for c, a, f in zip(table["count"], table["accuracy"], table["confidence"])
                     if c) / n)


def reliability(probs: np.ndarray, labels: np.ndarray, bins: int = BINS) -> dict:
    """Per confidence bin: edges, mean confidence, accuracy and count (empty bins have count 0), for the diagram."""
    probs, labels = np.asarray(probs), np.asarray(labels)
    confidence = probs.max(1)
    correct = probs.argmax(1) == labels
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    out = {"edges": edges.tolist(), "confidence": [], "accuracy": [], "count": []}
    for b in range(bins):
        mask = which == b
        out["count"].append(int(mask.sum()))
        out["confidence"].append(float(confidence[mask].mean()) if mask.any() else 0.0)
        out["accuracy"].append(float(correct[mask].mean()) if mask.any() else 0.0)
    return out


def nll(probs: np.ndarray, labels: np.ndarray) -> float:
    return float(-np.mean(np.log(np.clip(np.asarray(probs)[np.arange(len(labels)), labels], 1e-12, 1))))


# ---------------------------------------------------------------- fitting


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def _log_temperatures(log_odds: np.ndarray, a: float, b: float, center: float) -> np.ndarray:
    return np.clip(a + b * (log_odds - center), -5, 5)[:, None]


def fit(logits: np.ndarray, labels: np.ndarray, method: str = "temperature") -> Calibration:
    """Fit one calibration method on (logits N x K, labels N)."""
    if method not in METHODS:
        raise ValueError(f"calibration method {method!r} is not one of {METHODS}")
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels)
    rows = np.arange(len(y))
    onehot = np.eye(z.shape[1])[y]
    objectives = {
        "nll": lambda p: -np.mean(np.log(np.clip(p[rows, y], 1e-12, 1))),
        "brier": lambda p: float(((p - onehot) ** 2).sum(1).mean()),
        "ece": lambda p: ece(p, y),
    }
    objective = objectives[{"temperature-brier": "brier", "temperature-ece": "ece"}.get(method, "nll")]
    res = minimize_scalar(lambda lt: objective(_softmax(z / np.exp(lt))), bounds=(-3, 3), method="bounded",
                          options={"xatol": 1e-4})
    if method != "adaptive":
        return Calibration(method, float(np.exp(res.x)))
    log_odds = top_log_odds(torch.as_tensor(z)).numpy()
    center = float(log_odds.mean())
    fitted = minimize(lambda ab: objective(_softmax(z / np.exp(_log_temperatures(log_odds, ab[0], ab[1], center)))),
                      x0=[res.x, 0.0], method="L-BFGS-B")
    return Calibration(method, float(np.exp(fitted.x[0])), float(fitted.x[1]), center)


def cross_validated_ece(logits: np.ndarray, labels: np.ndarray, method: str, folds: int = 5, seed: int = 0) -> float:
    """ECE of `method` on held-out folds of (logits, labels): each image judged by a calibration not fitted on it."""
    n = len(labels)
    order = np.random.default_rng(seed).permutation(n)
    probs = np.zeros((n, np.asarray(logits).shape[1]))
    for k in range(folds):
        held = order[k::folds]
        fitted = np.setdiff1d(order, held)
        cal = fit(logits[fitted], labels[fitted], method)
        probs[held] = cal.probabilities(torch.as_tensor(logits[held]).float()).numpy()
    return ece(probs, labels)


def fit_best(logits: np.ndarray, labels: np.ndarray, methods=METHODS, folds: int = 5,
             seed: int = 0) -> tuple[Calibration, list[dict]]:
    """The method with the lowest cross-validated ECE, refitted on all the images; and the table of candidates."""
    logits, labels = np.asarray(logits, dtype=np.float32), np.asarray(labels)
    plain = torch.as_tensor(logits).softmax(-1).numpy()
    table = [{"method": "none (softmax)", "cv_ece": ece(plain, labels), "nll": nll(plain, labels)}]
    best, best_ece = None, np.inf
    for method in methods:
        cv = cross_validated_ece(logits, labels, method, folds, seed)
        cal = fit(logits, labels, method)
        probs = cal.probabilities(torch.as_tensor(logits)).numpy()
        table.append({"method": method, "cv_ece": cv, "nll": nll(probs, labels), **cal.to_dict()})
        if cv < best_ece:
            best, best_ece = cal, cv
    return best, table
