"""Simulated predictions tables and manifests (for tests, benchmarks and trying the CLI without a run)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from radfuse.artifacts import prob_columns

DEFAULT_COHORTS = {"train": 120, "internal": 50, "external": 40}


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def simulate_manifest(classes: list[str], cohorts: dict[str, int] = DEFAULT_COHORTS, rois_per_patient: int = 1,
                      seed: int = 0) -> pd.DataFrame:
    """One row per ROI with label, cohort, site and three clinical columns (age tracks the class)."""
    rng = np.random.default_rng(seed)
    rows = []
    for cohort, n_patients in cohorts.items():
        for p in range(n_patients):
            k = int(rng.integers(len(classes)))
            age = rng.normal(60 + 5 * k, 8)
            sex = rng.choice(["F", "M"], p=[0.7, 0.3])
            for r in range(rois_per_patient):
                rows.append({"case_id": f"{cohort}-{p:03d}-{r}", "patient_id": f"{cohort}-{p:03d}",
                             "cohort": cohort, "site": f"site-{cohort}", "label": classes[k],
                             "age": round(age, 1), "sex": sex, "t_score": round(rng.normal(-2.5, 0.8), 2)})
    return pd.DataFrame(rows)


def simulate_predictions(manifest: pd.DataFrame, classes: list[str],
                         models: dict[tuple[str, str], float] | None = None, seed: int = 0) -> pd.DataFrame:
    """Predictions in the artefact schema: 'oof' on the train cohort and 'refit' on every cohort.

    models maps (feature_set, model) to a separation strength (larger = better discrimination).
    """
    models = models or {("rad", "lr"): 1.0, ("fused", "lr"): 2.0}
    rng = np.random.default_rng(seed)
    y = manifest["label"].map({c: i for i, c in enumerate(classes)}).to_numpy()
    frames = []
    for (feature_set, model), strength in models.items():
        signal = strength * np.eye(len(classes))[y]
        for split in ("oof", "refit"):
            rows = manifest if split == "refit" else manifest[manifest["cohort"] == "train"]
            noise = rng.normal(size=(len(manifest), len(classes)))
            probs = _softmax(signal + noise)[rows.index.to_numpy()]
            frame = rows[["case_id", "patient_id", "cohort", "site", "label"]].copy()
            frame[prob_columns(classes)] = probs
            frame["pred"] = np.asarray(classes)[probs.argmax(axis=1)]
            frame["feature_set"], frame["model"], frame["split"] = feature_set, model, split
            frames.append(frame)
    return pd.concat(frames, ignore_index=True)
