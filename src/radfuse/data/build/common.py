"""What every manifest builder shares: ROIs found in a source, what was skipped and why, grades, the writer.

A builder turns one kind of source (a folder tree, TotalSegmentator output, VerSe, a PyRadiomics CSV, DICOM-SEG,
RTSTRUCT) into `Roi`s and `Skipped` notes; `join_grades` adds the class of each ROI from the user's spreadsheet;
`write_manifest` writes the manifest (paths relative to its folder, one row per ROI) and `validate_written` runs the
validator on it, so a builder never hands over a manifest the stages would refuse without saying so.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import SimpleITK as sitk

from radfuse.data.build.labels import file_stem, header_label_map, roi_name
from radfuse.data.io import ImageReadError, read_image
from radfuse.data.manifest import CASE_ID, IMAGE, LABEL, MASK, MASK_LABEL, PATIENT_ID, SITE

MIN_VOXELS = 8  # the validator's smallest ROI
ROI = "roi"     # extra manifest column: the ROI's name (L1, liver, GTV): the key grades are joined on
MASK_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd")


class BuildError(ValueError):
    """A source that cannot be built at all (no such folder, a grades file without its key columns)."""


@dataclass
class Roi:
    patient_id: str
    roi: str                      # short name: L1, liver; grades are joined on (patient_id, roi)
    image: Path
    mask: Path
    mask_label: int | None = None
    scan: str | None = None       # a patient's scan when it has several (VerSe: sub-gl003_dir-ax); part of case_id
    extra: dict = field(default_factory=dict)  # other manifest columns (site, cohort, label, clinical)
    case: str | None = None       # the source's own case id, when it has one (a PyRadiomics CSV's ID column)

    @property
    def case_id(self) -> str:
        return safe_id(self.case or f"{self.scan or self.patient_id}_{self.roi}")


@dataclass(frozen=True)
class Skipped:
    case: str      # patient, or patient/ROI
    file: str
    reason: str

    def __str__(self) -> str:
        return f"skipped {self.case}: {self.reason}" + (f" ({self.file})" if self.file else "")


@dataclass
class Build:
    rois: list[Roi] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)

    def skip(self, case: str, file: object, reason: str) -> None:
        self.skipped.append(Skipped(str(case), str(file or ""), reason))


def safe_id(text: str) -> str:
    """A case id safe as a file name: letters, digits, '-', '_' and inner dots."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).lstrip(".") or "_"


def wanted(name: str, patterns: Sequence[str] | None) -> bool:
    """True when `patterns` is empty or one of them matches the raw or the short name (case-insensitive)."""
    if not patterns:
        return True
    names = {name.lower(), roi_name(name).lower()}
    return any(fnmatch.fnmatchcase(n, p.lower()) for p in patterns for n in names)


def is_mask_file(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(MASK_SUFFIXES)


def rois_of_mask(build: Build, patient: str, image: Path, mask: Path, label_names: dict[int, str] | None = None,
                 select: Sequence[str] | None = None, scan: str | None = None) -> list[Roi]:
    """One `Roi` per label of `mask` (names from its header, else `label_names`, else the file name), skipping
    empty and tiny ones; appended to `build.rois` and returned."""
    case = scan or patient
    try:
        array = sitk.GetArrayFromImage(read_image(mask))  # a view would outlive its image
    except ImageReadError as err:
        build.skip(case, mask, f"mask unreadable: {err}")
        return []
    values, counts = np.unique(array, return_counts=True)
    present = {int(v): int(c) for v, c in zip(values, counts) if v != 0}
    if not present:
        build.skip(case, mask, "the mask is empty (no voxel is labelled)")
        return []
    names = header_label_map(mask) or dict(label_names or {})
    binary = len(present) == 1 and (next(iter(present)) not in names or len(names) <= 1)
    found = []
    for label, count in sorted(present.items()):
        raw = file_stem(mask) if binary else names.get(label, f"label{label}")
        if not wanted(raw, select):
            continue
        name = roi_name(raw)
        if count < MIN_VOXELS:
            build.skip(f"{case}/{name}", mask, f"label {label} has {count} voxel(s), fewer than {MIN_VOXELS}")
            continue
        mask_label = None if binary and label == 1 else label
        found.append(Roi(patient, name, image, mask, mask_label, scan))
    build.rois.extend(found)
    return found


# ------------------------------------------------------------------------------------------------ grades
def read_table(path: str | Path) -> pd.DataFrame:
    """A CSV or an Excel sheet (the first), every cell as text (ids stay '007', not 7)."""
    path = Path(path)
    if not path.is_file():
        raise BuildError(f"grades file {path} does not exist: pass the CSV / XLSX that holds each ROI's class")
    if path.suffix.lower() in (".xlsx", ".xlsm", ".xls"):
        frame = pd.read_excel(path, dtype=str)
    else:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame


def join_grades(build: Build, grades: str | Path, patient_column: str = PATIENT_ID, roi_column: str | None = ROI,
                label_column: str = LABEL, require_label: bool = True) -> None:
    """Give each ROI its class from `grades` (by patient and ROI name, or by patient alone when the file has no ROI
    column); other columns of the file (age, sex, site, cohort) travel with it. ROIs without a grade are skipped,
    grades that match no ROI are reported. `require_label=False` (new patients to score): the file holds their
    clinical values, a label column is optional, an empty label is kept empty."""
    table = read_table(grades)
    if not require_label and label_column not in table.columns:
        table[label_column] = ""
    for column in (patient_column, label_column):
        if column not in table.columns:
            raise BuildError(f"grades file {grades} has no {column!r} column (it has {list(table.columns)}): name "
                             f"the columns with --grade-patient / --grade-label")
    by_roi = roi_column is not None and roi_column in table.columns
    keys = [patient_column] + ([roi_column] if by_roi else [])
    table[patient_column] = table[patient_column].str.strip()
    if by_roi:
        table[roi_column] = table[roi_column].map(lambda v: roi_name(str(v)))
    doubled = table[table[keys].apply(_key, axis=1).duplicated(keep=False)]
    if len(doubled):
        rows = ", ".join(str(i + 2) for i in doubled.index[:5])
        raise BuildError(f"grades file {grades}: {list(doubled[keys].iloc[0])} is graded more than once (rows "
                         f"{rows}): keep one grade per {' and '.join(keys)}")
    lookup = {_key(row[keys]): row for _, row in table.iterrows()}
    shown = {_key(row[keys]): "/".join(row[keys]) for _, row in table.iterrows()}
    carried = [c for c in table.columns if c not in keys]
    used, kept = set(), []
    for roi in build.rois:
        key = _key((roi.patient_id,) + ((roi.roi,) if by_roi else ()))
        row = lookup.get(key)
        if row is None or (require_label and not str(row[label_column]).strip()):
            build.skip(roi.case_id, grades, f"no grade for patient {roi.patient_id}"
                       + (f", ROI {roi.roi}" if by_roi else "") + f" in {Path(grades).name}")
            continue
        used.add(key)
        roi.extra.update({c: row[c] for c in carried})
        label = row[label_column]
        roi.extra[LABEL] = "" if pd.isna(label) else str(label).strip()
        kept.append(roi)
    for key in sorted(lookup.keys() - used):
        build.skip(shown[key], grades, "this grade matched no ROI found in the source (check the patient id and "
                                          "the ROI name)")
    build.rois = kept


def _key(values) -> tuple[str, ...]:
    """Patient ids match exactly, ROI names regardless of case (l1 = L1)."""
    values = [str(v).strip() for v in values]
    return tuple(values[:1] + [v.lower() for v in values[1:]])


# ------------------------------------------------------------------------------------------------ writer
def manifest_frame(build: Build, manifest: Path) -> pd.DataFrame:
    """The manifest rows: ids, paths relative to the manifest's folder, mask_label, label, roi, extra columns."""
    root = manifest.resolve().parent
    rows, seen = [], set()
    for roi in build.rois:
        if roi.case_id in seen:
            build.skip(roi.case_id, roi.mask, f"a second ROI named {roi.roi} for {roi.scan or roi.patient_id}: "
                                              "kept the first (rename one of the structures)")
            continue
        seen.add(roi.case_id)
        row = {CASE_ID: roi.case_id, PATIENT_ID: roi.patient_id, IMAGE: _relative(roi.image, root),
               MASK: _relative(roi.mask, root), MASK_LABEL: roi.mask_label, ROI: roi.roi}
        row.update({k: v for k, v in roi.extra.items() if k not in row})
        rows.append(row)
    frame = pd.DataFrame(rows, columns=_columns(rows))
    if LABEL not in frame.columns:
        frame[LABEL] = ""  # no grades given: the validator names every row; fill the column or pass --grades
    if MASK_LABEL in frame.columns:
        frame[MASK_LABEL] = frame[MASK_LABEL].astype("Int64")
    return frame


def _columns(rows: list[dict]) -> list[str]:
    first = [CASE_ID, PATIENT_ID, IMAGE, MASK, MASK_LABEL, LABEL, ROI, SITE]
    others = sorted({k for row in rows for k in row} - set(first))
    present = {k for row in rows for k in row}
    return [c for c in first if c in present] + others


def _relative(path: Path, root: Path) -> str:
    import os

    return Path(os.path.relpath(Path(path).resolve(), root)).as_posix()


def write_manifest(build: Build, manifest: str | Path) -> pd.DataFrame:
    """Write the manifest CSV (whole or not at all) and return its rows."""
    from radfuse.artifacts import atomic_path

    manifest = Path(manifest)
    if not build.rois:
        raise BuildError(f"no ROI was found, so {manifest} was not written:\n" + "\n".join(map(str, build.skipped))
                         if build.skipped else f"no ROI was found, so {manifest} was not written: check the source "
                                               "folder and the --image / --masks patterns")
    frame = manifest_frame(build, manifest)
    with atomic_path(manifest) as tmp:
        frame.to_csv(tmp, index=False)
    return frame


def validate_written(manifest: str | Path, n_folds: int = 1, modality: str = "ct") -> list:
    """The validator's problems for a written manifest (folds=1: the number of folds is the study's choice)."""
    from radfuse.data.manifest import read_manifest
    from radfuse.data.validate import validate_manifest

    return validate_manifest(read_manifest(manifest), n_folds=n_folds, manifest_file=str(manifest),
                             modality=modality)


def report(build: Build, frame: pd.DataFrame, manifest: Path) -> str:
    """What was written and what was skipped, per case."""
    lines = [str(s) for s in build.skipped]
    patients = frame[PATIENT_ID].nunique() if len(frame) else 0
    lines.append(f"wrote {manifest}: {len(frame)} ROI(s) of {patients} patient(s), {len(build.skipped)} skipped")
    return "\n".join(lines)
