"""Calibration: reliability curves, Brier score, calibration intercept and slope, optional recalibration.

Calibration slope: the coefficient b of logit P(y=1) = a + b * logit(p). Calibration intercept
(calibration-in-the-large): a in logit P(y=1) = a + logit(p), the slope fixed at 1 through an offset
(Van Calster et al. 2016). Both by Newton-Raphson, so no statsmodels dependency.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.isotonic import IsotonicRegression
from sklearn.model_selection import GroupKFold

EPS = 1e-6


def logit(p) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=float), EPS, 1 - EPS)
    return np.log(p / (1 - p))


def _newton_logistic(design: np.ndarray, y: np.ndarray, offset: np.ndarray, iterations: int = 50) -> np.ndarray:
    """Maximum-likelihood logistic coefficients (with an optional fixed offset)."""
    beta = np.zeros(design.shape[1])
    for _ in range(iterations):
        mu = 1 / (1 + np.exp(-(design @ beta + offset)))
        hessian = design.T @ (design * (mu * (1 - mu))[:, None]) + 1e-10 * np.eye(len(beta))
        step = np.linalg.solve(hessian, design.T @ (y - mu))
        beta += step
        if np.max(np.abs(step)) < 1e-10:
            break
    return beta


def calibration_intercept_slope(y_true, probs) -> tuple[float, float]:
    """(calibration-in-the-large intercept, calibration slope); perfect calibration gives (0, 1)."""
    y = np.asarray(y_true, dtype=float)
    lp = logit(probs)
    if y.min() == y.max():
        return float("nan"), float("nan")
    intercept = _newton_logistic(np.ones((len(y), 1)), y, lp)[0]
    slope = _newton_logistic(np.column_stack([np.ones(len(y)), lp]), y, np.zeros(len(y)))[1]
    return float(intercept), float(slope)


def brier_score(y_true, probs) -> float:
    return float(np.mean((np.asarray(probs, dtype=float) - np.asarray(y_true, dtype=float)) ** 2))


def reliability_curve(y_true, probs, n_bins: int = 10, strategy: str = "quantile") -> pd.DataFrame:
    """Mean predicted probability, observed frequency and count per bin (quantile bins by default)."""
    p = np.asarray(probs, dtype=float)
    y = np.asarray(y_true, dtype=float)
    if strategy == "quantile":
        edges = np.unique(np.quantile(p, np.linspace(0, 1, n_bins + 1)))
    else:
        edges = np.linspace(0, 1, n_bins + 1)
    bins = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, max(len(edges) - 2, 0))
    frame = pd.DataFrame({"bin": bins, "p": p, "y": y}).groupby("bin")
    return pd.DataFrame({"mean_predicted": frame["p"].mean(), "observed": frame["y"].mean(),
                         "count": frame["y"].size()}).reset_index(drop=True)


def calibration_summary(labels, probs: np.ndarray, classes: list[str]) -> dict:
    """Per class (one-vs-rest) Brier, intercept and slope, and the multi-class Brier score."""
    labels = np.asarray(labels).astype(str)
    truth = labels[:, None] == np.asarray(classes)[None, :]
    out = {"multiclass_brier": float(np.mean(np.sum((probs - truth) ** 2, axis=1))), "per_class": {}}
    for k, c in enumerate(classes):
        a, b = calibration_intercept_slope(truth[:, k], probs[:, k])
        out["per_class"][c] = {"brier": brier_score(truth[:, k], probs[:, k]), "intercept": a, "slope": b}
    return out


class Recalibrator:
    """One-vs-rest Platt (logistic on logit p) or isotonic recalibration; rows renormalised to sum to 1."""

    def __init__(self, method: str = "platt"):
        if method not in ("platt", "isotonic"):
            raise ValueError(f"recalibration method {method!r} unknown: use 'platt' or 'isotonic'")
        self.method = method

    def fit(self, truth: np.ndarray, probs: np.ndarray) -> "Recalibrator":
        self.maps_ = []
        for k in range(probs.shape[1]):
            if self.method == "platt":
                design = np.column_stack([np.ones(len(probs)), logit(probs[:, k])])
                self.maps_.append(_newton_logistic(design, truth[:, k].astype(float), np.zeros(len(probs))))
            else:
                self.maps_.append(IsotonicRegression(out_of_bounds="clip", y_min=0, y_max=1)
                                  .fit(probs[:, k], truth[:, k].astype(float)))
        return self

    def transform(self, probs: np.ndarray) -> np.ndarray:
        cols = []
        for k, m in enumerate(self.maps_):
            if self.method == "platt":
                cols.append(1 / (1 + np.exp(-(m[0] + m[1] * logit(probs[:, k])))))
            else:
                cols.append(m.predict(probs[:, k]))
        out = np.clip(np.column_stack(cols), EPS, None)
        return out if out.shape[1] == 1 else out / out.sum(axis=1, keepdims=True)


def crossfit_recalibrate(truth: np.ndarray, probs: np.ndarray, groups, method: str = "platt",
                         n_splits: int = 5) -> np.ndarray:
    """Recalibrated out-of-fold training probabilities: each fold is mapped by a recalibrator fitted on the
    other folds (patient-grouped), so the training cohort's calibration is not judged on its own fit."""
    out = np.empty_like(probs, dtype=float)
    n_splits = min(n_splits, len(np.unique(groups)))
    for fit_idx, apply_idx in GroupKFold(n_splits=n_splits).split(probs, groups=groups):
        out[apply_idx] = Recalibrator(method).fit(truth[fit_idx], probs[fit_idx]).transform(probs[apply_idx])
    return out
