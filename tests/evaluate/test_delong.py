"""DeLong against published values, a brute-force O(n^2) implementation and simulation."""

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import roc_auc_score

from radfuse.evaluate import delong


def hanley_mcneil_1982():
    """Hanley & McNeil (1982) CT ratings: 58 normal and 51 abnormal cases on a 5-point scale."""
    y = np.r_[np.zeros(58), np.ones(51)]
    ratings = np.r_[np.repeat([1, 2, 3, 4, 5], [33, 6, 6, 11, 2]), np.repeat([1, 2, 3, 4, 5], [3, 2, 2, 11, 33])]
    return y, ratings


def brute_force_components(y, scores):
    """DeLong 1988 structural components by the O(m n) definition (ties count 1/2)."""
    y = np.asarray(y, dtype=bool)
    pos, neg = scores[y], scores[~y]
    psi = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
    return psi.mean(), psi.mean(axis=1), psi.mean(axis=0)


def brute_force_paired(y, s1, s2):
    a1, v10_1, v01_1 = brute_force_components(y, s1)
    a2, v10_2, v01_2 = brute_force_components(y, s2)
    s10 = np.cov(np.vstack([v10_1, v10_2]))
    s01 = np.cov(np.vstack([v01_1, v01_2]))
    cov = s10 / len(v10_1) + s01 / len(v01_1)
    var = cov[0, 0] + cov[1, 1] - 2 * cov[0, 1]
    return a1, a2, cov, (a1 - a2) / np.sqrt(var)


def test_published_hanley_mcneil_example():
    # Stata `roctab` on these data (DeLong standard error): area 0.8932, SE 0.0307, 95% CI 0.83295-0.95339
    y, ratings = hanley_mcneil_1982()
    auc, var = delong.auc_variance(y, ratings)
    assert auc == pytest.approx(0.8932, abs=5e-5)
    assert np.sqrt(var) == pytest.approx(0.0307, abs=5e-5)
    _, lo, hi = delong.auc_ci(y, ratings)
    assert (lo, hi) == pytest.approx((0.83295, 0.95339), abs=5e-5)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_brute_force_with_ties(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 150)
    s1 = np.round(rng.normal(size=150) + y, 1)  # rounding creates ties
    s2 = np.round(0.5 * s1 + rng.normal(size=150), 1)
    a1, a2, cov, z = brute_force_paired(y, s1, s2)
    auc, var = delong.auc_variance(y, s1)
    assert auc == pytest.approx(a1, abs=1e-12) and auc == pytest.approx(roc_auc_score(y, s1), abs=1e-12)
    assert var == pytest.approx(cov[0, 0], rel=1e-10)
    result = delong.paired_test(y, s1, s2)
    assert result.auc2 == pytest.approx(a2, abs=1e-12)
    assert result.z == pytest.approx(z, rel=1e-9)
    assert result.p_value == pytest.approx(2 * stats.norm.sf(abs(z)), rel=1e-9)


def test_unpaired_adds_independent_variances():
    rng = np.random.default_rng(3)
    y1, y2 = rng.integers(0, 2, 80), rng.integers(0, 2, 120)
    s1, s2 = rng.normal(size=80) + y1, rng.normal(size=120) + 0.3 * y2
    a1, v10, v01 = brute_force_components(y1, s1)
    b1, w10, w01 = brute_force_components(y2, s2)
    var = v10.var(ddof=1) / len(v10) + v01.var(ddof=1) / len(v01) + w10.var(ddof=1) / len(w10) + \
        w01.var(ddof=1) / len(w01)
    result = delong.unpaired_test(y1, s1, y2, s2)
    assert result.z == pytest.approx((a1 - b1) / np.sqrt(var), rel=1e-9)


def test_singleton_clusters_change_nothing_and_duplicated_rois_widen():
    rng = np.random.default_rng(4)
    y = rng.integers(0, 2, 60)
    s = rng.normal(size=60) + y
    _, var = delong.auc_variance(y, s)
    _, var_groups = delong.auc_variance(y, s, groups=np.arange(60))
    assert var_groups == pytest.approx(var, rel=1e-12)
    # the same patients scanned twice: clustering must not treat the copies as new information
    _, var_naive = delong.auc_variance(np.r_[y, y], np.r_[s, s])
    _, var_cluster = delong.auc_variance(np.r_[y, y], np.r_[s, s], groups=np.r_[np.arange(60), np.arange(60)])
    assert var_cluster == pytest.approx(2 * var_naive, rel=0.05)


def _simulate_three_class(rng, n, shift):
    labels = rng.integers(0, 3, n)
    logits = rng.normal(size=(n, 3)) + shift * np.eye(3)[labels]
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return labels.astype(str), probs


def test_macro_auc_variance_matches_simulation():
    rng = np.random.default_rng(5)
    classes = ["0", "1", "2"]
    estimates, variances = [], []
    for _ in range(300):
        labels, probs = _simulate_three_class(rng, 150, 1.0)
        auc, infl = delong.macro_influence(labels, probs, classes)
        estimates.append(auc)
        variances.append(np.sum(infl**2))
    assert np.mean(variances) == pytest.approx(np.var(estimates, ddof=1), rel=0.2)
    labels, probs = _simulate_three_class(rng, 150, 1.0)
    sk = roc_auc_score(labels, probs, multi_class="ovr", average="macro")
    assert delong.macro_auc_ci(labels, probs, classes)[0] == pytest.approx(sk, abs=1e-12)


def test_paired_macro_test_size_and_power():
    rng = np.random.default_rng(6)
    classes = ["0", "1", "2"]

    def jitter(probs, scale):
        return probs * np.exp(scale * rng.normal(size=probs.shape))

    null_p, alt_p = [], []
    for _ in range(200):
        labels, probs = _simulate_three_class(rng, 120, 1.0)
        # two equally good noisy copies of the same model: H0 true
        null_p.append(delong.paired_macro_test(labels, jitter(probs, 0.3), jitter(probs, 0.3), classes).p_value)
        alt_p.append(delong.paired_macro_test(labels, probs, jitter(probs, 1.5), classes).p_value)
    assert 0.01 <= np.mean(np.array(null_p) < 0.05) <= 0.10  # size near 5 %
    assert np.mean(np.array(alt_p) < 0.05) > 0.8


def test_refuses_single_class():
    with pytest.raises(ValueError, match="at least 2 positive"):
        delong.auc_variance(np.r_[1, 0, 0, 0], np.r_[0.1, 0.2, 0.3, 0.4])
