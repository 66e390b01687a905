"""DeLong's test for ROC AUCs with the fast O(n log n) algorithm of Sun & Xu (2014).

Every AUC is written as a sum of per-case *influence* terms built from DeLong's structural components
(V10 for positives, V01 for negatives). Variances and covariances of any AUCs computed on the same cases
(two models, several one-vs-rest classes, their macro average) are then sums of products of influences,
which reduces exactly to DeLong, DeLong & Clarke-Pearson (1988) for one class and two models, and extends to
macro-average AUC comparisons without extra theory. Passing `groups` sums influences within a patient first
(a cluster-robust variance, Obuchowski 1997) for patients with several ROIs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class DeLongResult:
    auc1: float
    auc2: float
    difference: float
    se: float
    z: float
    p_value: float
    ci_low: float
    ci_high: float

    def as_dict(self) -> dict:
        return asdict(self)


def auc_influence(y_true: np.ndarray, scores: np.ndarray) -> tuple[float, np.ndarray]:
    """AUC and per-case influence terms: var(AUC) = sum(influence**2) (DeLong's variance).

    Midranks (Sun & Xu 2014): a positive's V10 = (rank among all - rank among positives) / n_neg,
    a negative's V01 = 1 - (rank among all - rank among negatives) / n_pos.
    """
    y = np.asarray(y_true).astype(bool)
    s = np.asarray(scores, dtype=float)
    m, n = int(y.sum()), int((~y).sum())
    if m < 2 or n < 2:
        raise ValueError(f"DeLong needs at least 2 positive and 2 negative cases, got {m} and {n}")
    rank_all = stats.rankdata(s)
    v10 = (rank_all[y] - stats.rankdata(s[y])) / n
    v01 = 1.0 - (rank_all[~y] - stats.rankdata(s[~y])) / m
    auc = float(v10.mean())
    influence = np.empty(len(s))
    # sqrt(k / (k - 1)) scales sum of squares to DeLong's unbiased (k - 1) sample variances.
    influence[y] = (v10 - auc) / np.sqrt(m * (m - 1))
    influence[~y] = (v01 - auc) / np.sqrt(n * (n - 1))
    return auc, influence


def _cluster(influence: np.ndarray, groups: np.ndarray | None) -> np.ndarray:
    if groups is None:
        return influence
    _, codes = np.unique(np.asarray(groups), return_inverse=True)
    out = np.zeros((codes.max() + 1,) + influence.shape[1:])
    np.add.at(out, codes, influence)
    return out


def auc_variance(y_true, scores, groups=None) -> tuple[float, float]:
    """AUC and its DeLong variance."""
    auc, infl = auc_influence(y_true, scores)
    infl = _cluster(infl, groups)
    return auc, float(np.sum(infl**2))


def auc_ci(y_true, scores, alpha: float = 0.05, groups=None) -> tuple[float, float, float]:
    """AUC with a normal-approximation DeLong CI clipped to [0, 1] (as pROC does)."""
    auc, var = auc_variance(y_true, scores, groups)
    half = stats.norm.ppf(1 - alpha / 2) * np.sqrt(var)
    return auc, max(0.0, auc - half), min(1.0, auc + half)


def _result(a1: float, a2: float, var: float, alpha: float) -> DeLongResult:
    diff = a1 - a2
    se = float(np.sqrt(max(var, 0.0)))
    z = diff / se if se > 0 else (0.0 if diff == 0 else np.sign(diff) * np.inf)
    p = float(2 * stats.norm.sf(abs(z)))
    half = stats.norm.ppf(1 - alpha / 2) * se
    return DeLongResult(a1, a2, diff, se, float(z), p, diff - half, diff + half)


def paired_test(y_true, scores1, scores2, alpha: float = 0.05, groups=None) -> DeLongResult:
    """Two models scored on the same cases (correlated AUCs)."""
    a1, i1 = auc_influence(y_true, scores1)
    a2, i2 = auc_influence(y_true, scores2)
    d = _cluster(i1 - i2, groups)
    return _result(a1, a2, float(np.sum(d**2)), alpha)


def unpaired_test(y1, scores1, y2, scores2, alpha: float = 0.05, groups1=None, groups2=None) -> DeLongResult:
    """Two independent samples (e.g. one model on two cohorts): variances add."""
    a1, v1 = auc_variance(y1, scores1, groups1)
    a2, v2 = auc_variance(y2, scores2, groups2)
    return _result(a1, a2, v1 + v2, alpha)


def _one_hot(labels, classes) -> np.ndarray:
    labels = np.asarray(labels)
    return np.stack([labels == c for c in classes], axis=1)


def macro_influence(labels, probs: np.ndarray, classes) -> tuple[float, np.ndarray]:
    """Macro-average one-vs-rest AUC and its per-case influence (the mean of the class influences)."""
    onehot = _one_hot(labels, classes)
    pairs = [auc_influence(onehot[:, k], np.asarray(probs)[:, k]) for k in range(len(classes))]
    aucs = np.array([a for a, _ in pairs])
    return float(aucs.mean()), np.mean([i for _, i in pairs], axis=0)


def macro_auc_ci(labels, probs, classes, alpha: float = 0.05, groups=None) -> tuple[float, float, float]:
    auc, infl = macro_influence(labels, probs, classes)
    half = stats.norm.ppf(1 - alpha / 2) * np.sqrt(np.sum(_cluster(infl, groups) ** 2))
    return auc, max(0.0, auc - half), min(1.0, auc + half)


def paired_macro_test(labels, probs1, probs2, classes, alpha: float = 0.05, groups=None) -> DeLongResult:
    """Macro-average OvR AUC of two models on the same cases."""
    a1, i1 = macro_influence(labels, probs1, classes)
    a2, i2 = macro_influence(labels, probs2, classes)
    return _result(a1, a2, float(np.sum(_cluster(i1 - i2, groups) ** 2)), alpha)


def unpaired_macro_test(labels1, probs1, labels2, probs2, classes, alpha: float = 0.05,
                        groups1=None, groups2=None) -> DeLongResult:
    a1, i1 = macro_influence(labels1, probs1, classes)
    a2, i2 = macro_influence(labels2, probs2, classes)
    var = np.sum(_cluster(i1, groups1) ** 2) + np.sum(_cluster(i2, groups2) ** 2)
    return _result(a1, a2, float(var), alpha)


def holm(p_values) -> np.ndarray:
    """Holm (1979) step-down adjusted p-values, in the input order; NaN stays NaN and does not count in m.

    The i-th smallest of m p-values becomes max over j <= i of min(1, (m - j + 1) p_(j)).
    """
    p = np.asarray(p_values, dtype=float)
    out = np.full(p.shape, np.nan)
    defined = np.flatnonzero(~np.isnan(p))
    order = defined[np.argsort(p[defined], kind="stable")]
    m = len(order)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out
