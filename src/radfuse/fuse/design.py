"""The design frame: one row per ROI (index `case_id`), feature columns `<block>__*`, clinical columns
`clinical__<name>`, and non-feature columns `meta__site` / `meta__<covariate>` that ComBat consumes and drops.

Every block's columns carry the block's name as prefix, so a pipeline step selects its block by prefix and two
deep tables (e.g. RadImageNet and ImageNet runs) never clash: table columns `deep__avgpool_0` of block
`deep_imagenet` become `deep_imagenet__avgpool_0`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from radfuse.artifacts import DEEP_PREFIX, KEY_COLUMN, RAD_PREFIX
from radfuse.data.manifest import COHORT, LABEL, PATIENT_ID, SITE

META_PREFIX = "meta__"
SITE_COLUMN = f"{META_PREFIX}site"
ONE_SITE = "one site"  # the site of every row of a manifest without a site column
CLINICAL_BLOCK = "clinical"
TRAIN_COHORT = "train"


@dataclass
class Design:
    """Inputs of the fusion pipeline for all cohorts, row-aligned."""

    X: pd.DataFrame            # index case_id; feature, clinical and meta columns
    labels: pd.Series          # class names as str
    patients: pd.Series
    cohorts: pd.Series
    sites: pd.Series

    def rows(self, mask: np.ndarray) -> "Design":
        return Design(self.X[mask], self.labels[mask], self.patients[mask], self.cohorts[mask], self.sites[mask])


def block_table(table: pd.DataFrame, block: str, source: str | Path = "<table>") -> pd.DataFrame:
    """Feature table (key `case_id`, columns `rad__*` or `deep__*`) -> index case_id, columns `<block>__*`."""
    if KEY_COLUMN not in table.columns:
        raise ValueError(f"feature table {source} has no {KEY_COLUMN!r} column: pass a table written by extract")
    table = table.set_index(KEY_COLUMN)
    table.index = table.index.astype(str)
    features = [c for c in table.columns if c.startswith((RAD_PREFIX, DEEP_PREFIX))]
    if not features:
        raise ValueError(f"feature table {source} has no {RAD_PREFIX}* or {DEEP_PREFIX}* columns")
    return table[features].rename(columns=lambda c: f"{block}__{c.split('__', 1)[1]}").astype(float)


def design_frame(manifest: pd.DataFrame, tables: dict[str, pd.DataFrame], clinical: list[str] = (),
                 covariates: list[str] = (), categorical: list[str] = ()) -> Design:
    """Join the block tables with the manifest's clinical, site and covariate columns (inner join on case_id).

    `categorical` columns become strings, so a numerically coded category (sex 0/1) is one-hot encoded."""
    if LABEL in covariates:
        raise ValueError("the label cannot be a ComBat covariate: it is unknown for the cases being harmonised")
    _require_columns(manifest, [*clinical, *covariates])
    if SITE not in manifest.columns:  # a study without sites is one site (ComBat, which needs two, is off for it)
        manifest = manifest.assign(**{SITE: ONE_SITE})
    frame = manifest.assign(**{KEY_COLUMN: manifest["case_id"].astype(str)}).set_index(KEY_COLUMN)
    for column in categorical:
        if column in frame.columns:
            frame[column] = frame[column].astype(object).where(frame[column].isna(), frame[column].astype(str))
    parts = [tables[b] for b in tables]
    parts.append(frame[list(clinical)].add_prefix(f"{CLINICAL_BLOCK}__"))
    parts.append(frame[[SITE, *covariates]].add_prefix(META_PREFIX))
    X = pd.concat(parts, axis=1, join="inner")
    _warn_unmatched(frame.index, tables)
    rows = frame.loc[X.index]
    cohort = rows[COHORT] if COHORT in rows.columns else pd.Series("train", index=rows.index)
    X = _drop_non_finite(X, list(tables), (cohort.astype(str) == TRAIN_COHORT).to_numpy())
    return Design(X, rows[LABEL].astype(str), rows[PATIENT_ID].astype(str), cohort.astype(str),
                  rows[SITE].astype(str))


def _require_columns(manifest: pd.DataFrame, columns: list[str]) -> None:
    missing = [c for c in columns if c not in manifest.columns]
    if missing:
        path = manifest.attrs.get("manifest_path", "the manifest")
        raise ValueError(f"{path} lacks column(s) {missing} that the fuse config uses (clinical columns, "
                         "ComBat covariates): add them or change data.clinical / the combat covariates")


def _warn_unmatched(manifest_ids: pd.Index, tables: dict[str, pd.DataFrame]) -> None:
    """Cases without a feature row (extract failures) are left out: say so, a silent join would shrink a cohort."""
    for block, table in tables.items():
        missing = manifest_ids.difference(table.index)
        if len(missing):
            warnings.warn(f"block {block!r}: {len(missing)} manifest case(s) have no feature row and are left out, "
                          f"e.g. {list(missing[:5])}; see extract's failures.csv", stacklevel=3)


def _drop_non_finite(X: pd.DataFrame, blocks: list[str], train: np.ndarray) -> pd.DataFrame:
    """Drop feature columns with a NaN/inf in a TRAINING row (e.g. a radiomics feature undefined for tiny ROIs).

    The choice sees the training cohort only: a held-out case never decides which features exist. Its own
    non-finite values in kept columns are filled by the pipeline's TrainingMedianImputer, and named here."""
    features = [c for c in X.columns if c.split("__", 1)[0] in blocks]
    finite = np.isfinite(X[features].to_numpy(dtype=float))
    bad = [c for c, ok in zip(features, finite[train].all(axis=0)) if not ok]
    if bad:
        warnings.warn(f"{len(bad)} feature column(s) with NaN/inf values in training rows are dropped, e.g. "
                      f"{bad[:5]}", stacklevel=3)
    kept = np.array([c not in bad for c in features])
    held_out = ~train & ~finite[:, kept].all(axis=1) if len(features) else np.zeros(len(X), bool)
    if held_out.any():
        warnings.warn(f"{int(held_out.sum())} held-out case(s) have NaN/inf feature values, filled with the training "
                      f"median by the pipeline: {list(X.index[held_out][:10])}", stacklevel=3)
    return X.drop(columns=bad)
