"""Model selection: grid search over the WHOLE fusion pipeline on patient-grouped stratified folds.

All fits run under scikit-learn metadata routing so that the patient `groups` reach both the fold splitter and
the LASSO steps' inner CV, always restricted to the current training fold. A pipeline with no step that asks for
`groups` (no LASSO left, e.g. `final=scale` on a block without one) is fitted without them: routing refuses
metadata that nothing consumes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn import config_context
from sklearn.base import BaseEstimator, clone
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GridSearchCV, StratifiedGroupKFold, cross_validate
from sklearn.utils import _safe_indexing
from sklearn.utils.metadata_routing import get_routing_for_object
from sklearn.utils.parallel import Parallel, delayed

from radfuse.fuse.radscore import rad_score

Folds = list[tuple[np.ndarray, np.ndarray]]
SCORING = "roc_auc_ovr"  # macro one-vs-rest AUC (= plain AUC for two classes)


@dataclass
class ClassifierSpec:
    """A zoo entry: the (class-weighted) estimator and its grid, keys relative to the estimator."""

    name: str
    estimator: BaseEstimator
    grid: dict[str, list[Any]] = field(default_factory=dict)


@dataclass
class SearchOutcome:
    name: str
    search: GridSearchCV          # refit=True: best_estimator_ is fitted on all training rows
    fold_aucs: np.ndarray         # best candidate's AUC on each CV fold
    oof_proba: np.ndarray         # out-of-fold class probabilities of the best candidate
    nested_fold_aucs: np.ndarray | None = None
    oof_radscore: np.ndarray | None = None  # out-of-fold rad-score of the best candidate (radfuse.fuse.radscore)

    @property
    def cv_auc(self) -> float:
        return float(self.search.best_score_)


def patient_folds(y: np.ndarray, groups: np.ndarray, n_splits: int = 5, seed: int = 0) -> Folds:
    """Stratified folds that never split a patient; made once and shared by every feature set and classifier."""
    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    return [(train, test) for train, test in splitter.split(np.zeros(len(y)), y, groups)]


def search_classifier(pipeline: BaseEstimator, spec: ClassifierSpec, X, y: np.ndarray, groups: np.ndarray,
                      folds: Folds, n_jobs: int = 1, nested_splits: int | None = None,
                      seed: int = 0) -> SearchOutcome:
    """Grid search (refit on all rows), out-of-fold probabilities of the winner and, optionally, nested CV."""
    grid = {f"classifier__{k}": list(v) for k, v in spec.grid.items()}
    search = GridSearchCV(pipeline, grid or [{}], cv=folds, scoring=SCORING, n_jobs=n_jobs, refit=True,
                          error_score="raise")
    with config_context(enable_metadata_routing=True):
        params = group_params(pipeline, groups)
        search.fit(X, y, **params)
        best = clone(pipeline).set_params(**search.best_params_)
        oof, oof_radscore = out_of_fold(best, X, y, folds, params, n_jobs)
        nested = _nested_aucs(pipeline, grid, X, y, groups, folds, nested_splits, seed, n_jobs)
    i = search.best_index_
    fold_aucs = np.array([search.cv_results_[f"split{k}_test_score"][i] for k in range(len(folds))])
    return SearchOutcome(spec.name, search, fold_aucs, oof, oof_radscore=oof_radscore, nested_fold_aucs=nested)


def out_of_fold(estimator: BaseEstimator, X, y: np.ndarray, folds: Folds, params: dict[str, np.ndarray],
                n_jobs: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Class probabilities and rad-scores of every row from the model fitted on the other folds (one fit per
    fold, as cross_val_predict; `params` such as groups restricted to the training fold)."""
    n_classes = len(np.unique(y))
    parts = Parallel(n_jobs=n_jobs)(delayed(_fold_scores)(estimator, X, y, train, test, params, n_classes)
                                    for train, test in folds)
    proba, radscore = np.zeros((len(y), n_classes)), None
    for (_, test), (fold_proba, fold_score) in zip(folds, parts):
        proba[test] = fold_proba
        radscore = np.zeros((len(y), fold_score.shape[1])) if radscore is None else radscore
        radscore[test] = fold_score
    return proba, radscore


def _fold_scores(estimator, X, y, train, test, params, n_classes) -> tuple[np.ndarray, np.ndarray]:
    with config_context(enable_metadata_routing=True):
        fitted = clone(estimator).fit(_safe_indexing(X, train), y[train], **{k: v[train] for k, v in params.items()})
    X_test = _safe_indexing(X, test)
    proba = np.zeros((len(test), n_classes))
    proba[:, fitted.classes_] = fitted.predict_proba(X_test)  # a class absent from the training fold stays 0
    return proba, rad_score(fitted, X_test, n_classes, proba)


def group_params(estimator: BaseEstimator, groups: np.ndarray) -> dict[str, np.ndarray]:
    """`{"groups": groups}` when metadata routing can deliver `groups` from `estimator.fit` to some step, else {}.

    This is the check `fit` itself makes (`validate_metadata`); `MetadataRouter.consumes` would miss a transformer
    that is a router (e.g. RFECV with a group splitter), which a Pipeline calls through `fit_transform`."""
    with config_context(enable_metadata_routing=True):
        try:
            get_routing_for_object(estimator).validate_metadata(method="fit", params={"groups": groups})
        except TypeError:  # "got unexpected argument(s) {'groups'}, which are not routed to any object"
            return {}
    return {"groups": groups}


def _nested_aucs(pipeline, grid, X, y, groups, folds, inner_splits, seed, n_jobs) -> np.ndarray | None:
    """Outer folds = the shared folds; the whole grid search is repeated inside each outer training fold."""
    if not inner_splits:
        return None
    inner = StratifiedGroupKFold(n_splits=inner_splits, shuffle=True, random_state=seed + 1)
    search = GridSearchCV(pipeline, grid or [{}], cv=inner, scoring=SCORING, n_jobs=1, refit=True)
    scores = cross_validate(search, X, y, cv=folds, scoring=SCORING, n_jobs=n_jobs, params={"groups": groups})
    return scores["test_score"]


def macro_auc(labels: np.ndarray, proba: np.ndarray, n_classes: int) -> float:
    """Macro one-vs-rest AUC of class-index labels; NaN when a class is absent (undefined, not 0.5)."""
    present = np.unique(labels)
    if len(present) < n_classes:
        return float("nan")
    if n_classes == 2:
        return float(roc_auc_score(labels, proba[:, 1]))
    return float(roc_auc_score(labels, proba, multi_class="ovr", average="macro", labels=np.arange(n_classes)))


def mean_ci(values: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """t-interval of the mean of fold scores (folds are not independent: a rough, optimistic-width interval)."""
    from scipy import stats

    values = np.asarray(values, dtype=float)
    half = stats.t.ppf(0.5 + level / 2, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values))
    return float(values.mean() - half), float(values.mean() + half)
