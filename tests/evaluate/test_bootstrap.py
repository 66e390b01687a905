"""Bootstrap: weighted AUC vs sklearn, BCa vs scipy.stats.bootstrap, patient grouping, coverage."""

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import roc_auc_score

from radfuse.evaluate import bootstrap


@pytest.mark.parametrize("decimals", [1, None])  # with ties / all scores distinct
def test_weighted_auc_equals_sklearn_on_the_expanded_sample(decimals):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    s = rng.normal(size=200) + y
    s = np.round(s, decimals) if decimals else s
    weights = bootstrap.resample_weights(200, 20, rng)
    got = bootstrap.weighted_auc(y, s, weights)
    for b in range(20):
        counts = weights[b].astype(int)
        expected = roc_auc_score(np.repeat(y, counts), np.repeat(s, counts))
        assert got[b] == pytest.approx(expected, abs=1e-12)


def test_weighted_auc_is_nan_without_both_classes():
    w = np.array([[1.0, 1.0, 0.0, 0.0]])
    assert np.isnan(bootstrap.weighted_auc(np.array([1, 1, 0, 0]), np.array([0.1, 0.2, 0.3, 0.4]), w))[0]


def test_patients_are_resampled_whole():
    groups = np.repeat(np.arange(30), 3)  # three ROIs per patient
    w = bootstrap.resample_weights(90, 50, np.random.default_rng(1), groups)
    assert (w.reshape(50, 30, 3) == w.reshape(50, 30, 3)[:, :, :1]).all()
    assert (w.reshape(50, 30, 3)[:, :, 0].sum(axis=1) == 30).all()  # 30 patients drawn each time
    jack = bootstrap.jackknife_weights(90, groups)
    assert jack.shape == (30, 90) and (jack.sum(axis=1) == 87).all()


def test_bca_equals_scipy_on_scipys_own_resamples():
    rng = np.random.default_rng(2)
    x = rng.exponential(size=40)  # skewed: BCa differs from percentile
    res = stats.bootstrap((x,), np.mean, n_resamples=2000, method="BCa", rng=np.random.default_rng(3))
    jack = np.array([np.delete(x, i).mean() for i in range(len(x))])
    lo, hi = bootstrap.bca_interval(x.mean(), res.bootstrap_distribution, jack, alpha=0.05)
    assert (float(lo), float(hi)) == pytest.approx((res.confidence_interval.low, res.confidence_interval.high),
                                                   rel=1e-10)


def test_bca_pipeline_agrees_with_scipy_with_independent_resamples():
    rng = np.random.default_rng(4)
    x = rng.exponential(size=60)
    ours = bootstrap.bootstrap_ci(lambda w: bootstrap.weighted_mean(x, w), 60, n_resamples=20000, seed=5)
    ref = stats.bootstrap((x,), np.mean, n_resamples=20000, method="BCa", rng=np.random.default_rng(6))
    assert float(ours["bca"][0]) == pytest.approx(ref.confidence_interval.low, abs=0.02)
    assert float(ours["bca"][1]) == pytest.approx(ref.confidence_interval.high, abs=0.02)
    pct = stats.bootstrap((x,), np.mean, n_resamples=20000, method="percentile", rng=np.random.default_rng(7))
    assert float(ours["percentile"][0]) == pytest.approx(pct.confidence_interval.low, abs=0.02)


def test_auc_ci_coverage_near_95_percent():
    """Binormal model with known AUC = Phi(delta / sqrt(2)); 200 datasets of 100 cases."""
    rng = np.random.default_rng(8)
    delta = 1.0
    true_auc = stats.norm.cdf(delta / np.sqrt(2))
    hits = {"percentile": 0, "bca": 0}
    for i in range(200):
        y = np.r_[np.zeros(50), np.ones(50)].astype(bool)
        s = rng.normal(size=100) + delta * y
        ci = bootstrap.bootstrap_ci(lambda w: bootstrap.weighted_auc(y, s, w), 100, n_resamples=500, seed=i)
        for method in hits:
            hits[method] += ci[method][0] <= true_auc <= ci[method][1]
    for method, count in hits.items():
        assert 0.89 <= count / 200 <= 0.99, (method, count)
