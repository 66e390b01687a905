"""Intraclass correlation per feature: ICC(3,1) consistency and ICC(2,1) absolute agreement, two-way models.

Shrout & Fleiss (1979) definitions on an n targets x k raters table, vectorised over features; 95 % confidence
intervals as in Shrout & Fleiss / McGraw & Wong (1996): exact F bounds for ICC(3,1), Satterthwaite's
approximate degrees of freedom for ICC(2,1). For radfuse the raters are the two masks (`mask`, `mask2`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # imported where an ICC table is made (runs with second readers)
    import pandas as pd

ICC_COLUMNS = ("feature", "icc3_1", "icc3_1_low", "icc3_1_high", "icc2_1", "icc2_1_low", "icc2_1_high", "n")


def two_way_mean_squares(ratings: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(MS rows = targets, MS columns = raters, MS error) of an (n, k) or (n, k, features) array."""
    ratings = np.asarray(ratings, dtype=float)
    n, k = ratings.shape[:2]
    grand = ratings.mean(axis=(0, 1))
    target_means = ratings.mean(axis=1)
    rater_means = ratings.mean(axis=0)
    ss_rows = k * ((target_means - grand) ** 2).sum(axis=0)
    ss_cols = n * ((rater_means - grand) ** 2).sum(axis=0)
    ss_total = ((ratings - grand) ** 2).sum(axis=(0, 1))
    ss_error = ss_total - ss_rows - ss_cols
    return ss_rows / (n - 1), ss_cols / (k - 1), ss_error / ((n - 1) * (k - 1))


def icc_table(ratings: np.ndarray, alpha: float = 0.05) -> dict[str, np.ndarray]:
    """ICC(3,1) and ICC(2,1) with (1 - alpha) confidence bounds for ratings of shape (n, k[, features])."""
    ratings = np.asarray(ratings, dtype=float)
    n, k = ratings.shape[:2]
    msr, msc, mse = two_way_mean_squares(ratings)
    with np.errstate(divide="ignore", invalid="ignore"):
        icc3 = (msr - mse) / (msr + (k - 1) * mse)
        icc2 = (msr - mse) / (msr + (k - 1) * mse + k * (msc - mse) / n)
        low3, high3 = _icc3_bounds(msr / mse, n, k, alpha)
        low2, high2 = _icc2_bounds(icc2, msr, msc, mse, n, k, alpha)
    return {"icc3_1": icc3, "icc3_1_low": low3, "icc3_1_high": high3,
            "icc2_1": icc2, "icc2_1_low": low2, "icc2_1_high": high2}


def _icc3_bounds(f_ratio: np.ndarray, n: int, k: int, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    df1, df2 = n - 1, (n - 1) * (k - 1)
    from scipy import stats  # 0.5 s of imports, paid only by a run that computes an ICC

    f_low = f_ratio / stats.f.ppf(1 - alpha / 2, df1, df2)
    f_high = f_ratio * stats.f.ppf(1 - alpha / 2, df2, df1)
    return (f_low - 1) / (f_low + k - 1), (f_high - 1) / (f_high + k - 1)


def _icc2_bounds(icc: np.ndarray, msr: np.ndarray, msc: np.ndarray, mse: np.ndarray, n: int, k: int,
                 alpha: float) -> tuple[np.ndarray, np.ndarray]:
    a = k * icc / (n * (1 - icc))
    b = 1 + k * icc * (n - 1) / (n * (1 - icc))
    # Satterthwaite's approximate denominator degrees of freedom (McGraw & Wong 1996, table 7, case 2A)
    df = (a * msc + b * mse) ** 2 / ((a * msc) ** 2 / (k - 1) + (b * mse) ** 2 / ((n - 1) * (k - 1)))
    from scipy import stats

    f_star = stats.f.ppf(1 - alpha / 2, n - 1, df)
    f_star_inv = stats.f.ppf(1 - alpha / 2, df, n - 1)
    low = n * (msr - f_star * mse) / (f_star * (k * msc + (k * n - k - n) * mse) + n * msr)
    high = n * (f_star_inv * msr - mse) / (k * msc + (k * n - k - n) * mse + n * f_star_inv * msr)
    return low, high


def feature_icc(first: np.ndarray, second: np.ndarray, names: list[str], alpha: float = 0.05) -> pd.DataFrame:
    """ICC table (one row per feature, columns ICC_COLUMNS) from two readers' (n ROIs, features) matrices."""
    first, second = np.asarray(first, dtype=float), np.asarray(second, dtype=float)
    if first.shape != second.shape or first.shape[1] != len(names):
        raise ValueError(f"reader matrices {first.shape} and {second.shape} do not match {len(names)} features")
    import pandas as pd

    values = icc_table(np.stack([first, second], axis=1), alpha) if len(first) >= 2 else {}
    frame = pd.DataFrame({"feature": names})
    for column in ICC_COLUMNS[1:-1]:
        frame[column] = values.get(column, np.full(len(names), np.nan))
    frame["n"] = len(first)
    return frame
