"""SHAP on a fitted Pipeline: explainer choice, (cases, features, classes) shape, additivity, figures."""

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import make_classification
from sklearn.decomposition import PCA
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from radfuse.evaluate import shap_explain


def _data(n_classes):
    X, y = make_classification(60, 6, n_informative=4, n_classes=n_classes, random_state=0)
    return pd.DataFrame(X, columns=[f"rad__f{i}" for i in range(6)], index=[f"c{i}" for i in range(60)]), y


@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("classifier,kind", [
    (LogisticRegression(), "linear"), (RandomForestClassifier(10, random_state=0), "tree"),
    (KNeighborsClassifier(5), "kernel")])
def test_shapes_and_additivity(classifier, kind, n_classes):
    X, y = _data(n_classes)
    pipe = make_pipeline(StandardScaler(), PCA(3), classifier).fit(X, y)
    classes = [str(i) for i in range(n_classes)]
    result = shap_explain.explain_pipeline(pipe, X, classes, kernel_cases=6, kernel_nsamples=60, max_cases=30)
    assert result.explainer == kind
    assert result.values.shape == (len(result.case_ids), 3, n_classes)
    assert result.feature_names == ["pca0", "pca1", "pca2"]  # names of the transformed features
    total = result.values.sum(axis=1) + result.base_values
    rows = X.loc[result.case_ids]
    if kind == "kernel":
        expected = pipe.predict_proba(rows)
    elif kind == "linear":
        margin = pipe.decision_function(rows)
        expected = margin if margin.ndim == 2 else np.column_stack([-margin, margin])
    else:  # sklearn forests: TreeExplainer explains probabilities
        expected = pipe.predict_proba(rows)
    assert total == pytest.approx(expected, abs=1e-6)
    table = result.table()
    assert len(table) == result.values.size and set(table["class"]) == set(classes)


def test_lightgbm_binary_single_output_is_mirrored():
    lightgbm = pytest.importorskip("lightgbm")
    X, y = _data(2)
    pipe = make_pipeline(StandardScaler(), lightgbm.LGBMClassifier(n_estimators=10, verbose=-1)).fit(X, y)
    result = shap_explain.explain_pipeline(pipe, X, ["0", "1"], max_cases=10)
    assert result.values.shape == (10, 6, 2)
    assert result.values[:, :, 0] == pytest.approx(-result.values[:, :, 1])
    assert result.feature_names[0] == "rad__f0"


def test_figures_render_headless():
    X, y = _data(3)
    pipe = make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y)
    result = shap_explain.explain_pipeline(pipe, X, ["0", "1", "2"], max_cases=20)
    for fig in (shap_explain.plot_global_bar(result), shap_explain.plot_beeswarm(result, 1),
                shap_explain.plot_decision(result, 2, [0, 1, 2])):
        assert fig.axes and fig.get_size_inches().min() > 0
    bars = shap_explain.plot_global_bar(result).axes[0].patches
    assert len(bars) == 3 * 6  # one stacked segment per class and feature
    cases = shap_explain.decision_cases(result, dict(zip(X.index, map(str, y))), per_class=2)
    assert all(len(v) == 2 for v in cases.values())


def test_classifier_without_probabilities_is_explained_on_its_decision_function():
    from sklearn.svm import LinearSVC

    X, y = _data(2)
    pipe = make_pipeline(StandardScaler(), LinearSVC()).fit(X, y)
    result = shap_explain.explain_pipeline(pipe, X, ["0", "1"], kernel_cases=5, kernel_nsamples=60)
    assert result.explainer == "kernel" and result.output == "decision function"
    margin = pipe.decision_function(X.loc[result.case_ids])
    assert result.values.sum(axis=1)[:, 1] + result.base_values[1] == pytest.approx(margin, abs=1e-6)


@pytest.mark.parametrize("classifier", [LogisticRegression(max_iter=2000), RandomForestClassifier(10, random_state=0),
                                        KNeighborsClassifier(5)])
def test_fusion_pipeline_explanations_carry_the_real_feature_names(classifier):
    """Issue 11, defect 4: the report explains a winner on the columns of its own feature set, a subset of the
    design it was fitted on; the names came out as feature_0, feature_1 ... for 3 of 4 models."""
    from radfuse.fuse.pipeline import fusion_pipeline
    from tests.fuse.helpers import small_design, small_lasso

    design = small_design(n_classes=2)
    train = design.rows((design.cohorts == "train").to_numpy())
    blocks = {"rad": {"scale": StandardScaler(), "lasso": small_lasso()}}
    pipe = fusion_pipeline(blocks, {"scale": StandardScaler()}, classifier)
    y = (train.labels == train.labels.iloc[0]).astype(int).to_numpy()
    from sklearn import config_context

    with config_context(enable_metadata_routing=True):
        pipe.fit(train.X, y, groups=train.patients.to_numpy())
    used = [c for c in train.X.columns if c.startswith("rad__")]
    result = shap_explain.explain_pipeline(pipe, train.X[used], ["0", "1"], kernel_cases=4, kernel_nsamples=30,
                                           max_cases=20)
    expected = [str(n) for n in pipe[:-1].get_feature_names_out()]
    assert result.feature_names == expected and all(n.startswith("rad__") for n in expected)
    assert set(result.table()["feature"]) == set(expected)


def test_a_head_without_feature_names_is_an_error_not_a_fallback():
    from sklearn.base import BaseEstimator, TransformerMixin

    class Anonymous(TransformerMixin, BaseEstimator):
        def fit(self, X, y=None):
            self.n_features_in_ = np.asarray(X).shape[1]
            return self

        def transform(self, X):
            return np.asarray(X)[:, :2]

    X, y = _data(2)
    pipe = make_pipeline(Anonymous(), LogisticRegression()).fit(X, y)
    with pytest.raises(shap_explain.FeatureNamesUnavailable, match="do not name their output features"):
        shap_explain.explain_pipeline(pipe, X, ["0", "1"])
