"""Patient-grouped, label-stratified splits, written once to splits.json and then only read.

Rows with a `cohort` keep it. Patients without one are split train / internal (8:2 by default). CV folds are made
inside the train cohort. A patient is never in two cohorts or two folds. A manifest that changed since the split
was made is reported, never silently re-split: delete splits.json to split again.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold

from radfuse.artifacts import write_json
from radfuse.data.manifest import CASE_ID, COHORT, LABEL, PATIENT_ID
from radfuse.data.validate import label_str

SPLITS_VERSION = 1


class SplitMismatch(ValueError):
    """splits.json was made from another manifest."""


@dataclass(frozen=True)
class Splits:
    cohorts: dict[str, str]           # patient_id -> cohort
    folds: dict[str, int]             # train patient_id -> CV fold
    n_folds: int
    seed: int
    fingerprint: str

    def cohort_of(self, frame: pd.DataFrame) -> pd.Series:
        return frame[PATIENT_ID].astype(str).map(self.cohorts)

    def fold_of(self, frame: pd.DataFrame) -> pd.Series:
        return frame[PATIENT_ID].astype(str).map(self.folds)

    def to_json(self) -> dict:
        return {"version": SPLITS_VERSION, "seed": self.seed, "n_folds": self.n_folds,
                "manifest_fingerprint": self.fingerprint, "cohorts": self.cohorts, "folds": self.folds}


def manifest_fingerprint(frame: pd.DataFrame) -> str:
    """Hash of what a split depends on: which ROI belongs to which patient, its label and given cohort."""
    columns = [CASE_ID, PATIENT_ID, LABEL] + ([COHORT] if COHORT in frame.columns else [])
    rows = frame[columns].astype(str).sort_values(CASE_ID).to_csv(index=False)
    return hashlib.sha256(rows.encode()).hexdigest()


def make_splits(frame: pd.DataFrame, seed: int = 0, internal_fraction: float = 0.2, n_folds: int = 5) -> Splits:
    patients = _patient_table(frame)
    cohorts = patients[COHORT].astype(object)  # all-NaN (no cohort column) is float: strings must fit
    unassigned = cohorts.isna()
    if unassigned.any():
        cohorts[unassigned] = _split_internal(patients[unassigned], internal_fraction, seed)
    train = patients[cohorts == "train"]
    folds = _assign_folds(train, n_folds, seed)
    return Splits({str(p): str(c) for p, c in cohorts.items()}, folds, n_folds, seed, manifest_fingerprint(frame))


def _patient_table(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per patient: the most severe label (classes sorted) stratifies, a given cohort is kept."""
    table = pd.DataFrame({PATIENT_ID: frame[PATIENT_ID].astype(str), LABEL: frame[LABEL].map(label_str),
                          COHORT: frame[COHORT] if COHORT in frame.columns else np.nan})
    return table.groupby(PATIENT_ID).agg({LABEL: "max", COHORT: "first"})


def _split_internal(patients: pd.DataFrame, fraction: float, seed: int) -> pd.Series:
    out = pd.Series("train", index=patients.index, dtype=object)
    if fraction <= 0 or len(patients) < 2:
        return out
    n_splits = max(2, int(round(1 / fraction)))
    _, internal = next(_stratified_groups(patients, n_splits, seed))
    out.iloc[internal] = "internal"
    return out


def _assign_folds(train: pd.DataFrame, n_folds: int, seed: int) -> dict[str, int]:
    folds: dict[str, int] = {}
    if len(train) < n_folds:
        return folds
    for fold, (_, held_out) in enumerate(_stratified_groups(train, n_folds, seed)):
        for patient in train.index[held_out]:
            folds[str(patient)] = fold
    return folds


def _stratified_groups(patients: pd.DataFrame, n_splits: int, seed: int):
    # One row per patient already, so stratifying rows is stratifying patients and groups are trivially kept.
    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    labels = patients[LABEL].astype(str).to_numpy()
    return splitter.split(np.zeros(len(patients)), labels, groups=np.arange(len(patients)))


def load_or_make_splits(frame: pd.DataFrame, path: str | Path, seed: int = 0, internal_fraction: float = 0.2,
                        n_folds: int = 5) -> Splits:
    """Read splits.json if it exists (refusing one made from another manifest); else make and write it."""
    path = Path(path)
    if path.exists():
        splits = read_splits(path)
        current = manifest_fingerprint(frame)
        if splits.fingerprint != current:
            raise SplitMismatch(_mismatch_message(path, splits, frame))
        return splits
    splits = make_splits(frame, seed, internal_fraction, n_folds)
    write_json(path, splits.to_json())
    return splits


def read_splits(path: str | Path) -> Splits:
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    return Splits({str(k): v for k, v in data["cohorts"].items()}, {str(k): int(v) for k, v in data["folds"].items()},
                  int(data["n_folds"]), int(data["seed"]), data["manifest_fingerprint"])


def _mismatch_message(path: Path, splits: Splits, frame: pd.DataFrame) -> str:
    patients = set(frame[PATIENT_ID].astype(str))
    added, removed = sorted(patients - set(splits.cohorts)), sorted(set(splits.cohorts) - patients)
    detail = f"new patients {added[:10]}" if added else ""
    detail += f"{'; ' if detail else ''}patients gone {removed[:10]}" if removed else ""
    detail = detail or "ROIs, labels or cohorts changed for existing patients"
    return (f"{path} was made from a different manifest ({detail}). radfuse never re-splits silently: restore "
            f"the manifest, or delete {path} to make a new split (earlier results then no longer compare).")


def scoring_folds(fold: float | None, folds: Iterable[int], case: str = "") -> list[int]:
    """The fold models whose scores a case gets under `cross_fit`'s rule: [k] for a training case of fold k, every
    fold model for any other case (`fold` None or NaN). `extract.crossfit.cross_fit` applies
    it to the scores; Grad-CAM panels use it to map the CNN(s) that scored a case."""
    folds = sorted(int(k) for k in folds)
    if fold is None or pd.isna(fold):
        return folds
    if int(fold) not in folds:
        raise ValueError(f"case {case!r} is a training case of CV fold {int(fold)}, but only fold models {folds} "
                         f"are given: train the missing one (python train.py data.fold={int(fold)})")
    return [int(fold)]
