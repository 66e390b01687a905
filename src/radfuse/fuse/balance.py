"""Class balancing for estimators without a `class_weight` parameter, computed inside each training fold.

Estimators that take `class_weight` get `class_weight="balanced"` directly in their config (LR, SVM, DT, RF,
ExtraTrees, LightGBM). `ClassBalanced` covers the others: `strategy="sample_weight"` passes balanced per-row
weights n / (k * n_class) to `fit(sample_weight=...)` (XGBoost, MLP); `strategy="resample"` randomly
oversamples every class to the size of the largest (KNN, whose fit takes no weights). Because the weights or
the resample are computed from the `y` the wrapper is fitted on, they always come from the training fold only.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, MetaEstimatorMixin, clone
from sklearn.utils.class_weight import compute_sample_weight
from sklearn.utils.validation import check_is_fitted, validate_data

BALANCE_STRATEGIES = ("sample_weight", "resample")


class ClassBalanced(MetaEstimatorMixin, ClassifierMixin, BaseEstimator):
    """Fit `estimator` with balanced sample weights or on a class-balanced oversample of the training rows."""

    def __init__(self, estimator=None, strategy: str = "sample_weight", random_state: int = 0):
        self.estimator = estimator
        self.strategy = strategy
        self.random_state = random_state

    def fit(self, X, y) -> "ClassBalanced":
        X, y = validate_data(self, X, y)
        if self.strategy not in BALANCE_STRATEGIES:
            raise ValueError(f"strategy={self.strategy!r}; choose one of {BALANCE_STRATEGIES}")
        self.estimator_ = clone(self.estimator)
        if self.strategy == "sample_weight":
            self.sample_weight_ = compute_sample_weight("balanced", y)
            self.estimator_.fit(X, y, sample_weight=self.sample_weight_)
        else:
            rows = balanced_oversample(y, self.random_state)
            self.estimator_.fit(X[rows], y[rows])
        self.classes_ = self.estimator_.classes_
        return self

    def predict(self, X) -> np.ndarray:
        check_is_fitted(self, "estimator_")
        return self.estimator_.predict(validate_data(self, X, reset=False))

    def predict_proba(self, X) -> np.ndarray:
        check_is_fitted(self, "estimator_")
        return self.estimator_.predict_proba(validate_data(self, X, reset=False))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = False
        return tags


def balanced_oversample(y: np.ndarray, random_state: int) -> np.ndarray:
    """Row indices: every row once, plus random repeats of each class up to the largest class's size."""
    rng = np.random.default_rng(random_state)
    classes, counts = np.unique(y, return_counts=True)
    extra = [rng.choice(np.flatnonzero(y == c), size=counts.max() - n, replace=True) for c, n in zip(classes, counts)]
    return np.sort(np.concatenate([np.arange(len(y)), *extra]))
