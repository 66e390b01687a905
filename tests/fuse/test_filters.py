"""ICC filter and greedy correlation filter against brute-force and scipy references."""

import numpy as np
import pandas as pd
import pytest
from scipy.stats import pearsonr, spearmanr

from radfuse.fuse.filters import CorrelationFilter, ICCFilter, abs_correlation


def test_icc_filter_keeps_features_at_or_above_threshold_matching_with_or_without_prefix():
    X = pd.DataFrame(np.random.default_rng(0).normal(size=(10, 4)), columns=["rad__a", "rad__b", "rad__c", "rad__d"])
    table = pd.DataFrame({"feature": ["a", "rad__b", "c"], "icc3_1": [0.95, 0.8, 0.79]})
    kept = ICCFilter(table, threshold=0.8, icc_column="icc3_1").set_output(transform="pandas").fit_transform(X)
    assert list(kept.columns) == ["rad__a", "rad__b"]  # d has no ICC: dropped
    keep_missing = ICCFilter(table, icc_column="icc3_1", keep_missing=True).fit(X)
    assert list(keep_missing.get_feature_names_out()) == ["rad__a", "rad__b", "rad__d"]


def test_icc_filter_matches_extracts_table_in_a_block_of_another_name():
    """extract's icc.parquet names features rad__<feature>; a second radiomics block (+block@blocks.rad_b=rad) has
    columns rad_b__<feature>: they match by the name after the prefix on both sides."""
    X = pd.DataFrame(np.random.default_rng(0).normal(size=(10, 3)), columns=["rad_b__a", "rad_b__b", "rad_b__c"])
    table = pd.DataFrame({"feature": ["rad__a", "rad__b", "rad__c"], "icc2_1": [0.95, 0.5, 0.85]})
    kept = ICCFilter(table, icc_column="icc2_1").fit(X)
    assert list(kept.get_feature_names_out()) == ["rad_b__a", "rad_b__c"]


def test_icc_filter_names_the_missing_column_and_refuses_to_keep_nothing(tmp_path):
    X = pd.DataFrame({"rad__a": [1.0, 2.0, 3.0]})
    path = tmp_path / "icc.parquet"
    pd.DataFrame({"feature": ["rad__a"], "icc3_1": [0.5]}).to_parquet(path)
    with pytest.raises(ValueError, match="icc_column"):
        ICCFilter(str(path)).fit(X)
    with pytest.raises(ValueError, match="kept no feature"):
        ICCFilter(str(path), icc_column="icc3_1").fit(X)
    with pytest.raises(ValueError, match="blocks.rad.icc=null"):
        ICCFilter(pd.DataFrame(columns=["feature", "icc"])).fit(X)


@pytest.mark.parametrize("method, reference", [("spearman", spearmanr), ("pearson", pearsonr)])
def test_abs_correlation_matches_scipy(method, reference):
    X = np.random.default_rng(1).normal(size=(30, 4)) ** 3
    ours = abs_correlation(X, method)
    for i in range(4):
        for j in range(4):
            assert ours[i, j] == pytest.approx(abs(reference(X[:, i], X[:, j])[0]), abs=1e-12)


def _brute_force_keep(X, method, threshold):
    """Textbook greedy: recompute every mean |corr| from scratch after each drop."""
    keep = list(range(X.shape[1]))
    while len(keep) > 1:
        sub = pd.DataFrame(X[:, keep]).corr(method=method).abs().to_numpy().copy()
        np.fill_diagonal(sub, 0)
        i, j = np.unravel_index(np.argmax(sub), sub.shape)
        if sub[i, j] <= threshold:
            break
        mean_i, mean_j = sub[i].sum() / (len(keep) - 1), sub[j].sum() / (len(keep) - 1)
        drop = i if mean_i > mean_j else j if mean_j > mean_i else max(i, j)
        keep.pop(drop)
    return keep


@pytest.mark.parametrize("method", ["spearman", "pearson"])
def test_correlation_filter_matches_brute_force_greedy(method):
    rng = np.random.default_rng(2)
    latent = rng.normal(size=(60, 4))
    X = np.hstack([latent[:, [k]] + rng.normal(scale=s, size=(60, 1)) for k in range(4) for s in (0.1, 0.2, 0.6)])
    X = np.hstack([X, rng.normal(size=(60, 5))])
    kept = np.flatnonzero(CorrelationFilter(method, threshold=0.9).fit(X).get_support())
    assert list(kept) == _brute_force_keep(X, method, 0.9)
    assert 0 < len(kept) < X.shape[1]


def test_correlation_filter_drops_the_feature_more_correlated_with_the_rest():
    rng = np.random.default_rng(3)
    base, other = rng.normal(size=200), rng.normal(size=200)
    hub = base + 0.25 * other           # correlates with `base` and with `other`
    twin = base + 0.05 * rng.normal(size=200)
    X = pd.DataFrame({"hub": hub, "twin": twin, "other": other})
    # the only pair above 0.9 is (hub, twin); hub also correlates with `other`, twin barely: hub goes
    names = CorrelationFilter("pearson", threshold=0.9).fit(X).get_feature_names_out()
    assert "hub" not in names and {"twin", "other"} <= set(names)


def test_constant_filter_drops_columns_constant_on_the_fitting_rows_only():
    from radfuse.fuse.filters import ConstantFilter

    rng = np.random.default_rng(0)
    train = pd.DataFrame({"rad__a": rng.normal(size=12), "rad__flat": np.full(12, 3.0),
                          "rad__tiny": 1e6 + 1e-9 * rng.normal(size=12)})  # spread far below the value's precision
    step = ConstantFilter().fit(train)
    assert list(step.get_feature_names_out()) == ["rad__a"]
    held_out = train.assign(rad__flat=rng.normal(size=12))  # varying on other rows changes nothing
    np.testing.assert_array_equal(np.asarray(step.transform(held_out)).ravel(), held_out["rad__a"].to_numpy())
    with pytest.raises(ValueError, match="every one of the 2 features is constant"):
        ConstantFilter().fit(train[["rad__flat", "rad__tiny"]])


def test_icc_filter_over_inter_and_intra_observer_tables_needs_both():
    inter = pd.DataFrame({"feature": ["a", "b", "c"], "icc": [0.9, 0.95, 0.85]})
    intra = pd.DataFrame({"feature": ["a", "b"], "icc": [0.7, 0.99]})  # c: no intra-observer ICC
    X = pd.DataFrame(np.random.default_rng(0).normal(size=(6, 3)), columns=["rad__a", "rad__b", "rad__c"])
    step = ICCFilter([inter, intra], threshold=0.8).fit(X)
    assert list(step.get_feature_names_out()) == ["rad__b"]
    np.testing.assert_allclose(step.icc_[:2], [0.7, 0.95])
