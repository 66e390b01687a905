"""Synthetic feature cohorts with a known answer, for tests and benchmarks (no images needed)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from radfuse.artifacts import KEY_COLUMN

SITES = ("A", "B", "C")


def make_feature_cohort(n_rois: int = 120, n_rad: int = 30, n_deep: int = 20, n_classes: int = 3,
                        n_informative: int = 3, signal: float = 1.5, site_shift: float = 1.0, seed: int = 0,
                        rois_per_patient: int = 2) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """(manifest, {"rad": table, "deep": table}). The first `n_informative` rad and deep columns carry the class
    (mean shift `signal` per class step); every site adds its own offset and scale to every feature (the batch
    effect ComBat must remove). Patients hold up to `rois_per_patient` ROIs; site C is the external cohort."""
    rng = np.random.default_rng(seed)
    patients = np.repeat(np.arange(int(np.ceil(n_rois / rois_per_patient))), rois_per_patient)[:n_rois]
    labels = rng.integers(0, n_classes, size=patients.max() + 1)[patients]  # a patient's ROIs share a class
    sites = np.array(SITES)[patients % len(SITES)]
    manifest = pd.DataFrame({
        "case_id": [f"c{i:05d}" for i in range(n_rois)],
        "patient_id": [f"p{p:05d}" for p in patients],
        "label": labels.astype(str),
        "site": sites,
        "cohort": np.where(sites == "C", "external", np.where(rng.random(n_rois) < 0.8, "train", "internal")),
        "age": rng.normal(70, 8, n_rois).round(),
        "sex": rng.choice(["F", "M"], n_rois),
        "t_score": rng.normal(-2.5, 1, n_rois) - 0.3 * labels,
    })
    tables = {name: _table(manifest, labels, sites, n, n_informative, signal, site_shift, rng, prefix)
              for name, n, prefix in (("rad", n_rad, "rad__f"), ("deep", n_deep, "deep__avgpool_"))}
    return manifest, tables


def _table(manifest, labels, sites, n_features, n_informative, signal, site_shift, rng, prefix) -> pd.DataFrame:
    values = rng.normal(size=(len(labels), n_features))
    values[:, :n_informative] += signal * labels[:, None]
    for site in SITES:  # batch effect: location and scale per site and feature
        rows = sites == site
        values[rows] = values[rows] * rng.uniform(0.7, 1.5, n_features) + site_shift * rng.normal(size=n_features)
    table = pd.DataFrame(values, columns=[f"{prefix}{i}" for i in range(n_features)])
    table.insert(0, KEY_COLUMN, manifest["case_id"])
    return table
