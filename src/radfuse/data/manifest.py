"""The manifest: one CSV row per ROI (contract in DESIGN.md). Paths are relative to the manifest's folder."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Mapping

if TYPE_CHECKING:  # imported where a manifest is read: radiomics runs use this module's names only
    import pandas as pd

CASE_ID = "case_id"
PATIENT_ID = "patient_id"
IMAGE = "image"
MASK = "mask"
MASK_LABEL = "mask_label"
MASK2 = "mask2"
MASK_REPEAT = "mask_repeat"  # the same reader's repeat outline: intra-observer ICC
LABEL = "label"
SITE = "site"
COHORT = "cohort"

REQUIRED_COLUMNS = (CASE_ID, PATIENT_ID, IMAGE, MASK, LABEL)
OPTIONAL_COLUMNS = (MASK_LABEL, MASK2, MASK_REPEAT, SITE, COHORT)
PATH_COLUMNS = (IMAGE, MASK, MASK2, MASK_REPEAT)
SECOND_MASK_COLUMNS = (MASK2, MASK_REPEAT)  # mask2: another reader (inter-observer); mask_repeat: intra-observer
COHORTS = ("train", "internal", "external", "prospective")
# Written in a clinical column, these mean "not known": the value is missing and the pipeline imputes it.
# (pandas already reads '', 'NA', 'n/a', 'NaN', 'null', ... as missing.)
MISSING_TOKENS = frozenset({"", "n/a", "na", "nan", "none", "null", "unknown", "missing", "not available", "?", "-",
                            "--", "."})


class ManifestError(ValueError):
    """A manifest that cannot be read at all (missing file, missing required columns)."""


def read_manifest(path: str | Path) -> pd.DataFrame:
    """Read a manifest CSV; path columns become absolute, ids become strings, order is kept.

    No row-level checks here: `radfuse.data.validate` reports every problem at once.
    """
    import pandas as pd

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


def is_missing_token(value: object) -> bool:
    """True for NaN and for the strings of MISSING_TOKENS (any case, surrounding blanks ignored)."""
    import pandas as pd

    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return True
    return isinstance(value, str) and value.strip().lower() in MISSING_TOKENS


def coerce_clinical(frame: pd.DataFrame, clinical: Mapping[str, str]) -> pd.DataFrame:
    """The frame with each declared clinical column's missing tokens as NaN, numeric ones as numbers.

    Run after validation (which refuses any other non-number), so that the pipeline's imputers see every missing
    value as NaN and a numeric column stays numeric ('unknown' would otherwise make `age` a categorical column).
    """
    import pandas as pd

    out = frame.copy()
    for column, kind in clinical.items():
        if column not in out.columns:
            continue
        values = out[column].mask(out[column].map(is_missing_token))
        out[column] = pd.to_numeric(values, errors="coerce") if kind == "numeric" else values
    out.attrs = dict(frame.attrs)
    return out
