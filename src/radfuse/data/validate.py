"""Manifest validation: every problem of every row, reported at once, each naming case, column, file and fix.

`python -m radfuse.data.validate MANIFEST [--classes 0 1 2] [--clinical age:numeric sex:categorical] [--folds 5]`
exits non-zero on any error and writes nothing. Every stage calls `ensure_valid` before it works.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass
from typing import Iterable, Mapping

import numpy as np
import pandas as pd
import SimpleITK as sitk

from radfuse.data import io
from radfuse.data.manifest import (CASE_ID, COHORT, COHORTS, IMAGE, LABEL, MASK, MASK2, MASK_LABEL, PATIENT_ID,
                                   read_manifest)

NUMERIC, CATEGORICAL = "numeric", "categorical"


@dataclass(frozen=True)
class Problem:
    case_id: str
    column: str
    file: str
    message: str
    fix: str

    def __str__(self) -> str:
        where = f" (file: {self.file})" if self.file else ""
        return f"[case {self.case_id}] {self.column}: {self.message}{where}. Fix: {self.fix}"


class ManifestInvalid(ValueError):
    def __init__(self, problems: list[Problem], manifest: str = "manifest"):
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{manifest}: {len(problems)} problem(s):\n{lines}")


def label_str(value: object) -> str | None:
    """Class labels compare as strings; 1, 1.0 and '1' are the same class."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value).strip()


def validate_manifest(frame: pd.DataFrame, classes: Iterable[str] | None = None,
                      clinical: Mapping[str, str] | None = None, n_folds: int = 5,
                      resample_masks: bool = False, manifest_file: str = "") -> list[Problem]:
    """All problems of a manifest read by `read_manifest`; an empty list means valid."""
    problems = _table_problems(frame, classes, clinical or {}, n_folds, manifest_file)
    headers: dict[str, io.Geometry | Exception] = {}
    for _, row in frame.iterrows():
        problems.extend(_row_problems(row, headers, resample_masks))
    return problems


def ensure_valid(frame: pd.DataFrame, **kwargs) -> None:
    problems = validate_manifest(frame, **kwargs)
    if problems:
        raise ManifestInvalid(problems, frame.attrs.get("manifest_path", "manifest"))


# ---------------------------------------------------------------------------------------------- whole table
def _table_problems(frame, classes, clinical, n_folds, manifest_file) -> list[Problem]:
    problems: list[Problem] = []
    for column in (CASE_ID, PATIENT_ID):
        for case in frame.loc[frame[column].isna() | (frame[column].astype(str).str.strip() == ""), CASE_ID]:
            problems.append(Problem(str(case), column, manifest_file, f"empty {column}",
                                    f"give every row a {column}"))
    duplicated = frame[CASE_ID][frame[CASE_ID].duplicated(keep=False)].dropna().unique()
    for case in duplicated:
        problems.append(Problem(str(case), CASE_ID, manifest_file, "case_id appears more than once",
                                "make case_id unique (one row per ROI, e.g. <patient>_<vertebra>)"))
    problems += _cohort_problems(frame, manifest_file)
    problems += _label_problems(frame, classes, n_folds, manifest_file)
    problems += _clinical_problems(frame, clinical, manifest_file)
    return problems


def _cohort_problems(frame, manifest_file) -> list[Problem]:
    if COHORT not in frame.columns:
        return []
    problems = []
    for _, row in frame[frame[COHORT].notna() & ~frame[COHORT].isin(COHORTS)].iterrows():
        problems.append(Problem(str(row[CASE_ID]), COHORT, manifest_file, f"unknown cohort {row[COHORT]!r}",
                                f"use one of {list(COHORTS)} or leave it empty to be split automatically"))
    cohorts_per_patient = frame.dropna(subset=[COHORT]).groupby(PATIENT_ID)[COHORT].nunique()
    for patient in cohorts_per_patient[cohorts_per_patient > 1].index:
        rows = frame[frame[PATIENT_ID] == patient]
        for _, row in rows.iterrows():
            problems.append(Problem(str(row[CASE_ID]), COHORT, manifest_file,
                                    f"patient {patient} is in cohorts {sorted(rows[COHORT].dropna().unique())}",
                                    "put all ROIs of a patient in one cohort (a patient is never split)"))
    return problems


def _label_problems(frame, classes, n_folds, manifest_file) -> list[Problem]:
    problems = []
    labels = frame[LABEL].map(label_str)
    allowed = None if classes is None else [str(c) for c in classes]
    for case, raw, label in zip(frame[CASE_ID], frame[LABEL], labels):
        if label is None:
            problems.append(Problem(str(case), LABEL, manifest_file, "no label", "give every ROI its class"))
        elif allowed is not None and label not in allowed:
            problems.append(Problem(str(case), LABEL, manifest_file, f"label {raw!r} is not a configured class",
                                    f"use one of {allowed} or add it to the configured classes"))
    train = frame[COHORT].isin(["train"]) if COHORT in frame.columns and (frame[COHORT] == "train").any() \
        else pd.Series(True, index=frame.index)
    patients = frame[train].assign(_label=labels[train]).groupby("_label")[PATIENT_ID].nunique()
    for label in (allowed or sorted(patients.index)):
        count = int(patients.get(label, 0))
        if count < n_folds:
            problems.append(Problem("*", LABEL, manifest_file,
                                    f"class {label!r} has {count} training patient(s), fewer than {n_folds} CV folds",
                                    "lower the number of folds, merge classes, or add patients of that class"))
    return problems


def _clinical_problems(frame, clinical, manifest_file) -> list[Problem]:
    problems = []
    for column, kind in clinical.items():
        if column not in frame.columns:
            problems.append(Problem("*", column, manifest_file, "declared clinical column is missing",
                                    f"add a {column} column or remove it from the configured clinical columns"))
            continue
        for case, value in zip(frame[CASE_ID], frame[column]):
            if pd.isna(value):
                problems.append(Problem(str(case), column, manifest_file, "missing value (NaN)",
                                        f"fill {column}, or drop the row"))
            elif kind == NUMERIC and pd.isna(pd.to_numeric(value, errors="coerce")):
                problems.append(Problem(str(case), column, manifest_file, f"{value!r} is not a number",
                                        f"{column} is declared numeric: write a number"))
    return problems


# ---------------------------------------------------------------------------------------------- per row
def _row_problems(row: pd.Series, headers: dict, resample_masks: bool) -> list[Problem]:
    case = str(row[CASE_ID])
    image_path = row[IMAGE]
    header = _cached_header(image_path, headers)
    if isinstance(header, Exception):
        return [Problem(case, IMAGE, str(image_path), f"image unreadable: {header}",
                        "fix the path (relative to the manifest's folder) or re-export the image")]
    wanted = row.get(MASK_LABEL)
    label, problems = _mask_label(case, wanted)
    for column in (MASK, MASK2):
        path = row.get(column)
        if column == MASK2 and (path is None or (isinstance(path, float) and math.isnan(path))):
            continue
        problems += _mask_problems(case, column, path, header, label, resample_masks)
    return problems


def _mask_label(case: str, value: object) -> tuple[int | None, list[Problem]]:
    if value is None or pd.isna(value):
        return None, []
    try:
        if float(value) != int(float(value)):
            raise ValueError
        return int(float(value)), []
    except (TypeError, ValueError):
        return None, [Problem(case, MASK_LABEL, "", f"mask_label {value!r} is not an integer",
                              "write the integer label of this ROI in the mask, or leave it empty")]


def _mask_problems(case, column, path, image_header, label, resample_masks) -> list[Problem]:
    try:
        mask = io.read_image(path)
    except (io.ImageReadError, TypeError) as err:
        return [Problem(case, column, str(path), f"mask unreadable: {err}",
                        "fix the path (relative to the manifest's folder) or re-export the mask")]
    reference = sitk.Image([int(s) for s in image_header.size], sitk.sitkUInt8)
    reference.SetSpacing(image_header.spacing)
    reference.SetOrigin(image_header.origin)
    reference.SetDirection(image_header.direction)
    try:
        mask = io.align_mask(mask, reference, resample=resample_masks)
    except io.GeometryMismatch as err:
        return [Problem(case, column, str(path), f"geometry mismatch: {err}",
                        "export the mask on the image's grid, or opt in to nearest-neighbour resampling "
                        "(data.resample_masks=true / --resample-masks)")]
    return _label_content_problems(case, column, str(path), mask, label)


def _label_content_problems(case, column, path, mask, label) -> list[Problem]:
    present = io.mask_labels(mask)
    if not present:
        return [Problem(case, column, path, "empty ROI: the mask has no foreground voxel",
                        "segment the ROI or drop the row")]
    if label is None and len(present) > 1:
        return [Problem(case, column, path, f"mask holds several labels {present} and no mask_label is given",
                        "set mask_label to the label of this ROI (one row per label)")]
    if label is not None and label not in present:
        return [Problem(case, MASK_LABEL, path, f"label {label} is absent from the mask (present: {present})",
                        "set mask_label to a label the mask holds")]
    return []


def _cached_header(path, headers: dict):
    key = str(path)
    if key not in headers:
        try:
            headers[key] = io.read_header(path)
        except (io.ImageReadError, TypeError) as err:
            headers[key] = err
    return headers[key]


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m radfuse.data.validate", description=__doc__.split("\n")[0])
    parser.add_argument("manifest")
    parser.add_argument("--classes", nargs="*", default=None, help="allowed class labels")
    parser.add_argument("--clinical", nargs="*", default=[], help="declared clinical columns, name[:kind]")
    parser.add_argument("--folds", type=int, default=5, help="CV folds (each class needs that many patients)")
    parser.add_argument("--resample-masks", action="store_true", help="allow nearest resampling of masks")
    args = parser.parse_args(argv)
    try:
        frame = read_manifest(args.manifest)
    except ValueError as err:
        print(err, file=sys.stderr)
        return 2
    problems = validate_manifest(frame, args.classes, parse_clinical(args.clinical), args.folds,
                                 args.resample_masks, manifest_file=args.manifest)
    for problem in problems:
        print(problem, file=sys.stderr)
    cases = {p.case_id for p in problems}
    print(f"{args.manifest}: {len(frame)} ROI(s), {len(problems)} problem(s) in {len(cases)} case(s)"
          + ("" if problems else ": valid"))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
