"""Manifest validation: every problem of every row, reported at once, each naming case, row, column, file and fix.

`python -m radfuse.data.validate MANIFEST [--classes 0 1 2] [--clinical age:numeric sex:categorical] [--folds 5]
[--modality ct|other]` exits 2 on any error and writes nothing; warnings (judgements such as a missing clinical value
that will be imputed) are printed and do not fail it. `python -m radfuse.data.validate --config-dir STUDY_DIR
experiment=study [key=value ...]` validates a study's manifest with the study's own settings and checks what its
stages need of the data (radfuse.stages.preflight: internal cohort, inner LASSO folds, sites, second reader).
Every stage calls `ensure_valid` before it works. The list of checks, with their messages, is docs/validate.md.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from typing import Iterable, Mapping

import numpy as np
import pandas as pd

from radfuse.data.manifest import (CASE_ID, COHORT, COHORTS, LABEL, PATIENT_ID, is_missing_token, read_manifest)
from radfuse.data.problems import (ERROR, WARNING, WHOLE_TABLE, ManifestInvalid, Problem,  # noqa: F401
                                   case_text, errors)
from radfuse.data.validate_files import MODALITIES, LastImage, RowContext, image_leak_problems, row_problems

NUMERIC, CATEGORICAL = "numeric", "categorical"
HELD_OUT_COHORTS = ("internal", "external", "prospective")
log = logging.getLogger(__name__)


def label_str(value: object) -> str | None:
    """Class labels compare as strings; 1, 1.0 and '1' are the same class."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value).strip()


def validate_manifest(frame: pd.DataFrame, classes: Iterable[str] | None = None,
                      clinical: Mapping[str, str] | None = None, n_folds: int = 5,
                      resample_masks: bool = False, manifest_file: str = "", modality: str = "ct",
                      margin: int | None = None) -> list[Problem]:
    """All problems (errors and warnings) of a manifest read by `read_manifest`; no error means valid.

    `modality="other"` turns off the CT plausibility checks (values in HU); NaN under an ROI is refused always.
    `margin` (the crop stage's data.margin) is named in the warning about an ROI cut by the edge of the scan.
    """
    if modality not in MODALITIES:
        raise ValueError(f"modality {modality!r}: use one of {list(MODALITIES)} (data.modality / --modality)")
    frame = frame.reset_index(drop=True)  # row i is the manifest's row i + 2 (the header is row 1)
    problems = _table_problems(frame, classes, clinical or {}, n_folds, manifest_file)
    problems += image_leak_problems(frame)
    images = LastImage(modality)
    for i, (_, row) in enumerate(frame.iterrows()):
        context = RowContext(case_text(row[CASE_ID]), i + 2, manifest_file, resample_masks, modality,
                             None if margin is None else int(margin))
        problems.extend(row_problems(row, context, images))
    return problems


def ensure_valid(frame: pd.DataFrame, **kwargs) -> None:
    """Raise `ManifestInvalid` on any error; log each warning."""
    problems = validate_manifest(frame, **kwargs)
    for problem in problems:
        if not problem.is_error:
            log.warning("manifest: %s", problem)
    if errors(problems):
        raise ManifestInvalid(errors(problems), frame.attrs.get("manifest_path", "manifest"))


# ---------------------------------------------------------------------------------------------- whole table
def _table_problems(frame, classes, clinical, n_folds, manifest_file) -> list[Problem]:
    problems = _id_problems(frame, manifest_file)
    problems += _cohort_problems(frame, manifest_file)
    problems += _label_problems(frame, classes, n_folds, manifest_file)
    problems += _clinical_problems(frame, clinical, manifest_file)
    return problems


def _rows(frame: pd.DataFrame, where: pd.Series):
    """(row number, case id, row) of the rows where `where` holds."""
    for i in np.flatnonzero(where.to_numpy()):
        yield int(i) + 2, case_text(frame[CASE_ID].iloc[i]), frame.iloc[i]


def _cases(frame: pd.DataFrame, where: pd.Series, limit: int = 5) -> str:
    cases = [str(c) for c in frame.loc[where, CASE_ID]]
    more = f" and {len(cases) - limit} more" if len(cases) > limit else ""
    return ("case " if len(cases) == 1 else "cases ") + ", ".join(cases[:limit]) + more


def _id_problems(frame, manifest_file) -> list[Problem]:
    problems = []
    for column in (CASE_ID, PATIENT_ID):
        empty = frame[column].isna() | (frame[column].astype(str).str.strip() == "")
        for row, case, _ in _rows(frame, empty):
            problems.append(Problem(str(case), column, manifest_file, f"empty {column}",
                                    f"give every row a {column}", row=row))
    duplicated = frame[CASE_ID].duplicated(keep=False) & frame[CASE_ID].notna()
    for row, case, _ in _rows(frame, duplicated):
        problems.append(Problem(str(case), CASE_ID, manifest_file, "case_id appears more than once",
                                "make case_id unique (one row per ROI, e.g. <patient>_<vertebra>)", row=row))
    unsafe = frame[CASE_ID].map(_unsafe_in_file_names)
    for row, case, _ in _rows(frame, unsafe.notna()):
        problems.append(Problem(str(case), CASE_ID, manifest_file,
                                f"case_id holds a path character ({unsafe.iloc[row - 2]}); case ids become file "
                                "names of caches and figures",
                                "rename the case with letters, digits, '-', '_' and inner dots only", row=row))
    return problems


def _unsafe_in_file_names(case: object) -> str | None:
    """What makes a case id unsafe as a file name, or None."""
    if not isinstance(case, str) or not case:
        return None
    if "/" in case or "\\" in case:
        return "a slash or backslash"
    if case.startswith("."):
        return "a leading dot: '.', '..' or a hidden file"
    if any(not c.isprintable() for c in case):
        return "a control character"
    return None


def _cohort_problems(frame, manifest_file) -> list[Problem]:
    if COHORT not in frame.columns:
        return []
    problems = []
    for row, case, values in _rows(frame, frame[COHORT].notna() & ~frame[COHORT].isin(COHORTS)):
        problems.append(Problem(str(case), COHORT, manifest_file, f"unknown cohort {values[COHORT]!r}",
                                f"use one of {list(COHORTS)} or leave it empty to be split automatically", row=row))
    cohorts_per_patient = frame.dropna(subset=[COHORT]).groupby(PATIENT_ID)[COHORT].nunique()
    for patient in cohorts_per_patient[cohorts_per_patient > 1].index:
        mine = frame[PATIENT_ID] == patient
        cohorts = sorted(frame.loc[mine, COHORT].dropna().unique())
        for row, case, _ in _rows(frame, mine):
            problems.append(Problem(str(case), COHORT, manifest_file, f"patient {patient} is in cohorts {cohorts}",
                                    "put all ROIs of a patient in one cohort (a patient is never split)", row=row))
    return problems


def _label_problems(frame, classes, n_folds, manifest_file) -> list[Problem]:
    problems = []
    labels = pd.Series([label_str(v) for v in frame[LABEL]], index=frame.index, dtype=object)
    allowed = None if classes is None else [str(c) for c in classes]
    for row, case, values in _rows(frame, labels.isna()):
        problems.append(Problem(str(case), LABEL, manifest_file, "no label", "give every ROI its class", row=row))
    if allowed is not None:
        for row, case, _ in _rows(frame, labels.notna() & ~labels.isin(allowed)):
            problems.append(Problem(case, LABEL, manifest_file,
                                    f"label {labels.iloc[row - 2]!r} is not a configured class",
                                    f"use one of {allowed} or add it to the configured classes", row=row))
    problems += _fold_problems(frame, labels, allowed, n_folds, manifest_file)
    problems += _one_class_cohorts(frame, labels, manifest_file)
    return problems


def _fold_problems(frame, labels, allowed, n_folds, manifest_file) -> list[Problem]:
    has_train = COHORT in frame.columns and (frame[COHORT] == "train").any()
    train = frame[COHORT].isin(["train"]) if has_train else pd.Series(True, index=frame.index)
    patients = frame[train].assign(_label=labels[train]).groupby("_label")[PATIENT_ID].nunique()
    problems = []
    for label in (allowed or sorted(patients.index)):
        count = int(patients.get(label, 0))
        if count < n_folds:
            of_class = f" ({_cases(frame, train & (labels == label))})" if count else ""
            problems.append(Problem(WHOLE_TABLE, LABEL, manifest_file,
                                    f"class {label!r} has {count} training patient(s){of_class}, fewer than "
                                    f"{n_folds} CV folds",
                                    "lower the number of folds, merge classes, or add patients of that class"))
    return problems


def _one_class_cohorts(frame, labels, manifest_file) -> list[Problem]:
    """A held-out cohort of one class has no AUC: warn now rather than at the end of fuse."""
    if COHORT not in frame.columns:
        return []
    problems = []
    for cohort in HELD_OUT_COHORTS:
        inside = (frame[COHORT] == cohort) & labels.notna()
        present = labels[inside].unique()
        if len(present) == 1:
            problems.append(Problem(
                WHOLE_TABLE, LABEL, manifest_file,
                f"cohort {cohort!r} holds one class only ({present[0]!r}: {int(inside.sum())} ROI(s) of "
                f"{frame.loc[inside, PATIENT_ID].nunique()} patient(s), {_cases(frame, inside)})",
                "add cases of the other classes to it; otherwise its AUC is undefined (accuracy and calibration "
                "are still reported)", severity=WARNING))
    return problems


def _clinical_problems(frame, clinical, manifest_file) -> list[Problem]:
    problems = []
    for column, kind in clinical.items():
        if column not in frame.columns:
            problems.append(Problem(WHOLE_TABLE, column, manifest_file, "declared clinical column is missing",
                                    f"add a {column} column or remove it from the configured clinical columns"))
            continue
        missing = frame[column].map(is_missing_token)
        if missing.all():
            problems.append(Problem(WHOLE_TABLE, column, manifest_file, f"every value of {column} is missing",
                                    f"fill {column}, or remove it from the declared clinical columns "
                                    "(data.clinical / --clinical)"))
            continue
        imputed = "the median" if kind == NUMERIC else "the most frequent category"
        for row, case, values in _rows(frame, missing):
            value = values[column]
            shown = f" ({value!r})" if isinstance(value, str) and value.strip() else " (blank or NA)"
            problems.append(Problem(str(case), column, manifest_file, f"missing{shown}",
                                    f"it will be imputed with {imputed} of the training data; fill {column} if it "
                                    "is known", row=row, severity=WARNING))
        if kind == NUMERIC:
            problems += _not_numbers(frame, column, ~missing, manifest_file)
    return problems


def _not_numbers(frame, column, present, manifest_file) -> list[Problem]:
    problems = []
    not_number = present & pd.to_numeric(frame[column].where(present), errors="coerce").isna()
    for row, case, values in _rows(frame, not_number):
        value = values[column]
        comma = isinstance(value, str) and not pd.isna(pd.to_numeric(value.replace(",", "."), errors="coerce"))
        fix = (f"write it with a decimal point ({value.replace(',', '.')})" if comma else
               f"{column} is declared numeric: write a number, or leave it blank (it is then imputed)")
        problems.append(Problem(str(case), column, manifest_file, f"{value!r} is not a number", fix, row=row))
    return problems


# ---------------------------------------------------------------------------------------------- CLI
def parse_clinical(specs: Iterable[str]) -> dict[str, str]:
    """'age:numeric' / 'sex:categorical' / 'age' (numeric) -> {name: kind}."""
    out = {}
    for spec in specs:
        name, _, kind = spec.partition(":")
        out[name] = kind or NUMERIC
        if out[name] not in (NUMERIC, CATEGORICAL):
            raise SystemExit(f"--clinical {spec}: kind must be {NUMERIC} or {CATEGORICAL}")
    return out


STUDY_FLAGS = ("--config-dir", "-cd")
FLAG_KEYS = {"--classes": "data.classes=[0,1]", "--clinical": "data.clinical={age: numeric}",
             "--folds": "data.split.n_folds=5", "--resample-masks": "data.resample_masks=true",
             "--modality": "data.modality=other"}


def _is_study_mode(argv: list[str]) -> bool:
    """`--config-dir` or a key=value override (a manifest whose path holds '=' is still a manifest)."""
    import os

    return any(a in STUDY_FLAGS or a.startswith("--config-dir=") or
               ("=" in a and not a.startswith("-") and not os.path.exists(a)) for a in argv)


def study_main(argv: list[str]) -> int:
    """`--config-dir STUDY_DIR experiment=study [key=value ...]`: the study's pre-flight (radfuse.stages.preflight),
    configured as every stage is, by the study file and overrides; the flags of the manifest mode do not apply."""
    from pathlib import Path

    from radfuse.stages.preflight import main as preflight_main
    from radfuse.stages.study import config_dirs

    dirs = config_dirs(argv)
    rest, skip = [], False
    for i, arg in enumerate(argv):
        if skip:
            skip = False
            continue
        if arg in STUDY_FLAGS:
            skip = True
            continue
        if arg.startswith("--config-dir="):
            continue
        rest.append(arg)
    flags = [a for a in rest if a.startswith("-")]
    if flags:
        keys = ", ".join(FLAG_KEYS.get(f, f) for f in flags)
        print(f"[radfuse] error: {' '.join(flags)}: a study is configured by its study file and key=value "
              f"overrides, as every stage is (here: {keys})", file=sys.stderr)
        return 2
    return preflight_main(rest, [Path(d) for d in dirs])


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if _is_study_mode(argv):
        return study_main(argv)
    parser = argparse.ArgumentParser(prog="python -m radfuse.data.validate", description=__doc__.split("\n")[0])
    parser.add_argument("manifest")
    parser.add_argument("--classes", nargs="*", default=None, help="allowed class labels")
    parser.add_argument("--clinical", nargs="*", default=[], help="declared clinical columns, name[:kind]")
    parser.add_argument("--folds", type=int, default=5, help="CV folds (each class needs that many patients)")
    parser.add_argument("--resample-masks", action="store_true", help="allow nearest resampling of masks")
    parser.add_argument("--modality", choices=MODALITIES, default="ct",
                        help="ct (default): images must be in HU; other: no HU checks (data.modality)")
    args = parser.parse_args(argv)
    try:
        frame = read_manifest(args.manifest)
    except ValueError as err:
        print(err, file=sys.stderr)
        return 2
    problems = validate_manifest(frame, args.classes, parse_clinical(args.clinical), args.folds,
                                 args.resample_masks, manifest_file=args.manifest, modality=args.modality)
    for problem in problems:
        print(problem, file=sys.stderr)
    failed = errors(problems)
    cases = {p.case_id for p in failed}
    print(f"{args.manifest}: {len(frame)} ROI(s), {len(failed)} error(s) in {len(cases)} case(s), "
          f"{len(problems) - len(failed)} warning(s)" + ("" if failed else ": valid"))
    return 2 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
