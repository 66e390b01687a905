"""Per-cohort, per-class (one-vs-rest) and overall metrics with bootstrap and DeLong confidence intervals.

Operating points: for every class a Youden threshold (max sensitivity + specificity - 1) is chosen on the
out-of-fold training predictions and applied unchanged to every other cohort, so held-out cohorts never
influence their own cut-off.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.metrics import roc_curve

from radfuse.artifacts import prob_columns
from radfuse.data.manifest import COHORTS
from radfuse.evaluate import bootstrap, delong, intervals

BINARY_METRICS = ("auc", "accuracy", "sensitivity", "specificity", "ppv", "npv", "f1")
OVERALL_METRICS = ("macro_auc", "micro_auc", "accuracy", "balanced_accuracy", "macro_f1")
OOF_SET = "train_cv"  # out-of-fold predictions on the training cohort


@dataclass
class CaseArrays:
    """One evaluation set as arrays: labels (str), probabilities (n, K), predicted class, patient ids."""

    labels: np.ndarray
    probs: np.ndarray
    pred: np.ndarray
    groups: np.ndarray

    @classmethod
    def from_rows(cls, rows: pd.DataFrame, classes: list[str]) -> "CaseArrays":
        probs = rows[prob_columns(classes)].to_numpy(dtype=float)
        pred = rows["pred"].astype(str).to_numpy() if "pred" in rows else np.asarray(classes)[probs.argmax(1)]
        groups = rows["patient_id"].astype(str).to_numpy() if "patient_id" in rows else np.arange(len(rows))
        return cls(rows["label"].astype(str).to_numpy(), probs, pred, groups)

    def onehot(self, classes: list[str]) -> np.ndarray:
        return self.labels[:, None] == np.asarray(classes)[None, :]


def model_keys(predictions: pd.DataFrame) -> list[tuple[str, str]]:
    """(feature_set, model) pairs in the order they first appear."""
    pairs = predictions[["feature_set", "model"]].drop_duplicates()
    return [tuple(map(str, p)) for p in pairs.itertuples(index=False)]


def model_rows(predictions: pd.DataFrame, feature_set: str, model: str) -> pd.DataFrame:
    return predictions[(predictions["feature_set"] == feature_set) & (predictions["model"] == model)]


def evaluation_sets(rows: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """'train_cv' (out-of-fold) first, then each cohort's refit predictions, in the manifest's cohort order."""
    sets: dict[str, pd.DataFrame] = {}
    oof = rows[rows["split"] == "oof"]
    if len(oof):
        sets[OOF_SET] = oof
    refit = rows[rows["split"] == "refit"]
    cohorts = list(pd.unique(refit["cohort"].astype(str)))
    for cohort in sorted(cohorts, key=lambda c: (COHORTS.index(c) if c in COHORTS else len(COHORTS), c)):
        sets[cohort] = refit[refit["cohort"].astype(str) == cohort]
    return sets


def held_out_sets(sets: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """Cohorts the final model never saw (not the training cohort, not its out-of-fold predictions)."""
    return {k: v for k, v in sets.items() if k not in (OOF_SET, "train")}


def youden_threshold(y_true: np.ndarray, scores: np.ndarray) -> float:
    """Cut-off maximising sensitivity + specificity - 1 (score >= cut-off is positive); 0.5 if undefined."""
    if y_true.all() or not y_true.any():
        return 0.5
    fpr, tpr, thresholds = roc_curve(y_true, scores)
    finite = np.isfinite(thresholds)
    best = np.argmax(np.where(finite, tpr - fpr, -np.inf))
    return float(thresholds[best])


def choose_thresholds(sets: dict[str, pd.DataFrame], classes: list[str]) -> tuple[np.ndarray, str]:
    """Per-class Youden cut-offs from the out-of-fold training predictions (else the apparent ones)."""
    source = OOF_SET if OOF_SET in sets else ("train" if "train" in sets else None)
    if source is None:
        return np.full(len(classes), 1.0 / len(classes)), "none (no training predictions): 1/K"
    arrays = CaseArrays.from_rows(sets[source], classes)
    onehot = arrays.onehot(classes)
    cuts = [youden_threshold(onehot[:, k], arrays.probs[:, k]) for k in range(len(classes))]
    return np.asarray(cuts), source


def metric_names(classes: list[str]) -> list[str]:
    return [f"{c}/{m}" for c in classes for m in BINARY_METRICS] + [f"overall/{m}" for m in OVERALL_METRICS]


def _safe_ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def weighted_metrics(arrays: CaseArrays, classes: list[str], thresholds: np.ndarray, weights: np.ndarray):
    """(B, S) matrix of every statistic of `metric_names(classes)` for each row of case weights."""
    w = np.atleast_2d(weights)
    truth = arrays.onehot(classes)
    called = arrays.probs >= thresholds[None, :]
    tp, fp = w @ (truth & called), w @ (~truth & called)
    fn, tn = w @ (truth & ~called), w @ (~truth & ~called)
    aucs = np.stack([bootstrap.weighted_auc(truth[:, k], arrays.probs[:, k], w) for k in range(len(classes))], 1)
    per_class = np.stack([
        aucs, _safe_ratio(tp + tn, tp + tn + fp + fn), _safe_ratio(tp, tp + fn), _safe_ratio(tn, tn + fp),
        _safe_ratio(tp, tp + fp), _safe_ratio(tn, tn + fn), _safe_ratio(2 * tp, 2 * tp + fp + fn),
    ], axis=2)  # (B, K, metric)
    predicted = arrays.pred[:, None] == np.asarray(classes)[None, :]
    tp_m, fp_m, fn_m = w @ (truth & predicted), w @ (~truth & predicted), w @ (truth & ~predicted)
    present = truth.any(axis=0)
    micro = bootstrap.weighted_auc(truth.ravel(), arrays.probs.ravel(), np.repeat(w, len(classes), axis=1))
    overall = np.stack([
        np.nanmean(np.where(present, aucs, np.nan), axis=1) if present.any() else np.full(len(w), np.nan),
        micro,
        _safe_ratio((w @ (arrays.labels == arrays.pred)), w.sum(1)),
        np.nanmean(_safe_ratio(tp_m, tp_m + fn_m)[:, present], axis=1),
        np.nanmean(_safe_ratio(2 * tp_m, 2 * tp_m + fp_m + fn_m)[:, present], axis=1),
    ], axis=1)
    return np.concatenate([per_class.reshape(len(w), -1), overall], axis=1)


def _interval(values) -> list[float | None]:
    return [None if not np.isfinite(v) else float(v) for v in values]


def _delong_auc_cis(arrays: CaseArrays, classes: list[str]) -> dict[str, list]:
    """DeLong CIs for every class's AUC and the macro AUC (None where a class has < 2 cases either side)."""
    truth, out = arrays.onehot(classes), {}
    for k, c in enumerate(classes):
        try:
            out[c] = list(delong.auc_ci(truth[:, k], arrays.probs[:, k], groups=arrays.groups)[1:])
        except ValueError:
            out[c] = [None, None]
    try:
        out["overall"] = list(delong.macro_auc_ci(arrays.labels, arrays.probs, classes, groups=arrays.groups)[1:])
    except ValueError:
        out["overall"] = [None, None]
    return out


def set_metrics(rows: pd.DataFrame, classes: list[str], thresholds: np.ndarray, *, n_resamples: int = 1000,
                alpha: float = 0.05, seed: int = 0) -> dict:
    """All metrics of one evaluation set, each with its estimate, percentile and BCa bootstrap CIs."""
    arrays = CaseArrays.from_rows(rows, classes)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices: a class absent from a resample
        boot = bootstrap.bootstrap_ci(lambda w: weighted_metrics(arrays, classes, thresholds, w), len(rows),
                                      groups=arrays.groups, n_resamples=n_resamples, alpha=alpha, seed=seed)
    names = metric_names(classes)
    cis = _delong_auc_cis(arrays, classes)
    result: dict = {"per_class": {c: {} for c in classes}, "overall": {}}
    for j, name in enumerate(names):
        scope, metric = name.rsplit("/", 1)
        entry = {"estimate": _interval([boot["estimate"][j]])[0],
                 "ci_percentile": _interval([boot["percentile"][0][j], boot["percentile"][1][j]]),
                 "ci_bca": _interval([boot["bca"][0][j], boot["bca"][1][j]])}
        if metric in ("auc", "macro_auc"):
            entry["ci_delong"] = cis[scope]
        (result["overall"] if scope == "overall" else result["per_class"][scope])[metric] = entry
    _add_small_n_intervals(result, arrays, classes, thresholds, alpha)
    result.update(
        n_cases=len(rows), n_patients=int(len(np.unique(arrays.groups))), n_resamples=n_resamples,
        class_counts={c: int((arrays.labels == c).sum()) for c in classes},
        confusion_matrix=confusion_matrix(arrays.labels, arrays.pred, classes).tolist(),
    )
    return result


PROPORTIONS = ("accuracy", "sensitivity", "specificity", "ppv", "npv")


def _add_small_n_intervals(result: dict, arrays: CaseArrays, classes: list[str], thresholds: np.ndarray,
                           alpha: float) -> None:
    """Every proportion gets its denominator `n` and a Wilson interval `ci_wilson`; every AUC the size of its
    smaller group (`n_smaller_group`), so the report can withhold intervals that small n makes meaningless."""
    truth = arrays.onehot(classes)
    called = arrays.probs >= thresholds[None, :]
    for k, c in enumerate(classes):
        t, p = truth[:, k], called[:, k]
        tp, fp, fn, tn = (int(np.sum(a)) for a in (t & p, ~t & p, t & ~p, ~t & ~p))
        counts = {"accuracy": (tp + tn, len(t)), "sensitivity": (tp, tp + fn), "specificity": (tn, tn + fp),
                  "ppv": (tp, tp + fp), "npv": (tn, tn + fn)}
        for name, (x, n) in counts.items():
            result["per_class"][c][name].update(n=n, ci_wilson=list(intervals.wilson(x, n, alpha)))
        result["per_class"][c]["auc"]["n_smaller_group"] = int(min(t.sum(), (~t).sum()))
    correct = int(np.sum(arrays.labels == arrays.pred))
    result["overall"]["accuracy"].update(n=len(arrays.labels),
                                         ci_wilson=list(intervals.wilson(correct, len(arrays.labels), alpha)))
    for name in ("macro_auc", "micro_auc", "balanced_accuracy", "macro_f1"):  # set-level: the set's size decides
        result["overall"][name]["n"] = len(arrays.labels)


def confusion_matrix(labels: np.ndarray, pred: np.ndarray, classes: list[str]) -> np.ndarray:
    """Rows = true class, columns = predicted class, in `classes` order."""
    index = {c: i for i, c in enumerate(classes)}
    matrix = np.zeros((len(classes), len(classes)), dtype=int)
    for t, p in zip(labels, pred):
        if t in index and p in index:
            matrix[index[t], index[p]] += 1
    return matrix


def evaluate_model(rows: pd.DataFrame, classes: list[str], *, n_resamples: int = 1000, alpha: float = 0.05,
                   seed: int = 0) -> dict:
    """Thresholds from training, then metrics for every evaluation set of one (feature_set, model)."""
    sets = evaluation_sets(rows)
    thresholds, source = choose_thresholds(sets, classes)
    return {
        "thresholds": dict(zip(classes, map(float, thresholds))),
        "threshold_source": source,
        "sets": {name: set_metrics(frame, classes, thresholds, n_resamples=n_resamples, alpha=alpha, seed=seed)
                 for name, frame in sets.items()},
    }

