"""End-to-end behaviour of the fusion pipeline: leakage, planted signal, binary/3-class, seeds, folds."""

import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.feature_selection import SelectKBest, f_classif
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score
from sklearn.preprocessing import StandardScaler

from radfuse.artifacts import PREDICTION_COLUMNS, prob_columns
from radfuse.fuse.radscore import radscore_columns
from radfuse.fuse.design import Design
from radfuse.fuse.experiment import FusionSetup, folds_from_assignment, run_fusion
from radfuse.fuse.filters import CorrelationFilter
from radfuse.fuse.search import mean_ci, patient_folds
from tests.fuse.helpers import lr_spec, small_design, small_lasso, small_setup


def _noise_design(n_patients=60, n_features=2000, seed=0):
    """2 ROIs per patient, 2000 pure-noise features, labels permuted across patients: nothing to learn."""
    rng = np.random.default_rng(seed)
    patients = np.repeat([f"p{i}" for i in range(n_patients)], 2)
    labels = rng.permutation(np.repeat(["0", "1"], n_patients // 2))
    X = pd.DataFrame(rng.normal(size=(2 * n_patients, n_features)),
                     columns=[f"rad__f{i}" for i in range(n_features)],
                     index=pd.Index([f"c{i}" for i in range(2 * n_patients)], name="case_id"))
    s = lambda values: pd.Series(values, index=X.index)
    return Design(X, s(np.repeat(labels, 2)), s(patients), s("train"), s("A"))


def test_leakage_guard_noise_features_give_chance_auc():
    design = _noise_design()
    setup = FusionSetup(classes=["0", "1"], blocks={"rad": {"scale": StandardScaler(), "corr": CorrelationFilter(),
                                                            "lasso": small_lasso()}},
                        feature_sets={"rad": ["rad"]}, final={}, classifiers=[lr_spec({"C": [1.0]})], n_splits=5)
    reported = run_fusion(design, setup).metrics["feature_sets"]["rad"]["classifiers"]["lr"]
    low, high = reported["cv_ci95"]
    assert low < 0.5 < high, reported
    # Power check: selecting on all rows before the split (the classic leak) reports a clearly inflated AUC.
    y = (design.labels == "1").to_numpy().astype(int)
    folds = patient_folds(y, design.patients.to_numpy(), 5, 0)
    leaky_X = SelectKBest(f_classif, k=20).fit_transform(design.X, y)
    leaky = cross_val_score(LogisticRegression(), leaky_X, y, cv=folds, scoring="roc_auc")
    assert mean_ci(leaky)[0] > 0.6


def test_planted_signal_is_selected_and_predicted_three_classes():
    design = small_design(n_classes=3, n_rois=180, n_rad=20, n_deep=10, n_informative=2, signal=1.5)
    result = run_fusion(design, small_setup(["0", "1", "2"]))
    metrics = result.metrics["feature_sets"]["rad"]
    assert metrics["cv_macro_auc"] > 0.85 and metrics["external_macro_auc"] > 0.8
    rad_block = result.model["pipelines"]["rad"].named_steps["blocks"].named_transformers_["rad"]
    assert {"rad__f0", "rad__f1"} <= set(rad_block.get_feature_names_out())
    lasso = rad_block.named_steps["lasso"]
    strength = pd.Series(np.abs(lasso.coef_).max(axis=0), index=lasso.feature_names_in_)
    assert set(strength.nlargest(2).index) == {"rad__f0", "rad__f1"}  # the planted features lead
    assert list(result.predictions.columns) == [*PREDICTION_COLUMNS, *prob_columns(["0", "1", "2"]), *radscore_columns(["0", "1", "2"])]


def test_binary_path_and_prediction_table():
    design = small_design(n_classes=2, n_rois=120, n_rad=12, n_deep=8, n_informative=2)
    setup = small_setup(["0", "1"], feature_sets={"rad": ["rad"], "fused": ["rad", "deep"]})
    result = run_fusion(design, setup)
    pred = result.predictions
    assert set(pred.feature_set) == {"rad", "fused"} and set(pred.split) == {"oof", "refit"}
    np.testing.assert_allclose(pred[prob_columns(["0", "1"])].sum(axis=1), 1.0)
    oof = pred[pred.split == "oof"]
    n_train = (design.cohorts == "train").sum()
    assert (oof.cohort == "train").all() and len(oof) == 2 * n_train  # one OOF row per train ROI and feature set
    refit = pred[(pred.split == "refit") & (pred.feature_set == "fused")]
    assert set(refit.cohort) == {"train", "internal", "external"} and len(refit) == len(design.X)
    assert result.metrics["feature_sets"]["fused"]["cv_macro_auc"] > 0.75
    assert set(result.cv_results.feature_set) == {"rad", "fused"}


def test_identical_results_for_a_seed():
    design = small_design(n_classes=3, n_rois=90, n_rad=10, n_deep=6)
    first = run_fusion(design, small_setup(["0", "1", "2"], seed=3)).predictions
    second = run_fusion(design, small_setup(["0", "1", "2"], seed=3)).predictions
    pd.testing.assert_frame_equal(first, second)


def test_no_patient_in_two_folds():
    groups = np.repeat(np.arange(50), 3)
    y = np.random.default_rng(0).integers(0, 3, 50).repeat(3)
    for folds in (patient_folds(y, groups, 5, 0),
                  folds_from_assignment(groups.astype(str), {str(p): p % 5 for p in range(50)})):
        assert sorted(np.concatenate([test for _, test in folds])) == list(range(150))
        for train, test in folds:
            assert not set(groups[train]) & set(groups[test])


class _Recorder(TransformerMixin, BaseEstimator):
    """Passthrough step that records which ROIs every fit saw."""
    seen: list = []

    def fit(self, X, y=None):
        _Recorder.seen.append(set(X.index))
        self.feature_names_in_ = np.asarray(X.columns, dtype=object)
        return self

    def transform(self, X):
        return X

    def get_feature_names_out(self, input_features=None):
        return self.feature_names_in_


def test_fitted_steps_see_training_folds_only():
    design = small_design(n_classes=2, n_rois=90, n_rad=8, n_deep=4)
    setup = small_setup(["0", "1"], cache=False)
    setup.blocks["rad"] = {"record": _Recorder(), **setup.blocks["rad"]}
    _Recorder.seen = []
    run_fusion(design, setup)
    train = design.rows((design.cohorts == "train").to_numpy())
    everything, others = set(train.X.index), set(design.X.index) - set(train.X.index)
    assert _Recorder.seen and all(not (fit & others) for fit in _Recorder.seen)  # never internal/external
    fold_fits = [fit for fit in _Recorder.seen if fit != everything]
    assert fold_fits and all(len(fit) < len(everything) for fit in fold_fits)


def test_nested_cv_reports_an_outer_estimate():
    design = small_design(n_classes=2, n_rois=90, n_rad=8, n_deep=4, n_informative=2)
    setup = small_setup(["0", "1"], nested_splits=2, classifiers=[lr_spec({"C": [1.0]})])
    metrics = run_fusion(design, setup).metrics["feature_sets"]["rad"]["classifiers"]["lr"]
    assert 0.6 < metrics["nested_cv_macro_auc"] <= 1.0


def test_report_inputs_carry_the_final_lasso_of_each_winner():
    from radfuse.fuse.experiment import report_inputs

    design = small_design(n_classes=3, n_rois=90, n_rad=8, n_deep=4, n_informative=2)
    result = run_fusion(design, small_setup(["0", "1", "2"], classifiers=[lr_spec({"C": [1.0]})]))
    extras = report_inputs(result, design)
    lasso = extras["lasso"]["rad"]
    assert lasso["coefs"].shape == (3, len(lasso["features"]))
    assert lasso["path"]["coefs"].shape == (len(lasso["path"]["lambdas"]), 3, len(lasso["features"]))
    assert lasso["lambda"] in lasso["path"]["lambdas"]
    assert (extras["X_train"]["rad"].index == design.X.index[design.cohorts == "train"]).all()


def test_a_single_roi_from_an_unseen_site_is_refused_before_training():
    design = small_design(n_classes=2, n_rois=60, n_rad=6, n_deep=4)
    external = np.flatnonzero((design.cohorts == "external").to_numpy())
    keep = np.ones(len(design.X), bool)
    keep[external[1:]] = False  # one external ROI left: its site (C) cannot be estimated from one row
    with pytest.raises(ValueError, match=r"'C'.*unseen_site=reference"):
        run_fusion(design.rows(keep), small_setup(["0", "1"]))
