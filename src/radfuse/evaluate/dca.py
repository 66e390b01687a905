"""Decision-curve analysis (Vickers & Elkin 2006): net benefit of acting on a model against a threshold.

Net benefit at threshold probability pt = TP/n - FP/n * pt / (1 - pt): true positives are credited, false
positives charged at the odds of pt. Treat-all has net benefit prevalence - (1 - prevalence) * pt / (1 - pt);
treat-none is 0.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

DEFAULT_THRESHOLDS = np.round(np.arange(0.01, 1.0, 0.01), 2)


def net_benefit(y_true, probs, thresholds=DEFAULT_THRESHOLDS) -> np.ndarray:
    """Net benefit of treating cases with prob >= threshold, for every threshold."""
    y = np.asarray(y_true, dtype=bool)
    p = np.asarray(probs, dtype=float)
    t = np.asarray(thresholds, dtype=float)
    treated = p[None, :] >= t[:, None]
    tp = (treated & y[None, :]).sum(axis=1)
    fp = (treated & ~y[None, :]).sum(axis=1)
    return tp / len(y) - fp / len(y) * t / (1 - t)


def treat_all(y_true, thresholds=DEFAULT_THRESHOLDS) -> np.ndarray:
    prevalence = float(np.mean(np.asarray(y_true, dtype=bool)))
    t = np.asarray(thresholds, dtype=float)
    return prevalence - (1 - prevalence) * t / (1 - t)


def decision_curves(labels, probs: np.ndarray, classes: list[str], thresholds=DEFAULT_THRESHOLDS) -> pd.DataFrame:
    """Long table (class, threshold, model, treat_all, treat_none) of one-vs-rest curves; binary = last class."""
    labels = np.asarray(labels).astype(str)
    targets = classes[-1:] if len(classes) == 2 else classes
    frames = []
    for c in targets:
        k = classes.index(c)
        y = labels == c
        frames.append(pd.DataFrame({
            "class": c, "threshold": thresholds, "net_benefit": net_benefit(y, probs[:, k], thresholds),
            "treat_all": treat_all(y, thresholds), "treat_none": 0.0,
        }))
    return pd.concat(frames, ignore_index=True)
