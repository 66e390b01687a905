"""A manifest without a `site` column is one site: fuse joins it (no ComBat to feed) instead of refusing it."""

from __future__ import annotations

import pytest

from radfuse.fuse.design import SITE_COLUMN, block_table, design_frame
from tests.fuse.synthetic import make_feature_cohort


def test_a_manifest_without_a_site_column_is_one_site():
    manifest, tables = make_feature_cohort(n_classes=2, seed=1)
    design = design_frame(manifest.drop(columns=["site"]), {"rad": block_table(tables["rad"], "rad")})
    assert design.sites.nunique() == 1 and design.X[SITE_COLUMN].nunique() == 1
    assert len(design.X) == len(manifest)


def test_a_declared_clinical_column_that_is_missing_is_still_refused():
    manifest, tables = make_feature_cohort(n_classes=2, seed=1)
    with pytest.raises(ValueError, match="bmi"):
        design_frame(manifest.drop(columns=["site"]), {"rad": block_table(tables["rad"], "rad")}, clinical=["bmi"])
