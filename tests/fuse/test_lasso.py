"""LASSO selector: planted signal, multinomial any-class rule, lambda grid, patient grouping, pruning."""

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

import radfuse.fuse.lasso as lasso_module
from radfuse.fuse.lasso import LassoSelector

FAST = dict(n_splits=5, n_lambdas=10)


def _planted(n=150, p=30, classes=2, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    X = rng.normal(size=(n, p))
    X[:, 0] += 1.5 * (y == 1)
    if classes > 2:
        X[:, 1] += 1.5 * (y == 2)  # informative only for class 2 vs the rest
    return X, y


def test_binary_selects_the_planted_feature_and_drops_most_noise():
    X, y = _planted()
    selector = LassoSelector(**FAST).fit(X, y)
    assert selector.get_support()[0]
    assert selector.get_support()[1:].sum() < 15  # lambda.min admits some noise, never most of it
    assert abs(selector.coef_[0, 0]) > 2 * np.abs(selector.coef_[0, 1:]).max()
    assert selector.coef_.shape == (1, 30) and selector.rad_score(X).shape == (150,)


def test_multiclass_keeps_a_feature_informative_for_a_single_class():
    X, y = _planted(n=240, classes=3, seed=1)
    selector = LassoSelector(**FAST).fit(X, y)
    assert selector.get_support()[:2].all()
    assert selector.coef_.shape == (3, 30) and selector.rad_score(X).shape == (240, 3)
    assert selector.coef_path_.shape == (len(selector.lambdas_), 3, 30)


def test_first_lambda_is_the_smallest_that_zeroes_every_coefficient():
    X, y = _planted(seed=2)
    X = (X - X.mean(0)) / X.std(0)
    selector = LassoSelector(**FAST, patience=None).fit(X, y)
    lam = selector.lambdas_[0]
    # independent check with sklearn at C = 1 / (lambda n): just above lambda_max nothing enters, below it does
    fit = lambda scale: LogisticRegression(l1_ratio=1.0, solver="saga", C=1 / (scale * lam * len(y)), tol=1e-8,
                                           max_iter=10000).fit(X, y)
    assert np.all(fit(1.02).coef_ == 0)
    assert np.any(fit(0.9).coef_ != 0)
    assert np.abs(selector.coef_path_[0]).max() < 1e-8  # exactly at lambda_max: zero up to rounding


def test_chosen_lambda_minimises_the_mean_cv_loss():
    X, y = _planted(seed=3)
    selector = LassoSelector(**FAST).fit(X, y)
    assert selector.lambda_ == selector.lambdas_[np.argmin(selector.cv_loss_.mean(axis=0))]
    assert selector.cv_loss_.shape == (5, len(selector.lambdas_))


def test_inner_cv_never_splits_a_patient(monkeypatch):
    X, y = _planted(n=120, seed=4)
    groups = np.repeat(np.arange(40), 3)
    y = y[::3].repeat(3)
    seen = []

    class Recording(lasso_module.StratifiedGroupKFold):
        def split(self, X_, y_, groups_):
            for train, test in super().split(X_, y_, groups_):
                seen.append((set(groups[train]), set(groups[test])))
                yield train, test

    monkeypatch.setattr(lasso_module, "StratifiedGroupKFold", Recording)
    LassoSelector(**FAST).fit(X, y, groups=groups)
    assert len(seen) == 5 and all(not (train & test) for train, test in seen)


def test_pruning_keeps_one_of_two_correlated_informative_features():
    X, y = _planted(seed=5)
    X = np.hstack([X, X[:, [0]] + 0.1 * np.random.default_rng(0).normal(size=(150, 1))])
    unpruned = LassoSelector(**FAST, random_state=1).fit(X, y).get_support()
    pruned = LassoSelector(**FAST, random_state=1, prune_above=0.5).fit(X, y).get_support()
    assert unpruned[[0, 30]].sum() >= 1
    assert pruned[[0, 30]].sum() == 1
    kept = np.flatnonzero(pruned)
    r = np.corrcoef(X[:, kept], rowvar=False)
    assert np.all(np.abs(r[np.triu_indices(len(kept), 1)]) <= 0.5)


def test_refuses_a_single_class():
    with pytest.raises(ValueError, match="one class"):
        LassoSelector().fit(np.ones((10, 2)), np.zeros(10))


@pytest.mark.parametrize("classes", [2, 3])
def test_screened_path_equals_the_unscreened_solution(classes):
    """The strong-rule screening must not change the answer: compare with sklearn on all features."""
    X, y = _planted(n=150, p=25, classes=classes, seed=6)
    X = (X - X.mean(0)) / X.std(0)
    tight = dict(l1_ratio=1.0, solver="saga", tol=1e-9, max_iter=100000)
    path = lasso_module._Path(LogisticRegression(**tight, warm_start=True), X, y, np.unique(y))
    lambdas = np.geomspace(0.3, 0.01, 6)
    for lam in lambdas:
        coef, intercept, _ = path.step(lam)
    direct = LogisticRegression(**tight, C=1 / (lambdas[-1] * len(y))).fit(X, y)
    np.testing.assert_allclose(coef, direct.coef_, atol=1e-4)
    np.testing.assert_allclose(intercept, direct.intercept_, atol=1e-4)


def test_when_nothing_is_selected_the_first_feature_to_enter_is_kept():
    rng = np.random.default_rng(7)
    X = rng.normal(size=(60, 15))
    X = (X - X.mean(0)) / X.std(0)
    y = rng.permutation(np.repeat([0, 1], 30))
    selector = LassoSelector(n_splits=5, n_lambdas=3, lambda_ratio=0.9).fit(X, y)
    assert np.all(selector.coef_ == 0)  # precondition: on this draw the CV picks the all-zero end
    # at beta = 0 the first feature to enter is the one most correlated with y (standardised X)
    expected = np.argmax([abs(np.corrcoef(X[:, j], y)[0, 1]) for j in range(15)])
    assert list(np.flatnonzero(selector.get_support())) == [expected]
