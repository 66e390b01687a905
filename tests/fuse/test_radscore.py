"""radscore__<class> columns of fuse's predictions: the final LASSO's linear predictor (or the classifier's
log-odds without one), recomputed by hand from the fitted pipelines; oof rows from the out-of-fold models."""

import numpy as np
import pytest
from sklearn import config_context
from sklearn.base import clone
from sklearn.preprocessing import StandardScaler

from radfuse.fuse.experiment import TRAIN_COHORT, encode_labels, run_fusion
from radfuse.fuse.search import patient_folds
from tests.fuse.helpers import lr_spec, small_design, small_setup


def _rows(result, fs, clf, split):
    pred = result.predictions
    return pred[(pred.feature_set == fs) & (pred.model == clf) & (pred.split == split)].set_index("case_id")


def _lasso_by_hand(pipeline, X):
    """Linear predictor of the final LASSO on its own input: Z @ coef.T + intercept."""
    names = list(pipeline.named_steps)
    Z = pipeline[:names.index("lasso")].transform(X).to_numpy()
    lasso = pipeline.named_steps["lasso"]
    return Z @ lasso.coef_.T + lasso.intercept_


@pytest.mark.parametrize("n_classes", [2, 3])
def test_refit_rows_are_the_final_lassos_linear_predictor(n_classes):
    classes = [str(c) for c in range(n_classes)]
    design = small_design(n_classes=n_classes, n_rois=120, n_rad=10, n_deep=6, n_informative=2)
    result = run_fusion(design, small_setup(classes, feature_sets={"fused": ["rad", "deep"]}))
    columns = [c for c in result.predictions.columns if c.startswith("radscore__")]
    assert columns == (["radscore__1"] if n_classes == 2 else [f"radscore__{c}" for c in classes])
    winner = result.model["winners"]["fused"]
    refit = _rows(result, "fused", winner, "refit")
    expected = _lasso_by_hand(result.model["pipelines"]["fused"], design.X.loc[refit.index])
    np.testing.assert_allclose(refit[columns].to_numpy(), expected, rtol=1e-9, atol=1e-9)
    if n_classes == 3:  # softmax of the three linear predictors = the LASSO's own probabilities: not constant
        assert refit[columns].std().gt(0).all()
    assert result.predictions[columns].notna().all().all()


def test_without_a_final_lasso_the_radscore_is_the_classifiers_log_odds():
    design = small_design(n_classes=2, n_rois=120, n_rad=10, n_deep=6, n_informative=2)
    setup = small_setup(["0", "1"], feature_sets={"rad": ["rad"]})
    setup.final = {"scale": StandardScaler(), "lasso": None}  # final=scale
    result = run_fusion(design, setup)
    refit = _rows(result, "rad", "lr", "refit")
    pipeline = result.model["pipelines"]["rad"]
    X = design.X.loc[refit.index]
    np.testing.assert_allclose(refit["radscore__1"], pipeline.decision_function(X), rtol=1e-6, atol=1e-8)
    proba = pipeline.predict_proba(X)
    np.testing.assert_allclose(refit["radscore__1"], np.log(proba[:, 1] / proba[:, 0]), rtol=1e-6, atol=1e-8)


def test_oof_rows_come_from_the_out_of_fold_model():
    design = small_design(n_classes=2, n_rois=120, n_rad=10, n_deep=6, n_informative=2)
    setup = small_setup(["0", "1"], feature_sets={"rad": ["rad"]})
    result = run_fusion(design, setup)
    oof, refit = _rows(result, "rad", "lr", "oof"), _rows(result, "rad", "lr", "refit")
    train = design.rows((design.cohorts == TRAIN_COHORT).to_numpy())
    y, groups = encode_labels(train.labels, setup.classes), train.patients.to_numpy()
    folds = patient_folds(y, groups, setup.n_splits, setup.seed)
    fitted = result.outcomes["rad"]["lr"].search.best_estimator_
    for fold_train, fold_test in folds[:2]:  # refit on the other folds by hand, score the held-out fold
        with config_context(enable_metadata_routing=True):
            model = clone(fitted).fit(train.X.iloc[fold_train], y[fold_train], groups=groups[fold_train])
        held_out = train.X.iloc[fold_test]
        np.testing.assert_allclose(oof.loc[held_out.index, "radscore__1"], _lasso_by_hand(model, held_out)[:, 0],
                                   rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(oof.loc[held_out.index, "prob__1"], model.predict_proba(held_out)[:, 1],
                                   rtol=1e-9, atol=1e-9)
    apparent = refit.loc[oof.index, "radscore__1"]
    assert not np.allclose(oof["radscore__1"], apparent)  # in-sample scores of training cases differ (no leak)
