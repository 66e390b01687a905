"""Class weighting reaches every classifier of the zoo (the shipped conf/classifier/*.yaml)."""

from pathlib import Path

import numpy as np
import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf
from sklearn.calibration import CalibratedClassifierCV

from radfuse.fuse.balance import ClassBalanced, balanced_oversample

CLASSIFIER_CONF = Path(__file__).resolve().parents[2] / "conf" / "classifier"
ZOO = sorted(p.stem for p in CLASSIFIER_CONF.glob("*.yaml"))


def _imbalanced(seed=0):
    rng = np.random.default_rng(seed)
    y = np.array([0] * 60 + [1] * 25 + [2] * 10)
    X = rng.normal(size=(len(y), 4)) + y[:, None]
    return X, y


def _estimator(name):
    return instantiate(OmegaConf.load(CLASSIFIER_CONF / f"{name}.yaml").estimator)


def test_the_zoo_has_the_nine_classifiers():
    assert ZOO == sorted(["dt", "extratrees", "knn", "lightgbm", "lr", "mlp", "rf", "svm", "xgboost"])


@pytest.mark.parametrize("name", ZOO)
def test_every_classifier_is_class_weighted(name, monkeypatch):
    """Either the estimator itself weights classes (class_weight='balanced'), or ClassBalanced feeds its fit
    balanced sample weights / a balanced resample. A spy on the inner fit proves what it actually received."""
    X, y = _imbalanced()
    estimator = _estimator(name)
    if isinstance(estimator, CalibratedClassifierCV):  # SVM: Platt scaling around a class-weighted SVC
        fitted = estimator.fit(X, y).calibrated_classifiers_[0].estimator
        assert fitted.get_params()["class_weight"] == "balanced"
        return
    if not isinstance(estimator, ClassBalanced):
        assert estimator.get_params()["class_weight"] == "balanced"
        fitted = estimator.fit(X, y)
        assert fitted.get_params()["class_weight"] == "balanced"
        return
    received = {}
    inner_cls = type(estimator.estimator)
    original = inner_cls.fit

    def spy(self, X_, y_, sample_weight=None, **kw):
        received.update(y=np.asarray(y_), sample_weight=sample_weight)
        return original(self, X_, y_, **({} if sample_weight is None else {"sample_weight": sample_weight}), **kw)

    monkeypatch.setattr(inner_cls, "fit", spy)
    estimator.fit(X, y)
    if estimator.strategy == "sample_weight":
        expected = len(y) / (3 * np.bincount(y))[y]  # n / (k * n_class), by hand
        np.testing.assert_allclose(received["sample_weight"], expected)
        np.testing.assert_allclose(np.bincount(y, weights=received["sample_weight"]), [len(y) / 3] * 3)
    else:
        assert received["sample_weight"] is None
        assert list(np.bincount(received["y"])) == [60, 60, 60]
    assert estimator.predict_proba(X).shape == (len(y), 3)


def test_oversample_keeps_every_row_and_only_repeats_within_a_class():
    y = np.array([0] * 7 + [1] * 3)
    rows = balanced_oversample(y, random_state=0)
    assert set(range(10)) <= set(rows)
    assert list(np.bincount(y[rows])) == [7, 7]
    assert np.array_equal(rows, balanced_oversample(y, random_state=0))
