"""The per-case rad-score (Liu 2025's "DTL_Radscore") of a fitted fusion pipeline.

`rad_score(pipeline, X)` is, for every row of X:
- when the pipeline has a LASSO step after fusion (`final.lasso`, a LassoSelector named "lasso"): the linear
  predictor of that step's L1-logistic fit at its CV-chosen lambda, on the step's own (fused, z-scored) input,
  i.e. `Z @ coef_.T + intercept_` with the LASSO-selected features' coefficients (the others are 0). Binary: one
  value, the log-odds of the second class as the LASSO sees it; multi-class: one value per class, the
  multinomial fit's linear predictor of that class (softmax of the row gives the LASSO's own probabilities);
- otherwise (e.g. `final=scale`): the classifier's log-odds from its probabilities p: binary
  log(p_1 / p_0), for a logistic regression exactly its `decision_function`; multi-class, per class k the
  one-vs-rest log(p_k / (1 - p_k)). Probabilities are clipped to [1e-12, 1 - 1e-12] (a tree's 0 and 1).
The columns are `radscore__<class>`: the second class for binary, every class for multi-class.
"""

from __future__ import annotations

import numpy as np
from sklearn.pipeline import Pipeline

from radfuse.artifacts import RADSCORE_PREFIX
from radfuse.fuse.lasso import LassoSelector

FINAL_LASSO = "lasso"
EPS = 1e-12


def radscore_columns(classes: list[str]) -> list[str]:
    """`radscore__<class>`: the second class only for two classes (one log-odds), every class otherwise."""
    return [f"{RADSCORE_PREFIX}{c}" for c in (classes[1:] if len(classes) == 2 else classes)]


def radscore_source(pipeline: Pipeline) -> str:
    """"lasso" when the rad-score is the final LASSO's linear predictor, "classifier" for the log-odds."""
    return "lasso" if isinstance(pipeline.named_steps.get(FINAL_LASSO), LassoSelector) else "classifier"


def rad_score(pipeline: Pipeline, X, n_classes: int, proba: np.ndarray | None = None) -> np.ndarray:
    """(n, 1) for two classes, (n, n_classes) otherwise: see the module docstring. `proba`: the pipeline's class
    probabilities of X in the configured class order, when already computed (the classifier case uses them)."""
    if radscore_source(pipeline) == "lasso":
        position = list(pipeline.named_steps).index(FINAL_LASSO)
        selector: LassoSelector = pipeline.named_steps[FINAL_LASSO]
        score = selector.rad_score(pipeline[:position].transform(X))
        return score.reshape(len(score), -1)
    proba = np.clip(pipeline.predict_proba(X) if proba is None else proba, EPS, 1 - EPS)
    if n_classes == 2:
        return np.log(proba[:, 1] / proba[:, 0])[:, None]
    return np.log(proba / (1 - proba))
