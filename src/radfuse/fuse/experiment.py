"""Run the zoo on every feature set with identical folds; collect predictions, CV results, metrics and models."""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import pandas as pd
from joblib import Memory
from sklearn.pipeline import Pipeline

from radfuse.artifacts import PREDICTION_COLUMNS, package_versions, prob_columns
from radfuse.fuse.combat import ComBat
from radfuse.fuse.design import Design
from radfuse.fuse.pipeline import Steps, fusion_pipeline
from radfuse.fuse.radscore import rad_score, radscore_columns
from radfuse.fuse.search import ClassifierSpec, SearchOutcome, macro_auc, mean_ci, patient_folds, search_classifier

log = logging.getLogger(__name__)
TRAIN_COHORT = "train"
EXTERNAL_COHORT = "external"
# The one model-selection rule, used by the console, metrics.json and the report (the grid search's own criterion).
SELECTION_CRITERION = "cv_macro_auc"
SELECTION_RULE = ("Within each feature set, each classifier's hyperparameters and then the winning classifier are "
                  "chosen by the mean macro one-vs-rest AUC over the training cohort's patient-grouped CV folds "
                  "(the grid search's own score; the same folds for every classifier and feature set). The winner's "
                  "figure is the best of many candidates and so optimistic; the held-out cohorts (or nested CV, "
                  "cv.nested_splits) give unbiased estimates. The pooled out-of-fold AUC with its bootstrap CI is "
                  "reported beside it and is not used for selection.")


@dataclass
class FusionSetup:
    """Everything the run needs, as plain objects (the stage builds it from the Hydra config)."""

    classes: list[str]
    blocks: Mapping[str, Steps]               # block name -> preprocessing steps
    feature_sets: Mapping[str, list[str]]     # feature-set name -> block names fused in it
    final: Steps                              # after fusion: e.g. scale, lasso
    classifiers: list[ClassifierSpec]
    n_splits: int = 5
    seed: int = 0
    n_jobs: int = 1
    nested_splits: int | None = None
    cache: bool = True
    fold_of_patient: Mapping[str, int] | None = None  # e.g. splits.json's folds; None = fresh seeded folds


@dataclass
class FusionResult:
    predictions: pd.DataFrame
    cv_results: pd.DataFrame
    metrics: dict[str, Any]
    model: dict[str, Any]
    outcomes: dict[str, dict[str, SearchOutcome]] = field(default_factory=dict)
    fold_of_case: dict[str, int] = field(default_factory=dict)  # training case -> the CV fold it was held out in


def run_fusion(design: Design, setup: FusionSetup) -> FusionResult:
    """Grid-search every classifier on every feature set (same patient folds), refit winners, score all cohorts."""
    train_mask = (design.cohorts == TRAIN_COHORT).to_numpy()
    if not train_mask.any():
        raise ValueError("no ROI has cohort 'train' in the manifest: fuse trains on the train cohort")
    train = design.rows(train_mask)
    _check_unseen_sites(design, train_mask, setup)
    y = encode_labels(train.labels, setup.classes)
    groups = train.patients.to_numpy()
    folds = (patient_folds(y, groups, setup.n_splits, setup.seed) if setup.fold_of_patient is None
             else folds_from_assignment(groups, setup.fold_of_patient))
    with tempfile.TemporaryDirectory(prefix="radfuse-fuse-cache-") as cache:
        memory = Memory(cache, verbose=0) if setup.cache else None
        outcomes = {fs: _run_feature_set(fs, blocks, train, y, groups, folds, setup, memory)
                    for fs, blocks in setup.feature_sets.items()}
    for per_clf in outcomes.values():  # the on-disk cache is gone; fitted models must not point at it
        for outcome in per_clf.values():
            _forget_memory(outcome.search.best_estimator_)
    return _collect(design, train, folds, outcomes, setup)


def _forget_memory(estimator: Any) -> None:
    """Set `memory=None` on a fitted Pipeline and every Pipeline nested in it (ColumnTransformer blocks)."""
    if isinstance(estimator, Pipeline):
        estimator.memory = None
        for _, step in estimator.steps:
            _forget_memory(step)
    for _, fitted, _ in getattr(estimator, "transformers_", []):
        _forget_memory(fitted)


def folds_from_assignment(groups: np.ndarray, fold_of_patient: Mapping[str, int]) -> list:
    """(train, test) index pairs from a patient -> fold table (the split file shared with the train stage)."""
    fold = pd.Series(groups).map(fold_of_patient)
    if fold.isna().any():
        missing = sorted(set(pd.Series(groups)[fold.isna()]))
        raise ValueError(f"train patients {missing[:5]} have no CV fold in the split file: delete splits.json to "
                         "re-split, or set cv.folds=fresh")
    fold = fold.to_numpy(dtype=int)
    return [(np.flatnonzero(fold != k), np.flatnonzero(fold == k)) for k in np.unique(fold)]


def _check_unseen_sites(design: Design, train_mask: np.ndarray, setup: FusionSetup) -> None:
    """Fail before hours of grid search, not after, if ComBat cannot harmonise a site absent from training."""
    combats = [step for steps in setup.blocks.values() for step in steps.values() if isinstance(step, ComBat)]
    counts = design.sites[~train_mask].value_counts()
    unseen = counts[~counts.index.isin(set(design.sites[train_mask]))]
    for step in combats:
        few = unseen[unseen < step.min_unseen_rows] if step.unseen_site == "estimate" else unseen
        if step.unseen_site != "reference" and len(few):
            raise ValueError(f"site(s) {dict(few)} (ROI counts) are not in the train cohort and ComBat "
                             f"(unseen_site={step.unseen_site!r}) cannot harmonise them: set "
                             "blocks.<block>.combat.unseen_site=reference, or move some of their cases to training")


def encode_labels(labels: pd.Series, classes: list[str]) -> np.ndarray:
    unknown = sorted(set(labels) - set(classes))
    if unknown:
        raise ValueError(f"labels {unknown} are not among the configured classes {classes}: fix data.classes")
    return labels.map({c: i for i, c in enumerate(classes)}).to_numpy(dtype=int)


def _run_feature_set(name, block_names, train, y, groups, folds, setup, memory) -> dict[str, SearchOutcome]:
    missing = [b for b in block_names if b not in setup.blocks]
    if missing:
        raise ValueError(f"feature set {name!r} uses block(s) {missing} that are not configured")
    blocks = {b: setup.blocks[b] for b in block_names}
    results = {}
    for spec in setup.classifiers:
        log.info("feature set %s: grid search %s", name, spec.name)
        pipeline = fusion_pipeline(blocks, setup.final, spec.estimator, memory=memory)
        results[spec.name] = search_classifier(pipeline, spec, train.X, y, groups, folds, setup.n_jobs,
                                               setup.nested_splits, setup.seed)
    return results


def _collect(design: Design, train: Design, folds, outcomes, setup: FusionSetup) -> FusionResult:
    k = len(setup.classes)
    y_all = encode_labels(design.labels, setup.classes)
    predictions, cv_rows, metrics = [], [], {"classes": setup.classes, "n_folds": len(folds), "feature_sets": {}}
    for fs, per_clf in outcomes.items():
        ranking = rank_classifiers(per_clf)
        winner = ranking[0]["classifier"]
        fs_metrics = {"winner": winner, "blocks": list(setup.feature_sets[fs]), "classifiers": {},
                      "selection": {"criterion": SELECTION_CRITERION, "rule": SELECTION_RULE, "ranking": ranking}}
        for clf, outcome in per_clf.items():
            proba_all = outcome.search.best_estimator_.predict_proba(design.X)
            predictions += [_prediction_frame(train, outcome.oof_proba, setup.classes, fs, clf, "oof"),
                            _prediction_frame(design, proba_all, setup.classes, fs, clf, "refit")]
            cv_rows.append(_cv_table(outcome, fs))
            fs_metrics["classifiers"][clf] = _classifier_metrics(outcome, design, y_all, proba_all, k)
        fs_metrics["external_macro_auc"] = fs_metrics["classifiers"][winner]["cohort_macro_auc"].get(EXTERNAL_COHORT)
        fs_metrics["cv_macro_auc"] = fs_metrics["classifiers"][winner]["cv_macro_auc"]
        metrics["feature_sets"][fs] = fs_metrics
    model = {
        "classes": setup.classes,
        "pipelines": {fs: per_clf[metrics["feature_sets"][fs]["winner"]].search.best_estimator_
                      for fs, per_clf in outcomes.items()},
        "candidates": {fs: {c: o.search.best_estimator_ for c, o in per_clf.items()}
                       for fs, per_clf in outcomes.items()},
        "winners": {fs: m["winner"] for fs, m in metrics["feature_sets"].items()},
        "feature_columns": {fs: list(design.X.columns[_used_columns(setup, fs, design.X.columns)])
                            for fs in outcomes},
        "versions": package_versions(),
    }
    predictions = with_radscores(pd.concat(predictions, ignore_index=True), design, outcomes, setup.classes)
    fold_of_case = {str(train.X.index[i]): k for k, (_, test) in enumerate(folds) for i in test}
    return FusionResult(predictions, pd.concat(cv_rows, ignore_index=True), metrics, model, outcomes, fold_of_case)


def rank_classifiers(per_clf: Mapping[str, SearchOutcome]) -> list[dict[str, Any]]:
    """Classifiers best first by the selection criterion (ties: configured order), with their fold CIs."""
    order = {name: i for i, name in enumerate(per_clf)}
    ranked = sorted(per_clf, key=lambda c: (-per_clf[c].cv_auc, order[c]))
    return [{"classifier": c, SELECTION_CRITERION: per_clf[c].cv_auc, "cv_ci95": list(mean_ci(per_clf[c].fold_aucs))}
            for c in ranked]


def with_radscores(predictions: pd.DataFrame, design: Design, outcomes, classes: list[str]) -> pd.DataFrame:
    """`predictions` plus the `radscore__<class>` columns (radfuse.fuse.radscore: the final LASSO's linear
    predictor, or the classifier's log-odds without one): refit rows from the refit pipeline, oof rows from the
    out-of-fold models of `search_classifier` (each training case scored by the model that did not see it)."""
    columns = radscore_columns(classes)
    scores = np.full((len(predictions), len(columns)), np.nan)
    for fs, per_clf in outcomes.items():
        for clf, outcome in per_clf.items():
            rows = (predictions.feature_set == fs) & (predictions.model == clf)
            refit = rows & (predictions.split == "refit")
            case_ids = predictions.loc[refit, "case_id"].to_numpy()
            scores[refit.to_numpy()] = rad_score(outcome.search.best_estimator_, design.X.loc[case_ids], len(classes))
            scores[(rows & (predictions.split == "oof")).to_numpy()] = outcome.oof_radscore
    return predictions.assign(**dict(zip(columns, scores.T)))


def _used_columns(setup: FusionSetup, fs: str, columns: pd.Index) -> np.ndarray:
    """The input columns a feature set's pipeline reads (its blocks' prefixes plus site/covariates)."""
    pipeline = fusion_pipeline({b: setup.blocks[b] for b in setup.feature_sets[fs]}, setup.final,
                               setup.classifiers[0].estimator)
    frame = pd.DataFrame(columns=columns)
    used = set()
    for _, _, selector in pipeline.named_steps["blocks"].transformers:
        used.update(selector(frame))
    return np.array([c in used for c in columns])


def _classifier_metrics(outcome: SearchOutcome, design: Design, y_all, proba_all, k) -> dict[str, Any]:
    low, high = mean_ci(outcome.fold_aucs)
    cohorts = {c: macro_auc(y_all[m], proba_all[m], k)
               for c in pd.unique(design.cohorts) for m in [(design.cohorts == c).to_numpy()]}
    cohorts = {c: None if np.isnan(v) else v for c, v in cohorts.items()}  # JSON has no NaN
    return {"cv_macro_auc": outcome.cv_auc, "cv_fold_aucs": outcome.fold_aucs.tolist(), "cv_ci95": [low, high],
            "best_params": {k_: _plain(v) for k_, v in outcome.search.best_params_.items()},
            "nested_cv_macro_auc": None if outcome.nested_fold_aucs is None
            else float(np.mean(outcome.nested_fold_aucs)),
            "cohort_macro_auc": cohorts}


def _plain(value: Any) -> Any:
    return value if isinstance(value, (int, float, str, bool, type(None))) else repr(value)


def _prediction_frame(rows: Design, proba: np.ndarray, classes, feature_set, model, split) -> pd.DataFrame:
    frame = pd.DataFrame({
        "case_id": rows.X.index.to_numpy(), "patient_id": rows.patients.to_numpy(),
        "cohort": rows.cohorts.to_numpy(), "site": rows.sites.to_numpy(), "label": rows.labels.to_numpy(),
        "pred": np.asarray(classes, dtype=object)[proba.argmax(axis=1)],
        "feature_set": feature_set, "model": model, "split": split,
    })
    frame[prob_columns(classes)] = proba
    return frame[[*PREDICTION_COLUMNS, *prob_columns(classes)]]


def _cv_table(outcome: SearchOutcome, feature_set: str) -> pd.DataFrame:
    table = pd.DataFrame(outcome.search.cv_results_).drop(columns=["params"])
    table.insert(0, "classifier", outcome.name)
    table.insert(0, "feature_set", feature_set)
    return table


def report_inputs(result: FusionResult, design: Design) -> dict[str, Any]:
    """The `extras` radfuse.evaluate.report.build_report takes: winners' pipelines, their untransformed training
    features, grid-search results and, per feature set, the final LASSO's path, coefficients and lambda."""
    train = design.rows((design.cohorts == TRAIN_COHORT).to_numpy())
    lasso = {}
    for fs, pipeline in result.model["pipelines"].items():
        selector = pipeline.named_steps.get("lasso")
        if selector is not None:
            names = list(selector.feature_names_in_)
            lasso[fs] = {"path": {"lambdas": selector.lambdas_, "coefs": selector.coef_path_, "features": names},
                         "coefs": selector.coef_, "features": names, "classes": result.model["classes"],
                         "lambda": selector.lambda_}
    selection = {fs: {r["classifier"]: r[SELECTION_CRITERION] for r in m["selection"]["ranking"]}
                 for fs, m in result.metrics["feature_sets"].items()}
    return {"pipelines": result.model["pipelines"], "winners": result.model["winners"],
            "selection": selection, "selection_rule": SELECTION_RULE, "fold_of_case": result.fold_of_case,
            "X_train": {fs: train.X[cols] for fs, cols in result.model["feature_columns"].items()},
            "cv_results": result.cv_results, "lasso": lasso, "versions": result.model["versions"]}
