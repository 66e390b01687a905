"""The pre-flight of a whole study: what the chosen stages need from the data, checked before any of them fits.

Plain objects in, `Problem`s out (radfuse.stages.preflight reads the study's configs and calls these; the train
and fuse stages call them too, right after they validate the manifest):
- `internal_cohort_problems`: a train run that chooses its checkpoint (or stops early) on the validation data
  validates on the internal cohort; without one it trains, writes no best.ckpt and says nothing.
- `inner_fold_problems`: a LASSO step chooses its penalty by an inner CV inside each outer training fold; a class
  with fewer than 2 patients there cannot be fitted (refused), one with fewer patients than the inner folds asked
  for silently gets fewer folds (warned, with the numbers and the key that says so).
- `site_problems` / `second_reader_problems`: ComBat needs two sites, the ICC filter a second reader's masks.
"""

from __future__ import annotations

from collections import Counter
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from radfuse.data.manifest import COHORT, LABEL, SITE
from radfuse.data.problems import WARNING, WHOLE_TABLE, Problem

MIN_LASSO_PATIENTS = 2  # an inner CV needs a patient of each class on both sides of every split


def cohort_counts(patient_cohorts: Mapping[str, str]) -> str:
    """'train: 10 patient(s), external: 2 patient(s)' in study order."""
    counts = Counter(patient_cohorts.values())
    order = ["train", "internal", "external", "prospective"]
    return ", ".join(f"{c}: {counts[c]} patient(s)" for c in sorted(counts, key=lambda c: (
        order.index(c) if c in order else len(order), c)))


def internal_cohort_problems(patient_cohorts: Mapping[str, str], needs: Sequence[tuple[str, str]], run: str,
                             manifest_file: str) -> list[Problem]:
    """An error when a train run chooses on its validation data (`needs`: (config key, what it does)) and the
    split (patient -> cohort) has no internal cohort to validate on."""
    if not needs or "internal" in set(patient_cohorts.values()):
        return []
    what = "; ".join(text for _, text in needs)
    opt_out = " ".join(f"{key}=null" for key, _ in needs)
    return [Problem(
        WHOLE_TABLE, COHORT, manifest_file,
        f"the train run {run!r} validates on the internal cohort to choose its checkpoint ({what}), and the split "
        f"has no internal cohort ({cohort_counts(patient_cohorts)}): it would train, write no best.ckpt and exit 0",
        "give some patients cohort 'internal' in the manifest, or leave their cohort empty so that "
        "data.split.internal_fraction of them become internal (delete splits.json to split again); or train "
        f"without a choice on validation data: {opt_out} (only last.ckpt is written, and Grad-CAM, "
        "report.train_run, which reads best.ckpt, is skipped); fold runs (data.fold=k) validate on their CV fold")]


def inner_fold_problems(labels: pd.Series, patients: pd.Series, parts: Mapping[str, np.ndarray],
                        n_splits: Mapping[str, int], classes: Sequence[str], manifest_file: str,
                        folds_text: str) -> list[Problem]:
    """The inner LASSO CV of each training part (outer training folds and the whole training cohort).

    `labels` / `patients`: one entry per training ROI; `parts`: name -> boolean mask over those ROIs; `n_splits`:
    config key -> inner folds it asks for. LassoSelector uses min(n_splits, ROIs of the rarest class) inner folds,
    grouped by patient: below 2 patients of a class some inner training fold lacks the class (refused); below
    n_splits patients the inner CV has fewer folds than asked for, or folds holding none of that class out (warned).
    """
    labels, patients = labels.reset_index(drop=True), patients.reset_index(drop=True)
    problems = []
    by_k: dict[int, list[str]] = {}
    for key, k in n_splits.items():
        by_k.setdefault(int(k), []).append(key)
    for k, keys in sorted(by_k.items()):
        asked = ", ".join(f"{key}={k}" for key in keys)
        off = " ".join(f"{key.removesuffix('.n_splits')}=null" for key in keys)
        fewest: dict[str, tuple[int, int, str]] = {}  # class -> (patients, ROIs, part) where it has the fewest
        used = {}  # part -> inner folds LassoSelector uses there
        for part, mask in parts.items():
            mask = np.asarray(mask, bool)
            rows = labels[mask].value_counts()
            used[part] = min(k, int(min(rows.get(c, 0) for c in classes)))
            for c in classes:
                n = int(patients[mask & (labels == c).to_numpy()].nunique())
                if c not in fewest or n < fewest[c][0]:
                    fewest[c] = (n, int(rows.get(c, 0)), part)
        short = {c: v for c, v in fewest.items() if v[0] < k}
        refused = {c: v for c, v in short.items() if v[0] < MIN_LASSO_PATIENTS}
        for c, (n, rois, part) in refused.items():
            problems.append(Problem(
                WHOLE_TABLE, LABEL, manifest_file,
                f"the inner LASSO CV ({asked}) needs at least {MIN_LASSO_PATIENTS} patients of each class in every "
                f"outer training fold; class {c!r} has {n} patient(s) ({rois} ROI(s)) in {part} ({folds_text}): "
                f"some inner training fold would hold no {c!r} and the fit fails",
                f"add patients of class {c!r}, use fewer outer folds (data.split.n_folds, or cv.n_splits with "
                f"cv.folds=fresh) so each outer training fold keeps {MIN_LASSO_PATIENTS} of them, merge classes, "
                f"or leave the LASSO out ({off})"))
        if short and not refused:
            part = min(used, key=lambda p: (used[p], list(parts).index(p)))
            holds = "; ".join(f"class {c!r} has {n} patient(s) ({rois} ROI(s)) in {where}"
                              for c, (n, rois, where) in short.items())
            patients_there = min(n for n, _, _ in short.values())
            empty = (f", and {used[part] - patients_there} of them hold out no patient of the rarest class"
                     if used[part] > patients_there else "")
            problems.append(Problem(
                WHOLE_TABLE, LABEL, manifest_file,
                f"the inner LASSO CV asks for {k} inner folds ({asked}) and {holds} ({folds_text}): the LASSO "
                f"uses {used[part]} inner folds in {part}{empty}, so fewer folds than configured choose its penalty",
                "say so in the study file: " + " ".join(f"{key}={patients_there}" for key in keys)
                + ", or add patients of the classes named", severity=WARNING))
    return problems


def site_problems(sites: pd.Series | None, key: str, manifest_file: str, column: str = SITE) -> list[Problem]:
    """ComBat (at config key `key`) on the training ROIs' sites (None: the manifest has no such column)."""
    fix = f"for single-site data leave ComBat out ({key}=null); else give every ROI its site (column {column})"
    if sites is None:
        return [Problem(WHOLE_TABLE, column, manifest_file,
                        f"ComBat ({key}) harmonises sites, and the manifest has no {column} column", fix)]
    counts = sites.dropna().astype(str).value_counts()
    if len(counts) < 2:
        return [Problem(WHOLE_TABLE, column, manifest_file,
                        f"ComBat ({key}) needs at least 2 sites in the training cohort, and it has "
                        f"{len(counts)} ({', '.join(counts.index) or 'none'})", fix)]
    single = counts[counts < 2]
    if len(single):
        return [Problem(WHOLE_TABLE, column, manifest_file,
                        f"ComBat ({key}) needs at least 2 training ROIs per site; site(s) {list(single.index)} have 1",
                        f"merge them with a similar site, or leave ComBat out ({key}=null)")]
    return []


def second_reader_problems(column: str, present: bool, key: str, manifest_file: str) -> list[Problem]:
    """The ICC filter (at `key`) needs the ICC table that extract computes from the manifest's `column` masks."""
    if present:
        return []
    return [Problem(WHOLE_TABLE, column, manifest_file,
                    f"the ICC filter ({key}) keeps features reproducible between two outlines, and the manifest has "
                    f"no {column} mask to compute the ICC from",
                    f"leave the ICC filter out ({key}=null), or give the ROIs a {column} column (a second outline)")]
