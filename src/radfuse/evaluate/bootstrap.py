"""Vectorised patient-level bootstrap: percentile and BCa confidence intervals.

A resample is a row of case weights (how often each case is drawn). Drawing patients, not ROIs, and giving
every ROI its patient's count keeps the ROIs of one patient together. Statistics are written once as weighted
functions of a (resamples x cases) weight matrix, so all resamples are computed in a few matrix operations, and
the BCa jackknife is the same function applied to leave-one-patient-out weights.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from scipy.special import ndtr, ndtri

WeightedStatistic = Callable[[np.ndarray], np.ndarray]  # (B, n) weights -> (B,) or (B, k) values


def _group_codes(groups: np.ndarray | None, n: int) -> np.ndarray:
    if groups is None:
        return np.arange(n)
    _, codes = np.unique(np.asarray(groups), return_inverse=True)
    return codes.ravel()


def resample_weights(n: int, n_resamples: int, rng: np.random.Generator, groups=None) -> np.ndarray:
    """(n_resamples, n) case weights: patient draw counts broadcast to the patient's ROIs."""
    codes = _group_codes(groups, n)
    n_groups = codes.max() + 1
    counts = rng.multinomial(n_groups, np.full(n_groups, 1.0 / n_groups), size=n_resamples)
    return counts[:, codes].astype(float)


def jackknife_weights(n: int, groups=None) -> np.ndarray:
    """(n_groups, n) weights that leave one patient out per row."""
    codes = _group_codes(groups, n)
    return (codes[None, :] != np.arange(codes.max() + 1)[:, None]).astype(float)


def weighted_auc(y_true: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Mann-Whitney AUC (ties count 1/2) for every row of `weights`; NaN where a class is absent.

    Scores are sorted once; per distinct score the weighted positives and negatives are summed, and each
    positive is credited with the negative weight strictly below it plus half the weight tied with it.
    """
    order = np.argsort(scores, kind="stable")
    s_sorted = np.asarray(scores, dtype=float)[order]
    pos = np.asarray(y_true, dtype=bool)[order]
    w = np.atleast_2d(weights)[:, order]
    w_pos = w * pos
    w_neg = w - w_pos
    starts = np.r_[0, np.flatnonzero(np.diff(s_sorted)) + 1]
    if len(starts) < len(s_sorted):  # ties: pool each run of equal scores (skipped when all scores differ)
        w_pos = np.add.reduceat(w_pos, starts, axis=1)
        w_neg = np.add.reduceat(w_neg, starts, axis=1)
    below = np.cumsum(w_neg, axis=1) - w_neg
    numerator = np.sum(w_pos * (below + 0.5 * w_neg), axis=1)
    denominator = w_pos.sum(axis=1) * w_neg.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, numerator / np.where(denominator > 0, denominator, 1), np.nan)


def weighted_mean(values: np.ndarray, weights: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Weighted mean of `values` over the cases in `mask`, per row of weights (NaN if the mask is empty)."""
    w = np.atleast_2d(weights) if mask is None else np.atleast_2d(weights) * mask
    total = w.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, (w @ np.asarray(values, dtype=float)) / np.where(total > 0, total, 1), np.nan)


def percentile_interval(theta_b: np.ndarray, alpha: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval over the resample axis (0); degenerate resamples (NaN) are dropped."""
    lo, hi = np.nanpercentile(theta_b, [100 * alpha / 2, 100 * (1 - alpha / 2)], axis=0)
    return lo, hi


def bca_interval(theta_hat, theta_b, theta_jack, alpha: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Bias-corrected and accelerated interval (Efron & Tibshirani 1993, eq. 14.10 / 14.15).

    theta_b: (B, ...) bootstrap values; theta_jack: (J, ...) leave-one-patient-out values.
    """
    theta_b = np.asarray(theta_b, dtype=float)
    theta_hat = np.asarray(theta_hat, dtype=float)
    valid = np.sum(~np.isnan(theta_b), axis=0)
    # 'mean' percentile of score: ties count half, as scipy.stats.bootstrap does
    share = (np.sum(theta_b < theta_hat, axis=0) + np.sum(theta_b <= theta_hat, axis=0)) / (2 * valid)
    z0 = ndtri(np.clip(share, 1e-12, 1 - 1e-12))
    u = np.nanmean(theta_jack, axis=0) - np.asarray(theta_jack, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = np.nansum(u**3, axis=0) / (6 * np.nansum(u**2, axis=0) ** 1.5)
    acc = np.nan_to_num(acc)
    bounds = []
    for z_alpha in (ndtri(alpha / 2), -ndtri(alpha / 2)):
        shifted = z0 + z_alpha
        bounds.append(ndtr(z0 + shifted / (1 - acc * shifted)))
    return _quantile_per_column(theta_b, bounds[0]), _quantile_per_column(theta_b, bounds[1])


def _quantile_per_column(theta_b: np.ndarray, q) -> np.ndarray:
    flat = theta_b.reshape(theta_b.shape[0], -1)
    qs = np.broadcast_to(np.asarray(q, dtype=float), theta_b.shape[1:]).ravel()
    out = [np.nanquantile(flat[:, j], qs[j]) if np.isfinite(qs[j]) else np.nan for j in range(flat.shape[1])]
    return np.asarray(out).reshape(theta_b.shape[1:])


def bootstrap_ci(
    statistic: WeightedStatistic,
    n: int,
    *,
    groups=None,
    n_resamples: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    bca: bool = True,
) -> dict[str, np.ndarray]:
    """Estimate, percentile CI and (optionally) BCa CI of a weighted statistic of n cases."""
    rng = np.random.default_rng(seed)
    theta_hat = np.asarray(statistic(np.ones((1, n))))[0]
    theta_b = np.asarray(statistic(resample_weights(n, n_resamples, rng, groups)))
    out = {"estimate": theta_hat, "theta_b": theta_b}
    out["percentile"] = percentile_interval(theta_b, alpha)
    if bca:
        jack = jackknife_weights(n, groups)
        theta_jack = np.concatenate([statistic(jack[i:i + 512]) for i in range(0, len(jack), 512)])
        out["bca"] = bca_interval(theta_hat, theta_b, theta_jack, alpha)
    return out
