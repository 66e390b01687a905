"""PyRadiomics' batch CSV (`Image,Mask[,Label]`, one row per ROI) as a manifest.

PyRadiomics' `Label` is the mask's label value, so it becomes `mask_label`. A manifest needs two more things per
row that PyRadiomics does not: `patient_id` (the grouping key of the split) and `label` (the class). Add them as
columns of the CSV, or pass `--grades` with a patient_id / roi / label table. Paths are read relative to the CSV's
folder (then to the working directory, as PyRadiomics does); every other column (site, cohort, age, ...) is kept.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from radfuse.data.build.common import ROI, Build, BuildError, Roi, read_table
from radfuse.data.build.labels import header_label_map, roi_name
from radfuse.data.manifest import CASE_ID, LABEL, PATIENT_ID

IMAGE_COLUMN, MASK_COLUMN, LABEL_COLUMN = "Image", "Mask", "Label"
ID_COLUMNS = ("case_id", "ID", "id", "Case", "case")


def build_pyradiomics_csv(csv: str | Path, need_grades: bool = True) -> Build:
    """ROIs of a PyRadiomics batch CSV; `need_grades=False` when `--grades` will give the classes."""
    csv = Path(csv)
    table = read_table(csv)
    missing = [c for c in (IMAGE_COLUMN, MASK_COLUMN) if c not in table.columns]
    if missing:
        raise BuildError(f"{csv} lacks PyRadiomics' column(s) {missing}: a batch CSV has Image, Mask and optionally "
                         f"Label (it has {list(table.columns)})")
    needed = [PATIENT_ID] + ([LABEL] if need_grades else [])
    absent = [c for c in needed if c not in table.columns]
    if absent:
        raise BuildError(f"{csv}: add the column(s) {absent} that PyRadiomics does not need but a study does: "
                         "patient_id (the patient of each ROI: a patient never spans two folds) and label (the class "
                         "of the ROI; PyRadiomics' Label column is the mask value and becomes mask_label), or pass "
                         "--grades with patient_id, roi and label columns")
    build = Build()
    id_column = next((c for c in ID_COLUMNS if c in table.columns), None)
    for i, row in table.iterrows():
        where = f"row {i + 2}"
        patient = str(row[PATIENT_ID]).strip()
        if not patient:
            build.skip(where, csv, "empty patient_id: give every row its patient")
            continue
        image, mask = _path(csv, row[IMAGE_COLUMN]), _path(csv, row[MASK_COLUMN])
        label_text = str(row.get(LABEL_COLUMN, "") or "").strip()
        if label_text and not label_text.lstrip("-").isdigit():
            build.skip(where, csv, f"Label {label_text!r} is not a whole number (PyRadiomics' Label is the mask value)")
            continue
        mask_label = int(label_text) if label_text else None
        name = str(row.get(ROI, "") or "").strip() or _name(mask, mask_label, i)
        case = str(row[id_column]).strip() if id_column else None
        skip = {IMAGE_COLUMN, MASK_COLUMN, LABEL_COLUMN, PATIENT_ID, ROI, CASE_ID, id_column}
        extra = {c: row[c] for c in table.columns if c not in skip}
        build.rois.append(Roi(patient, roi_name(name), image, mask, mask_label, extra=extra, case=case or None))
    return build


def _name(mask: Path, mask_label: int | None, index: int) -> str:
    if mask_label is None:
        return f"roi{index + 1}"
    return header_label_map(mask).get(mask_label, f"label{mask_label}") if mask.is_file() else f"label{mask_label}"


def _path(csv: Path, value: object) -> Path:
    text = "" if pd.isna(value) else str(value).strip()
    candidate = Path(text)
    if candidate.is_absolute():
        return candidate
    beside = csv.resolve().parent / candidate
    return beside if beside.exists() or not candidate.exists() else candidate.resolve()
