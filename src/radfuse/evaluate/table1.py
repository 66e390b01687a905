"""Baseline characteristics (Table 1): one row per variable (and level), one column per group, a p-value.

Continuous variables: Shapiro-Wilk in every group (p > 0.05 in all) -> mean (SD) with t-test / ANOVA,
otherwise median [IQR] with Mann-Whitney / Kruskal-Wallis. Categorical variables: chi-square when every
expected count is >= 5, otherwise Fisher's exact test (Freeman-Halton via scipy for tables beyond 2 x 2).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

NORMALITY_ALPHA = 0.05
MAX_CATEGORICAL_LEVELS = 5


def is_categorical(series: pd.Series) -> bool:
    """Non-numeric, boolean, or numeric with few distinct values (e.g. 0/1 sex codes)."""
    if not pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series):
        return True
    return series.dropna().nunique() <= 2


def _is_normal(samples: list[np.ndarray]) -> bool:
    for s in samples:
        if len(s) < 3:
            return False
        if np.ptp(s) == 0 or stats.shapiro(s).pvalue <= NORMALITY_ALPHA:
            return False
    return True


def decimals_of(values: np.ndarray, most: int = 2) -> int:
    """The data's own precision: the fewest decimals (0 to `most`) that write every value exactly."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    for d in range(most + 1):
        if np.allclose(values, np.round(values, d), rtol=0, atol=1e-9):
            return d
    return most


def continuous_row(samples: list[np.ndarray]) -> tuple[list[str], str, float]:
    """(cell per group, test name, p-value); summaries at the data's own precision (integers stay integers)."""
    normal = _is_normal(samples)
    d = decimals_of(np.concatenate(samples)) if samples else 2
    if normal:
        cells = [f"{np.mean(s):.{d}f} ({np.std(s, ddof=1):.{d}f})" for s in samples]
        test = "t-test" if len(samples) == 2 else "ANOVA"
        p = stats.ttest_ind(*samples).pvalue if len(samples) == 2 else stats.f_oneway(*samples).pvalue
    else:
        cells = [f"{np.median(s):.{d}f} [{np.percentile(s, 25):.{d}f}, {np.percentile(s, 75):.{d}f}]"
                 for s in samples]
        test = "Mann-Whitney U" if len(samples) == 2 else "Kruskal-Wallis"
        p = (stats.mannwhitneyu(*samples, alternative="two-sided").pvalue if len(samples) == 2
             else stats.kruskal(*samples).pvalue)
    return cells, test, float(p)


def categorical_test(table: np.ndarray) -> tuple[str, float]:
    """Chi-square (no continuity correction beyond scipy's 2x2 default) or Fisher when counts are small."""
    table = table[table.sum(axis=1) > 0][:, table.sum(axis=0) > 0]
    if table.shape[0] < 2 or table.shape[1] < 2:
        return "n/a", float("nan")
    expected = stats.contingency.expected_freq(table)
    if (expected >= 5).all():
        return "chi-square", float(stats.chi2_contingency(table).pvalue)
    if table.shape == (2, 2):
        return "Fisher exact", float(stats.fisher_exact(table).pvalue)
    method = stats.MonteCarloMethod(n_resamples=9999, rng=np.random.default_rng(0))
    return "Fisher exact (Monte Carlo)", float(stats.fisher_exact(table, method=method).pvalue)


def baseline_table(frame: pd.DataFrame, variables: list[str], group: str,
                   order: tuple[str, ...] = ()) -> pd.DataFrame:
    """Table 1 of `variables` across the levels of `group` (rows with a missing group are dropped); levels named
    in `order` (e.g. the study's cohorts) come first, in that order, the others sorted."""
    frame = frame[frame[group].notna()]
    levels = sorted(frame[group].astype(str).unique(),
                    key=lambda lv: (order.index(lv) if lv in order else len(order), lv))
    grouped = {lv: frame[frame[group].astype(str) == lv] for lv in levels}
    header = {"variable": "n", "level": "", **{lv: str(len(g)) for lv, g in grouped.items()}, "test": "",
              "p_value": np.nan}
    rows = [header]
    for var in variables:
        if is_categorical(frame[var]):
            rows.extend(_categorical_rows(frame, var, group, levels))
        else:
            samples = [g[var].dropna().to_numpy(dtype=float) for g in grouped.values()]
            cells, test, p = continuous_row(samples) if all(len(s) for s in samples) else (["-"] * len(levels),
                                                                                         "n/a", np.nan)
            rows.append({"variable": var, "level": "", **dict(zip(levels, cells)), "test": test, "p_value": p})
    return pd.DataFrame(rows, columns=["variable", "level", *levels, "test", "p_value"])


def _categorical_rows(frame: pd.DataFrame, var: str, group: str, levels: list[str]) -> list[dict]:
    values = frame[var].astype(str).where(frame[var].notna())
    counts = pd.crosstab(values, frame[group].astype(str)).reindex(columns=levels, fill_value=0)
    test, p = categorical_test(counts.to_numpy())
    rows = [{"variable": var, "level": "", **{lv: "" for lv in levels}, "test": test, "p_value": p}]
    totals = counts.sum(axis=0).replace(0, 1)
    for value, row in counts.iterrows():
        cells = {lv: f"{row[lv]} ({100 * row[lv] / totals[lv]:.1f}%)" for lv in levels}
        rows.append({"variable": "", "level": str(value), **cells, "test": "", "p_value": np.nan})
    return rows


def significant_variables(table: pd.DataFrame, alpha: float = 0.05) -> list[str]:
    """Variables whose baseline p-value is below alpha."""
    hits = table[(table["variable"] != "n") & (table["variable"] != "") & (table["p_value"] < alpha)]
    return list(hits["variable"])
