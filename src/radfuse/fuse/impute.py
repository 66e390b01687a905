"""Fill the non-finite feature values of held-out cases with the training median, as a fitted pipeline step.

Which feature columns exist is decided on the training cohort only (`design.design_frame` drops a column with a
NaN/inf in a training row, e.g. a radiomics feature undefined for a tiny ROI). A held-out case with a non-finite
value in a kept column is still scored: this step, first in every image block, fills the value with the median of
the rows it was fitted on (the training folds inside CV, the training cohort for the final model) and the design
step names the cases so filled. Non-feature columns (`meta__*`, which ComBat consumes) pass through untouched.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, OneToOneFeatureMixin, TransformerMixin
from sklearn.utils.validation import check_is_fitted

META_PREFIX = "meta__"


class TrainingMedianImputer(OneToOneFeatureMixin, TransformerMixin, BaseEstimator):
    """Replace NaN/inf in the feature columns of a DataFrame by the medians of the fitting rows."""

    def fit(self, X: pd.DataFrame, y=None) -> "TrainingMedianImputer":
        frame = _frame(X)
        self.feature_names_in_ = np.asarray(frame.columns, dtype=object)
        self.n_features_in_ = frame.shape[1]
        features = [c for c in frame.columns if not str(c).startswith(META_PREFIX)]
        values = frame[features].apply(pd.to_numeric, errors="coerce").replace([np.inf, -np.inf], np.nan)
        self.medians_ = values.median(axis=0).fillna(0.0)
        return self

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        check_is_fitted(self, "medians_")
        frame = _frame(X).copy()
        for column, median in self.medians_.items():
            values = pd.to_numeric(frame[column], errors="coerce")
            frame[column] = values.where(np.isfinite(values), median)
        return frame


def _frame(X) -> pd.DataFrame:
    if not isinstance(X, pd.DataFrame):
        raise TypeError("TrainingMedianImputer needs a DataFrame (the fusion pipeline passes named columns)")
    return X
