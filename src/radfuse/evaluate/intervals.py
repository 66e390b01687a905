"""Intervals a reader can trust at small n: Wilson score intervals for proportions, and no interval at all below a
stated minimum number of cases (an interval of 3 cases says nothing and `0.000 (0.000-0.000)` misleads)."""

from __future__ import annotations

import numpy as np
from scipy import stats

MIN_N_FOR_CI = 10  # fewer cases in a proportion's denominator: no CI shown
MIN_GROUP_FOR_AUC_CI = 5  # fewer positives or negatives behind an AUC: no CI shown
RULE = (f"No interval is shown for a proportion with fewer than {MIN_N_FOR_CI} cases in its denominator, for a "
        f"class's AUC with fewer than {MIN_GROUP_FOR_AUC_CI} positive or negative cases, or for a set-level statistic "
        f"(macro / micro AUC, balanced accuracy, macro F1) of fewer than {MIN_N_FOR_CI} cases ('n < ...: no CI').")


def wilson(successes: float, n: float, alpha: float = 0.05) -> tuple[float | None, float | None]:
    """Wilson score interval of successes / n (Wilson 1927; Newcombe 1998, method 3); (None, None) when n = 0."""
    if not n:
        return None, None
    z = stats.norm.ppf(1 - alpha / 2)
    p = successes / n
    centre = (p + z**2 / (2 * n)) / (1 + z**2 / n)
    half = z / (1 + z**2 / n) * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2))
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


def format_estimate(estimate, ci, n: int | None = None, digits: int = 3, minimum: int = MIN_N_FOR_CI,
                    unit: str = "") -> str:
    """`0.812 (0.743-0.871)`; the estimate alone with 'n < 10: no CI' when n is below `minimum`, and alone when
    the interval has no width (a degenerate bootstrap)."""
    if estimate is None or (isinstance(estimate, float) and not np.isfinite(estimate)):
        return "n/a"
    head = f"{estimate:.{digits}f}"
    if n is not None and n < minimum:
        return f"{head} (n < {minimum}{unit}: no CI)"
    if ci is None or ci[0] is None or ci[1] is None or f"{ci[0]:.{digits}f}" == f"{ci[1]:.{digits}f}":
        return head
    return f"{head} ({ci[0]:.{digits}f}-{ci[1]:.{digits}f})"
