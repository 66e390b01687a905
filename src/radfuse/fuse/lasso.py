"""LASSO feature selection: L1 logistic regression (multinomial for > 2 classes), lambda by patient-grouped CV."""

from __future__ import annotations

import warnings

import numpy as np
from scipy.special import expit, softmax
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
        path = _Path(self._model(), X, y, self.classes_)
        fits = [path.step(lam) for lam in self.lambdas_]
        self.coef_path_ = np.stack([coef for coef, _, _ in fits])
        self.intercept_path_ = np.stack([intercept for _, intercept, _ in fits])
        best = int(np.flatnonzero(self.lambdas_ == self.lambda_)[0])
        self.coef_, self.intercept_ = self.coef_path_[best], self.intercept_path_[best]
        self.n_iter_ = fits[best][2]
        self.support_ = self._select(X, y, self.coef_)
        return self

    def _lambda_grid(self, X: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Log grid from the smallest lambda that zeroes every coefficient (closed form at beta = 0) downwards."""
        lambda_max = max(self._null_gradient(X, y).max(), 1e-12)
        return np.geomspace(lambda_max, lambda_max * self.lambda_ratio, self.n_lambdas)

    def _null_gradient(self, X: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Per feature, the largest |gradient| of the mean log loss at beta = 0 (intercepts fitted)."""
        onehot = (y[:, None] == self.classes_[None, :]).astype(float)
        return np.abs(X.T @ (onehot - onehot.mean(axis=0)) / len(X)).max(axis=1)

    def _model(self) -> LogisticRegression:
        if len(self.classes_) == 2:
            # liblinear is ~40x faster than saga when features outnumber rows; it penalises the intercept like a
            # feature, so a large intercept_scaling makes that penalty negligible (lambda_max stays exact)
            return LogisticRegression(l1_ratio=1.0, solver="liblinear", intercept_scaling=100.0,
                                      max_iter=self.max_iter, tol=self.tol, random_state=self.random_state)
        return LogisticRegression(l1_ratio=1.0, solver="saga", max_iter=self.max_iter, tol=self.tol,
                                  random_state=self.random_state, warm_start=True)

    def _cv_loss(self, X: np.ndarray, y: np.ndarray, groups: np.ndarray) -> np.ndarray:
        """Held-out log loss, fold x lambda. All folds walk the path together and stop `patience` lambdas after
        the mean loss last improved (glmnet-style early stop: the weak-penalty end is the slow, overfit one)."""
        n_splits = min(self.n_splits, int(np.bincount(np.unique(y, return_inverse=True)[1]).min()))
        if n_splits < 2:
            raise ValueError("LassoSelector: every class needs at least 2 rows for cross-validation")
        cv = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=self.random_state)
        folds = list(cv.split(X, y, groups))
        paths = [_Path(self._model(), X[train], y[train], self.classes_) for train, _ in folds]
        columns: list[list[float]] = []
        for lam in self.lambdas_:
            columns.append([self._held_out_loss(path, lam, X[test], y[test]) for path, (_, test) in zip(paths, folds)])
            means = np.mean(columns, axis=1)
            if self.patience is not None and len(means) - 1 - int(np.argmin(means)) >= self.patience:
                break
        return np.asarray(columns).T

    def _held_out_loss(self, path: "_Path", lam: float, X_test: np.ndarray, y_test: np.ndarray) -> float:
        coef, intercept, _ = path.step(lam)
        return log_loss(y_test, _proba(X_test, coef, intercept), labels=self.classes_)

    def _select(self, X: np.ndarray, y: np.ndarray, coef: np.ndarray) -> np.ndarray:
        strength = np.abs(coef).max(axis=0)
        support = strength > 0
        if not support.any():
            support[int(np.argmax(self._null_gradient(X, y)))] = True  # the feature that enters the path first
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


class _Path:
    """Walks one L1-logistic regularisation path (strongest penalty first), warm-started and screened by the
    sequential strong rule (Tibshirani et al. 2012): each lambda is fitted on the features that can enter, then
    the KKT conditions of the full problem are checked on all others and violators are added and refitted, so
    the solution is that of the full problem while the solver only sees the few candidate features."""

    def __init__(self, model: LogisticRegression, X: np.ndarray, y: np.ndarray, classes: np.ndarray):
        self.model, self.X, self.classes = model, X, classes
        self.target = (y[:, None] == classes[None, :]).astype(float)
        if len(classes) == 2:
            self.target = self.target[:, 1:]  # binary: one coefficient row, for classes[1]
        self.y = y
        self.coef = np.zeros((self.target.shape[1], X.shape[1]))
        self.intercept = np.zeros(self.target.shape[1])
        self.previous: float | None = None

    def step(self, lam: float) -> tuple[np.ndarray, np.ndarray, int]:
        grad = np.abs(self._gradient()).max(axis=0)
        previous = lam if self.previous is None else self.previous
        candidates = (grad >= 2 * lam - previous) | (np.abs(self.coef).max(axis=0) > 0)
        candidates[int(np.argmax(grad))] = True
        while True:
            n_iter = self._fit_subset(np.flatnonzero(candidates), lam)
            violators = ~candidates & (np.abs(self._gradient()).max(axis=0) > lam * 1.01)  # 1 %: solver tolerance
            if not violators.any():
                break
            candidates |= violators
        self.previous = lam
        return self.coef.copy(), self.intercept.copy(), n_iter

    def _fit_subset(self, columns: np.ndarray, lam: float) -> int:
        model = self.model.set_params(C=1.0 / (lam * len(self.y)))
        if model.warm_start:  # saga: start from the previous lambda's solution restricted to these columns
            model.coef_, model.intercept_ = self.coef[:, columns].copy(), self.intercept.copy()
        with warnings.catch_warnings():
            # the weakest penalties of the grid may not converge within max_iter; they are rarely chosen
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(self.X[:, columns], self.y)
        self.coef = np.zeros_like(self.coef)
        self.coef[:, columns] = model.coef_
        self.intercept = np.asarray(model.intercept_, dtype=float).reshape(self.intercept.shape)
        return int(np.max(model.n_iter_))

    def _gradient(self) -> np.ndarray:
        """Gradient of the mean log loss w.r.t. the coefficients: (P - Y)^T X / n."""
        return (_proba(self.X, self.coef, self.intercept, full=False) - self.target).T @ self.X / len(self.y)


def _proba(X: np.ndarray, coef: np.ndarray, intercept: np.ndarray, full: bool = True) -> np.ndarray:
    """Class probabilities of an L1-logistic fit: sigmoid for one coefficient row (binary), softmax otherwise.
    With full=False the binary case returns only P(classes[1])."""
    scores = X @ coef.T + intercept
    if coef.shape[0] == 1:
        positive = expit(scores)
        return np.hstack([1 - positive, positive]) if full else positive
    return softmax(scores, axis=1)


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
