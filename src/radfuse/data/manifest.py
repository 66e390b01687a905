"""The manifest: one CSV row per ROI (contract in DESIGN.md). Paths are relative to the manifest's folder."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

CASE_ID = "case_id"
PATIENT_ID = "patient_id"
IMAGE = "image"
MASK = "mask"
MASK_LABEL = "mask_label"
MASK2 = "mask2"
LABEL = "label"
SITE = "site"
COHORT = "cohort"

REQUIRED_COLUMNS = (CASE_ID, PATIENT_ID, IMAGE, MASK, LABEL)
OPTIONAL_COLUMNS = (MASK_LABEL, MASK2, SITE, COHORT)
PATH_COLUMNS = (IMAGE, MASK, MASK2)
COHORTS = ("train", "internal", "external", "prospective")


class ManifestError(ValueError):
    """A manifest that cannot be read at all (missing file, missing required columns)."""


def read_manifest(path: str | Path) -> pd.DataFrame:
    """Read a manifest CSV; path columns become absolute, ids become strings, order is kept.

    No row-level checks here: `radfuse.data.validate` reports every problem at once.
    """
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"manifest {path} does not exist: pass the path of your manifest CSV")
    frame = pd.read_csv(path, dtype={CASE_ID: str, PATIENT_ID: str}, keep_default_na=True)
    frame.columns = [c.strip() for c in frame.columns]
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise ManifestError(
            f"manifest {path} lacks required column(s) {missing}; a manifest needs "
            f"{list(REQUIRED_COLUMNS)} (optional: {list(OPTIONAL_COLUMNS)} and clinical columns)"
        )
    root = path.resolve().parent
    for column in PATH_COLUMNS:
        if column in frame.columns:
            frame[column] = [_resolve(root, value) for value in frame[column]]
    frame.attrs["manifest_path"] = str(path.resolve())
    return frame


def _resolve(root: Path, value: object) -> object:
    if not isinstance(value, str) or not value.strip():
        return value  # NaN / empty stays as is; validation reports it where it matters
    candidate = Path(value.strip())
    return str(candidate if candidate.is_absolute() else (root / candidate))
