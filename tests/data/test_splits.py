import json

import numpy as np
import pandas as pd
import pytest

from radfuse.data.splits import SplitMismatch, load_or_make_splits, make_splits


def _frame(n_patients=200, seed=0, cohort=False):
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(n_patients):
        label = rng.choice(["0", "1", "2"], p=[0.46, 0.45, 0.09])
        for r in range(1 + (rng.random() < 0.1) * rng.integers(1, 3)):  # ~10 % with 2-3 ROIs
            rows.append({"case_id": f"p{p}_{r}", "patient_id": f"p{p}", "label": label,
                         "cohort": ("external" if p % 7 == 0 else None) if cohort else None})
    return pd.DataFrame(rows)


def test_no_patient_in_two_cohorts_or_folds_and_folds_are_stratified():
    frame = _frame()
    splits = make_splits(frame, seed=3, internal_fraction=0.2, n_folds=5)
    cohorts = splits.cohort_of(frame)
    assert frame.assign(c=cohorts).groupby("patient_id")["c"].nunique().max() == 1
    internal_share = (pd.Series(splits.cohorts) == "internal").mean()
    assert 0.15 < internal_share < 0.25
    train = frame[cohorts == "train"].assign(fold=splits.fold_of(frame[cohorts == "train"]))
    assert train["fold"].notna().all()
    assert train.groupby("patient_id")["fold"].nunique().max() == 1
    overall = train.drop_duplicates("patient_id")["label"].value_counts(normalize=True)
    for _, part in train.drop_duplicates("patient_id").groupby("fold"):
        share = part["label"].value_counts(normalize=True).reindex(overall.index, fill_value=0)
        assert np.abs(share - overall).max() < 0.08  # each fold mirrors the class mix
    assert not set(splits.folds) & {p for p, c in splits.cohorts.items() if c != "train"}


def test_given_cohorts_are_kept_and_only_the_rest_is_split():
    frame = _frame(cohort=True)
    splits = make_splits(frame)
    for patient, cohort in frame.groupby("patient_id")["cohort"].first().items():
        if cohort == "external":
            assert splits.cohorts[patient] == "external"
        else:
            assert splits.cohorts[patient] in ("train", "internal")


def test_split_is_written_once_then_read_and_seeded(tmp_path):
    frame = _frame()
    path = tmp_path / "splits.json"
    first = load_or_make_splits(frame, path, seed=1)
    stamp = path.stat().st_mtime_ns
    again = load_or_make_splits(frame, path, seed=99)  # an existing split wins over a new seed
    assert again == first and path.stat().st_mtime_ns == stamp
    assert make_splits(frame, seed=1) == first
    assert make_splits(frame, seed=2).cohorts != first.cohorts
    json.loads(path.read_text())  # plain, hand-editable JSON


def test_changed_manifest_is_reported_not_resplit(tmp_path):
    frame = _frame()
    path = tmp_path / "splits.json"
    load_or_make_splits(frame, path)
    grown = pd.concat([frame, pd.DataFrame([{"case_id": "new", "patient_id": "pnew", "label": "1"}])])
    with pytest.raises(SplitMismatch, match=r"new patients \['pnew'\].*delete"):
        load_or_make_splits(grown, path)
    relabelled = frame.assign(label=frame["label"].where(frame.index != 0, "2" if frame.loc[0, "label"] != "2" else "0"))
    with pytest.raises(SplitMismatch, match="labels or cohorts changed"):
        load_or_make_splits(relabelled, path)
