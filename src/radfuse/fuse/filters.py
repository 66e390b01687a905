"""Unsupervised feature filters: information (constant columns), reliability (ICC) and redundancy (greedy
correlation pruning)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import rankdata
from sklearn.base import BaseEstimator
from sklearn.feature_selection import SelectorMixin
from sklearn.utils.validation import check_is_fitted, validate_data

CORRELATION_METHODS = ("spearman", "pearson")


class ConstantFilter(SelectorMixin, BaseEstimator):
    """Drop features that are constant on the fitting rows (they carry no information; e.g. texture features of
    ROIs left one grey level). Fitted inside each CV fold like every other step, so the training rows decide."""

    def __init__(self, rtol: float = 1e-12):
        self.rtol = rtol

    def fit(self, X, y=None) -> "ConstantFilter":
        X = validate_data(self, X, dtype=float, ensure_all_finite="allow-nan")
        self.support_ = constant_columns(X, self.rtol) == 0
        if not self.support_.any():
            raise ValueError(f"every one of the {X.shape[1]} features is constant on the training rows: check the "
                             "feature table (extract's grey-level summary, failures.csv)")
        return self

    def _get_support_mask(self) -> np.ndarray:
        check_is_fitted(self, "support_")
        return self.support_


def constant_columns(X: np.ndarray, rtol: float = 1e-12) -> np.ndarray:
    """1 for each column whose spread (max - min, NaN ignored) is within rtol of its magnitude, else 0."""
    X = np.asarray(X, dtype=float)
    if not len(X):
        return np.zeros(X.shape[1], dtype=int)
    with np.errstate(invalid="ignore"):
        spread = np.nanmax(X, axis=0) - np.nanmin(X, axis=0)
        scale = np.maximum(1.0, np.nanmax(np.abs(X), axis=0))
    return (~(spread > rtol * scale)).astype(int)


class ICCFilter(SelectorMixin, BaseEstimator):
    """Keep features whose inter-reader ICC is >= `threshold`.

    `icc_table`: a DataFrame (or the path of extract's icc.parquet) with a `feature` column and the ICC in
    `icc_column`, or a list of them (e.g. inter- and intra-observer, Wang 2025): a feature must reach the threshold
    in every table. Each table has a `feature` column and the ICC in
    `icc_column` (default `icc`; e.g. `icc3_1` for ICC(3,1) where the table carries several types). A feature
    matches a table row by its full name or by its name without the block prefix (`rad__glcm_X` ~ `glcm_X`).
    Features absent from the table are dropped unless `keep_missing` (the conservative choice: unproven
    reliability is no reliability).
    """

    def __init__(self, icc_table: pd.DataFrame | str | Path | None = None, threshold: float = 0.8,
                 keep_missing: bool = False, icc_column: str = "icc"):
        self.icc_table = icc_table
        self.icc_column = icc_column
        self.threshold = threshold
        self.keep_missing = keep_missing

    def fit(self, X, y=None) -> "ICCFilter":
        validate_data(self, X)
        names = getattr(self, "feature_names_in_", np.array([f"x{i}" for i in range(self.n_features_in_)]))
        single = self.icc_table is None or isinstance(self.icc_table, (str, Path, pd.DataFrame))
        tables = [self.icc_table] if single else list(self.icc_table)
        lookups = [_icc_lookup(t, self.icc_column) for t in tables]
        icc = lookups[0] if lookups else {}
        per_table = np.array([[lookup.get(n, lookup.get(str(n).split("__", 1)[-1], np.nan)) for n in names]
                              for lookup in lookups], dtype=float).reshape(len(lookups), len(names))
        values = per_table.min(axis=0) if len(lookups) else np.full(len(names), np.nan)  # NaN anywhere -> NaN
        self.icc_ = values
        self.support_ = np.where(np.isnan(values), self.keep_missing, values >= self.threshold)
        if not all(lookups) and not self.keep_missing:
            raise ValueError("the ICC table is empty (no mask2 in the manifest?): drop the ICC step "
                             "(blocks.rad.icc=null) or give extract a second reader's masks")
        if not self.support_.any():
            raise ValueError(f"ICCFilter kept no feature at threshold {self.threshold} ({np.isfinite(values).sum()} "
                             "of the features have an ICC): check that icc.parquet belongs to this feature table, "
                             "or lower the threshold")
        return self

    def _get_support_mask(self) -> np.ndarray:
        check_is_fitted(self, "support_")
        return self.support_


def _icc_lookup(table: pd.DataFrame | str | Path | None, column: str) -> dict[str, float]:
    if table is None:
        return {}
    if not isinstance(table, pd.DataFrame):
        path = Path(table)
        if not path.is_file():
            raise FileNotFoundError(f"ICC table {path} does not exist: run extract with mask2 in the manifest, "
                                    "or drop the ICC step (block.icc=null)")
        table = pd.read_parquet(path)
    missing = {"feature", column} - set(table.columns)
    if missing:
        raise ValueError(f"ICC table lacks column(s) {sorted(missing)} (it has {list(table.columns)}): set the ICC "
                         "filter's icc_column to one of its ICC columns, e.g. blocks.rad.icc.icc_column=icc3_1")
    full = dict(zip(table["feature"].astype(str), table[column].astype(float)))
    # a feature is also found by its name after the block prefix (extract writes rad__<feature>; a block of another
    # name, e.g. a second radiomics table as rad_b, has rad_b__<feature>); a full name wins over a shortened one
    return {**{name.split("__", 1)[-1]: value for name, value in full.items()}, **full}


class CorrelationFilter(SelectorMixin, BaseEstimator):
    """Greedy redundancy removal: while some pair has |corr| > threshold, drop from the most correlated pair the
    feature with the higher mean |corr| to all other remaining features (ties: the later column)."""

    def __init__(self, method: str = "spearman", threshold: float = 0.9):
        self.method = method
        self.threshold = threshold

    def fit(self, X, y=None) -> "CorrelationFilter":
        X = validate_data(self, X, dtype=float)
        if self.method not in CORRELATION_METHODS:
            raise ValueError(f"method={self.method!r}; choose one of {CORRELATION_METHODS}")
        self.support_ = greedy_decorrelate(abs_correlation(X, self.method), self.threshold)
        return self

    def _get_support_mask(self) -> np.ndarray:
        check_is_fitted(self, "support_")
        return self.support_


def abs_correlation(X: np.ndarray, method: str) -> np.ndarray:
    """|correlation| between columns, constant columns correlating 0 with everything (not NaN)."""
    if method == "spearman":
        X = rankdata(X, axis=0)
    centred = X - X.mean(axis=0)
    norms = np.sqrt((centred**2).sum(axis=0))
    norms[norms == 0] = np.inf
    unit = centred / norms
    return np.abs(unit.T @ unit)


def greedy_decorrelate(abs_corr: np.ndarray, threshold: float) -> np.ndarray:
    """Support mask after greedy pruning of an |corr| matrix (see CorrelationFilter)."""
    work = abs_corr.astype(np.float64, copy=True)
    np.fill_diagonal(work, 0.0)
    sums = work.sum(axis=0)  # running sum of |corr| to the remaining features
    keep = np.ones(len(work), dtype=bool)
    while keep.sum() > 1:
        flat = int(np.argmax(work))
        i, j = divmod(flat, len(work))
        if work[i, j] <= threshold:
            break
        drop = i if sums[i] > sums[j] else j if sums[j] > sums[i] else max(i, j)
        sums -= work[:, drop]
        work[drop, :] = 0.0
        work[:, drop] = 0.0
        keep[drop] = False
    return keep
