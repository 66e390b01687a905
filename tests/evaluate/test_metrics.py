"""Metrics against sklearn and brute force; the operating point comes from training only."""

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import confusion_matrix, f1_score, roc_auc_score

from radfuse.evaluate import metrics
from tests.evaluate import synthetic

CLASSES = ["a", "b", "c"]


@pytest.fixture(scope="module")
def predictions():
    manifest = synthetic.simulate_manifest(CLASSES, {"train": 90, "internal": 40, "external": 40}, seed=1)
    return synthetic.simulate_predictions(manifest, CLASSES, {("fused", "lr"): 1.2}, seed=2)


def test_youden_threshold_is_the_brute_force_maximum():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 80).astype(bool)
    s = rng.normal(size=80) + y
    t = metrics.youden_threshold(y, s)
    youden = lambda cut: np.mean(s[y] >= cut) + np.mean(s[~y] < cut) - 1  # noqa: E731
    assert youden(t) == pytest.approx(max(youden(c) for c in s), abs=1e-12)


def test_point_estimates_match_sklearn(predictions):
    rows = metrics.model_rows(predictions, "fused", "lr")
    result = metrics.evaluate_model(rows, CLASSES, n_resamples=50)
    external = rows[(rows.split == "refit") & (rows.cohort == "external")]
    probs = external[[f"prob__{c}" for c in CLASSES]].to_numpy()
    y = external["label"].to_numpy()
    got = result["sets"]["external"]
    assert got["overall"]["macro_auc"]["estimate"] == pytest.approx(
        roc_auc_score(y, probs, multi_class="ovr", average="macro"), abs=1e-12)
    onehot = (y[:, None] == np.array(CLASSES)).astype(int)
    assert got["overall"]["micro_auc"]["estimate"] == pytest.approx(
        roc_auc_score(onehot, probs, average="micro"), abs=1e-12)
    assert got["overall"]["accuracy"]["estimate"] == pytest.approx(np.mean(external["pred"] == y))
    assert got["overall"]["macro_f1"]["estimate"] == pytest.approx(f1_score(y, external["pred"], average="macro"))
    assert got["confusion_matrix"] == confusion_matrix(y, external["pred"], labels=CLASSES).tolist()
    for k, c in enumerate(CLASSES):
        called = probs[:, k] >= result["thresholds"][c]
        truth = y == c
        tn, fp, fn, tp = confusion_matrix(truth, called, labels=[False, True]).ravel()
        m = got["per_class"][c]
        assert m["auc"]["estimate"] == pytest.approx(roc_auc_score(truth, probs[:, k]), abs=1e-12)
        assert m["sensitivity"]["estimate"] == pytest.approx(tp / (tp + fn))
        assert m["specificity"]["estimate"] == pytest.approx(tn / (tn + fp))
        assert m["ppv"]["estimate"] == pytest.approx(tp / (tp + fp))
        assert m["npv"]["estimate"] == pytest.approx(tn / (tn + fn))
        assert m["accuracy"]["estimate"] == pytest.approx((tp + tn) / len(y))
        assert m["f1"]["estimate"] == pytest.approx(f1_score(truth, called))
        lo, hi = m["auc"]["ci_percentile"]
        assert lo <= m["auc"]["estimate"] <= hi


def test_thresholds_come_from_out_of_fold_training_only(predictions):
    rows = metrics.model_rows(predictions, "fused", "lr")
    before = metrics.evaluate_model(rows, CLASSES, n_resamples=10)
    shuffled = rows.copy()
    external = (shuffled.split == "refit") & (shuffled.cohort == "external")
    shuffled.loc[external, "prob__a"] = np.random.default_rng(0).permutation(shuffled.loc[external, "prob__a"])
    after = metrics.evaluate_model(shuffled, CLASSES, n_resamples=10)
    assert after["threshold_source"] == metrics.OOF_SET
    assert after["thresholds"] == before["thresholds"]
    oof = rows[rows.split == "oof"]
    expected = metrics.youden_threshold((oof.label == "b").to_numpy(), oof["prob__b"].to_numpy())
    assert before["thresholds"]["b"] == pytest.approx(expected)


def test_evaluation_sets_and_held_out(predictions):
    sets = metrics.evaluation_sets(metrics.model_rows(predictions, "fused", "lr"))
    assert list(sets) == ["train_cv", "train", "internal", "external"]
    assert list(metrics.held_out_sets(sets)) == ["internal", "external"]


def test_missing_class_in_a_cohort_gives_null_not_crash(predictions):
    rows = metrics.model_rows(predictions, "fused", "lr")
    rows = rows[~((rows.cohort == "external") & (rows.label == "c"))]
    got = metrics.evaluate_model(rows, CLASSES, n_resamples=20)["sets"]["external"]
    assert got["per_class"]["c"]["auc"]["estimate"] is None  # undefined, reported as null
    assert got["overall"]["macro_auc"]["estimate"] == pytest.approx(
        np.mean([got["per_class"][c]["auc"]["estimate"] for c in "ab"]))


def test_patient_grouping_is_used(predictions):
    manifest = synthetic.simulate_manifest(CLASSES, {"train": 40, "internal": 20}, rois_per_patient=3, seed=3)
    preds = synthetic.simulate_predictions(manifest, CLASSES, {("rad", "svm"): 1.0}, seed=4)
    got = metrics.evaluate_model(preds, CLASSES, n_resamples=20)["sets"]["internal"]
    assert got["n_cases"] == 60 and got["n_patients"] == 20
    assert isinstance(pd.Series(got["class_counts"]).sum(), (int, np.integer))


def test_proportions_carry_their_denominator_and_a_wilson_interval():
    # 10 positives, 8 called positive at cut-off 0.5; 12 negatives, 9 called negative
    probs_b = np.r_[np.repeat([0.9, 0.2], [8, 2]), np.repeat([0.1, 0.7], [9, 3])]
    rows = pd.DataFrame({"case_id": [str(i) for i in range(22)], "label": ["b"] * 10 + ["a"] * 12,
                         "prob__a": 1 - probs_b, "prob__b": probs_b})
    result = metrics.set_metrics(rows, ["a", "b"], np.array([0.5, 0.5]), n_resamples=20)
    sens = result["per_class"]["b"]["sensitivity"]
    assert sens["n"] == 10 and sens["ci_wilson"] == pytest.approx([0.4902, 0.9433], abs=1e-4)  # 8/10 by hand
    assert result["per_class"]["b"]["specificity"]["n"] == 12
    assert result["per_class"]["b"]["auc"]["n_smaller_group"] == 10
    assert result["overall"]["macro_auc"]["n"] == 22
