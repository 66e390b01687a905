"""ComBat against the neuroCombat reference implementation, and its documented behaviour on unseen sites."""

import contextlib
import io

import numpy as np
import pandas as pd
import pytest
from neuroCombat import neuroCombat
from sklearn.base import clone

from radfuse.fuse.combat import ComBat


def _batch_data(n=90, p=25, seed=0):
    """Three sites with their own location/scale per feature, a numeric (age) and a categorical (sex) covariate."""
    rng = np.random.default_rng(seed)
    site = np.array(["s1", "s2", "s3"])[rng.integers(0, 3, n)]
    age = rng.integers(50, 90, n).astype(float)  # integers: neuroCombat casts covariates to float32
    sex = rng.choice(["F", "M"], n)
    data = rng.normal(size=(n, p)) + 0.03 * age[:, None] + 0.5 * (sex == "M")[:, None]
    for s, (shift, scale) in {"s1": (0, 1), "s2": (2, 1.5), "s3": (-1, 0.7)}.items():
        data[site == s] = data[site == s] * scale + shift * rng.uniform(0.5, 1.5, p)
    frame = pd.DataFrame(data, columns=[f"rad__f{i}" for i in range(p)])
    return frame.assign(meta__site=site, meta__age=age, meta__sex=sex)


def _quiet(func, *args, **kwargs):
    with contextlib.redirect_stdout(io.StringIO()):  # neuroCombat prints progress
        return func(*args, **kwargs)


def test_matches_neurocombat_with_covariates():
    frame = _batch_data()
    features = frame.filter(like="rad__")
    covars = frame[["meta__site", "meta__age", "meta__sex"]].rename(columns=lambda c: c[6:])
    reference = _quiet(neuroCombat, features.to_numpy().T, covars, "site", categorical_cols=["sex"],
                       continuous_cols=["age"])["data"].T
    ours = ComBat(covariates=["meta__age", "meta__sex"]).fit(frame).transform(frame)
    assert list(ours.columns) == list(features.columns)
    np.testing.assert_allclose(ours.to_numpy(), reference, atol=1e-6, rtol=0)


def _from_training(dat, batch, estimates):
    """neuroCombat.neuroCombatFromTraining's arithmetic (its `int(np.where(...)[0])` fails under numpy 2)."""
    levels = [str(b) for b in estimates["batches"]]
    rows = [levels.index(str(b)) for b in batch]
    stand_mean = (estimates["stand.mean"][:, 0] + estimates["mod.mean"].mean(axis=1))[:, None]
    var_pooled = estimates["var.pooled"]
    s_data = (dat - stand_mean) / np.sqrt(var_pooled)
    s_data = (s_data - estimates["gamma.star"][rows].T) / np.sqrt(estimates["delta.star"][rows].T)
    return s_data * np.sqrt(var_pooled) + stand_mean


def test_new_rows_of_seen_sites_match_neurocombat_from_training():
    frame = _batch_data(seed=1)
    train, new = frame.iloc[:70], frame.iloc[70:]
    estimates = _quiet(neuroCombat, train.filter(like="rad__").to_numpy().T,
                       train[["meta__site"]].rename(columns={"meta__site": "site"}), "site")["estimates"]
    reference = _from_training(new.filter(like="rad__").to_numpy().T, new["meta__site"].to_numpy(), estimates).T
    model = ComBat().fit(train.drop(columns=["meta__age", "meta__sex"]))
    ours = model.transform(new.drop(columns=["meta__age", "meta__sex"]))
    np.testing.assert_allclose(ours.to_numpy(), reference, atol=1e-6, rtol=0)


def test_removes_the_site_effect_it_was_fitted_on():
    frame = _batch_data(n=300, seed=2).drop(columns=["meta__age", "meta__sex"])
    out = ComBat().fit_transform(frame)
    site_means = out.groupby(frame["meta__site"].to_numpy()).mean()
    raw_means = frame.filter(like="rad__").groupby(frame["meta__site"]).mean()
    assert site_means.std().max() < 0.25 * raw_means.std().min()


def _unseen_split(seed=3):
    frame = _batch_data(n=240, seed=seed).drop(columns=["meta__age", "meta__sex"])
    return frame[frame.meta__site != "s3"], frame[frame.meta__site == "s3"]


def test_unseen_site_estimate_uses_that_sites_own_batch():
    train, unseen = _unseen_split()
    model = ComBat(unseen_site="estimate").fit(train)
    harmonised = model.transform(unseen)
    # Site s3 was shifted by about -1 and scaled by 0.7: after harmonisation its feature means and SDs must sit
    # at the training grand mean / pooled SD, which the raw s3 data miss by far.
    grand = ComBat().fit_transform(train).mean()
    assert (harmonised.mean() - grand).abs().max() < 0.25
    assert (unseen.filter(like="rad__").mean() - grand).abs().min() > 0.3
    sd_ratio = harmonised.std() / np.sqrt(model.var_pooled_)
    assert sd_ratio.between(0.75, 1.3).all()


def test_unseen_site_estimate_ignores_the_labels_and_other_sites_rows():
    train, unseen = _unseen_split()
    model = ComBat().fit(train)
    alone = model.transform(unseen)
    mixed = model.transform(pd.concat([train.iloc[:30], unseen]))
    np.testing.assert_allclose(mixed.iloc[30:].to_numpy(), alone.to_numpy(), atol=1e-12)


def test_unseen_site_error_and_reference_policies():
    train, unseen = _unseen_split()
    with pytest.raises(ValueError, match="site 's3' was not in the ComBat training data"):
        ComBat(unseen_site="error").fit(train).transform(unseen)
    reference = ComBat(unseen_site="reference").fit(train)
    # location 0 / scale 1: the unseen rows come back unchanged (no batch effect removed)
    np.testing.assert_allclose(reference.transform(unseen).to_numpy(), unseen.filter(like="rad__").to_numpy(),
                               atol=1e-9)
    with pytest.raises(ValueError, match="has only 1 row"):
        ComBat().fit(train).transform(unseen.iloc[:1])


def test_estimator_contract():
    frame = _batch_data().drop(columns=["meta__age", "meta__sex"])
    model = ComBat()
    assert clone(model).get_params() == model.get_params()
    assert model.fit(frame) is model
    assert list(model.get_feature_names_out()) == [c for c in frame.columns if c.startswith("rad__")]
    with pytest.raises(ValueError, match="site column 'meta__site'"):
        ComBat().fit(frame.drop(columns=["meta__site"]))
    with pytest.raises(ValueError, match="at least 2 sites") as single_site:
        ComBat().fit(frame[frame.meta__site == "s1"])
    assert "blocks.rad.combat=null" in str(single_site.value)  # the key that exists (not block.combat)
