"""LASSO feature selection: L1 logistic regression (multinomial for > 2 classes), lambda by patient-grouped CV."""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.exceptions import ConvergenceWarning
from sklearn.feature_selection import SelectorMixin
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from radfuse.fuse.filters import abs_correlation


class LassoSelector(SelectorMixin, BaseEstimator):
    """Keep the features with a nonzero L1-logistic coefficient (for any class) at the CV-chosen penalty.

    lambda (= 1 / (C * n_samples), glmnet's scale) is chosen on a log grid of `n_lambdas` values by `n_splits`-fold
    StratifiedGroupKFold, grouped by patient when `groups` are routed to `fit` (metadata routing), minimising the
    held-out log loss (glmnet's deviance); the path stops `patience` lambdas after the loss last improved
    (None: walk the whole grid). Fitted attributes for plotting: `lambdas_`, `cv_loss_` (fold x lambda),
    `lambda_`, `coef_path_` (lambda x class x feature, refit on all rows), `coef_` at `lambda_`.
    `prune_above`: after selection drop, of any two kept features with |Pearson r| above this value, the one with
    the smaller largest-|coef| (Liu 2025 uses 0.5). If the chosen lambda keeps nothing, the single feature
    entering the path first is kept, so downstream steps always get a column.
    """

    def __init__(self, n_splits: int = 10, n_lambdas: int = 12, lambda_ratio: float = 1e-2,
                 patience: int | None = 3, prune_above: float | None = None, max_iter: int = 2000,
                 tol: float = 1e-3, random_state: int = 0):
        self.n_splits = n_splits
        self.n_lambdas = n_lambdas
        self.lambda_ratio = lambda_ratio
        self.patience = patience
        self.prune_above = prune_above
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state

    def fit(self, X, y, groups=None) -> "LassoSelector":
        X, y = validate_data(self, X, y, dtype=float)
        check_classification_targets(y)
        self.classes_ = np.unique(y)
        if len(self.classes_) < 2:
            raise ValueError("y has one class; LassoSelector needs at least 2 classes")
        self.lambdas_ = self._lambda_grid(X, y)
        groups = np.arange(len(y)) if groups is None else np.asarray(groups)
        self.cv_loss_ = self._cv_loss(X, y, groups)
        self.lambdas_ = self.lambdas_[: self.cv_loss_.shape[1]]  # the path stops where the CV stopped
        self.lambda_ = float(self.lambdas_[int(np.argmin(self.cv_loss_.mean(axis=0)))])
        fits = self._fit_path(X, y, self.lambdas_)
        self.coef_path_ = np.stack([f.coef_ for f in fits])
        self.intercept_path_ = np.stack([f.intercept_ for f in fits])
        best = int(np.flatnonzero(self.lambdas_ == self.lambda_)[0])
        self.coef_, self.intercept_ = self.coef_path_[best], self.intercept_path_[best]
        self.n_iter_ = int(np.max(fits[best].n_iter_))
        self.support_ = self._select(X, self.coef_)
        return self

    def _lambda_grid(self, X: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Log grid from the smallest lambda that zeroes every coefficient (closed form at beta = 0) downwards."""
        onehot = (y[:, None] == self.classes_[None, :]).astype(float)
        gradient = X.T @ (onehot - onehot.mean(axis=0)) / len(y)
        lambda_max = max(np.abs(gradient).max(), 1e-12)
        return np.geomspace(lambda_max, lambda_max * self.lambda_ratio, self.n_lambdas)

    def _model(self) -> LogisticRegression:
        if len(self.classes_) == 2:
            # liblinear is ~40x faster than saga when features outnumber rows; it penalises the intercept like a
            # feature, so a large intercept_scaling makes that penalty negligible (lambda_max stays exact)
            return LogisticRegression(l1_ratio=1.0, solver="liblinear", intercept_scaling=100.0,
                                      max_iter=self.max_iter, tol=self.tol, random_state=self.random_state)
        return LogisticRegression(l1_ratio=1.0, solver="saga", max_iter=self.max_iter, tol=self.tol,
                                  random_state=self.random_state, warm_start=True)

    def _fit_path(self, X: np.ndarray, y: np.ndarray, lambdas: np.ndarray) -> list[LogisticRegression]:
        """One fit per lambda, strongest penalty first, warm-started along the path."""
        model, fits = self._model(), []
        with warnings.catch_warnings():
            # the weakest penalties of the grid may not converge within max_iter; they are rarely chosen
            warnings.simplefilter("ignore", ConvergenceWarning)
            for lam in lambdas:
                model.set_params(C=1.0 / (lam * len(y)))
                fits.append(_snapshot(model.fit(X, y)))
        return fits

    def _cv_loss(self, X: np.ndarray, y: np.ndarray, groups: np.ndarray) -> np.ndarray:
        """Held-out log loss, fold x lambda. All folds walk the path together and stop `patience` lambdas after
        the mean loss last improved (glmnet-style early stop: the weak-penalty end is the slow, overfit one)."""
        n_splits = min(self.n_splits, int(np.bincount(np.unique(y, return_inverse=True)[1]).min()))
        if n_splits < 2:
            raise ValueError("LassoSelector: every class needs at least 2 rows for cross-validation")
        cv = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=self.random_state)
        folds = list(cv.split(X, y, groups))
        models = [self._model() for _ in folds]
        columns: list[list[float]] = []
        for lam in self.lambdas_:
            columns.append([self._held_out_loss(m, X, y, train, test, lam) for m, (train, test) in zip(models, folds)])
            means = np.mean(columns, axis=1)
            if self.patience is not None and len(means) - 1 - int(np.argmin(means)) >= self.patience:
                break
        return np.asarray(columns).T

    def _held_out_loss(self, model, X, y, train, test, lam) -> float:
        model.set_params(C=1.0 / (lam * len(train)))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(X[train], y[train])
        return log_loss(y[test], model.predict_proba(X[test]), labels=model.classes_)

    def _select(self, X: np.ndarray, coef: np.ndarray) -> np.ndarray:
        strength = np.abs(coef).max(axis=0)
        support = strength > 0
        if not support.any():
            entered = np.abs(self.coef_path_).max(axis=1) > 0  # lambda x feature
            first = entered.any(axis=1).argmax()
            support[np.abs(self.coef_path_[first]).max(axis=0).argmax()] = True
        if self.prune_above is not None:
            support = _prune_correlated(X, support, strength, self.prune_above)
        return support

    def _get_support_mask(self) -> np.ndarray:
        check_is_fitted(self, "support_")
        return self.support_

    def rad_score(self, X) -> np.ndarray:
        """Linear predictor (rad-score) at `lambda_`: shape (n,) for binary, (n, n_classes) for multi-class."""
        check_is_fitted(self, "coef_")
        X = validate_data(self, X, dtype=float, reset=False)
        score = X @ self.coef_.T + self.intercept_
        return score.ravel() if score.shape[1] == 1 else score


def _snapshot(model: LogisticRegression) -> LogisticRegression:
    """A frozen copy of the fitted state (the warm-started model is refit in place)."""
    copy = LogisticRegression()
    copy.coef_, copy.intercept_, copy.classes_ = model.coef_.copy(), model.intercept_.copy(), model.classes_
    copy.n_iter_ = model.n_iter_.copy()
    return copy


def _prune_correlated(X: np.ndarray, support: np.ndarray, strength: np.ndarray, limit: float) -> np.ndarray:
    """Visit kept features by decreasing |coef|; keep one only if |r| <= limit with all already kept."""
    kept: list[int] = []
    candidates = np.flatnonzero(support)
    corr = abs_correlation(X[:, candidates], "pearson")
    for local in np.argsort(-strength[candidates], kind="stable"):
        if all(corr[local, k] <= limit for k in kept):
            kept.append(local)
    pruned = np.zeros_like(support)
    pruned[candidates[kept]] = True
    return pruned
