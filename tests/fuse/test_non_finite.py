"""Which feature columns exist is decided on training rows only; held-out non-finite values are imputed with the
training median inside the pipeline (issue 11, defect 6: the NaN-column drop looked at every cohort)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from radfuse.fuse.design import block_table, design_frame
from radfuse.fuse.impute import TrainingMedianImputer
from radfuse.fuse.pipeline import fusion_pipeline
from tests.fuse.synthetic import make_feature_cohort


def _design_with_holes():
    manifest, tables = make_feature_cohort(n_classes=2, seed=1)
    rad = tables["rad"].copy()
    cohort = manifest.set_index("case_id")["cohort"]
    external = cohort[cohort == "external"].index[0]
    train = cohort[cohort == "train"].index[0]
    rad.loc[rad.case_id == external, "rad__f1"] = np.nan   # a held-out hole: the column stays
    rad.loc[rad.case_id == train, "rad__f2"] = np.inf      # a training hole: the column goes
    with pytest.warns(UserWarning) as caught:
        design = design_frame(manifest, {"rad": block_table(rad, "rad")})
    return design, external, [str(w.message) for w in caught]


def test_columns_are_dropped_for_training_holes_only_and_held_out_holes_are_named():
    design, external, messages = _design_with_holes()
    assert "rad__f1" in design.X.columns and "rad__f2" not in design.X.columns
    assert any("training rows are dropped" in m and "rad__f2" in m for m in messages)
    assert any("held-out case(s)" in m and external in m for m in messages)


def test_held_out_hole_is_filled_with_the_training_median():
    design, external, _ = _design_with_holes()
    train = (design.cohorts == "train").to_numpy()
    blocks = {"rad": {"impute": TrainingMedianImputer(), "scale": StandardScaler()}}
    pipe = fusion_pipeline(blocks, {}, LogisticRegression(max_iter=2000))
    pipe.fit(design.X[train], design.labels[train])
    filled = design.X.loc[[external]].copy()
    filled["rad__f1"] = design.X.loc[train, "rad__f1"].median()
    np.testing.assert_allclose(pipe.predict_proba(design.X.loc[[external]]), pipe.predict_proba(filled))
