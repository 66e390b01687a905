"""`extract.run` through the real Hydra config: per-vertebra radiomics on the real spine CT, and a synthetic
cohort with failures (fail_on_error), mask2 ICC, config and provenance beside the tables."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from hydra import compose, initialize_config_dir

from radfuse.stages import extract as stage
from tests.extract.synthetic import make_cohort

CONF = Path(__file__).resolve().parents[2] / "conf"
VERTEBRAE = {20: "L1", 21: "L2", 22: "L3", 23: "L4", 24: "L5"}


def _cfg(out: Path, manifest: Path, *overrides: str):
    with initialize_config_dir(str(CONF), version_base="1.3"):
        return compose("extract", overrides=[f"paths.out={out}", f"data.manifest={manifest}", "extract.progress=false",
                                             "extract.deep.source=null", *overrides])


def test_per_vertebra_radiomics_on_real_spine_ct(spine_ct, tmp_path):
    rows = [{"case_id": name, "patient_id": "p0", "image": str(spine_ct / "ct.nii.gz"),
             "mask": str(spine_ct / "vertebral_bodies.nii.gz"), "mask_label": label, "label": "0",
             "cohort": "train"} for label, name in VERTEBRAE.items()]
    manifest = tmp_path / "manifest.csv"
    pd.DataFrame(rows).to_csv(manifest, index=False)
    summary = stage.run(_cfg(tmp_path / "out", manifest, "radiomics=fast", "extract.workers=2"))
    folder = Path(summary["folder"])
    table = pd.read_parquet(folder / "radiomics.parquet").set_index("case_id")
    assert list(table.index) == list(VERTEBRAE.values()) and summary["failures"] == 0
    assert table.shape[1] == 107  # fast.yaml: 18 first order + 14 shape + 24 + 16 + 16 + 14 + 5 texture

    # independent check of two features from the voxels themselves
    ct = sitk.GetArrayFromImage(sitk.ReadImage(str(spine_ct / "ct.nii.gz"))).astype(float)
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(spine_ct / "vertebral_bodies.nii.gz")))
    for label, name in VERTEBRAE.items():
        inside = ct[labels == label]
        assert table.loc[name, "rad__original_firstorder_Mean"] == pytest.approx(inside.mean(), rel=1e-12)
        assert table.loc[name, "rad__original_shape_VoxelVolume"] == pytest.approx(inside.size * 27.0, rel=1e-12)
        assert table.loc[name, "rad__original_firstorder_Maximum"] == inside.max()
    assert 100 < table["rad__original_firstorder_Mean"].min()  # cancellous bone, HU
    for name in ("radiomics_diagnostics.parquet", "icc.parquet", "failures.csv", "config.yaml", "provenance.json"):
        assert (folder / name).is_file(), name


def test_stage_records_failures_and_exits_non_zero_only_when_asked(tmp_path):
    manifest = make_cohort(tmp_path / "data", n_cases=5, empty_cases=(2,))
    summary = stage.run(_cfg(tmp_path / "out", manifest))
    folder = Path(summary["folder"])
    assert summary["rows"] == 4 and summary["failures"] >= 1
    failures = pd.read_csv(folder / "failures.csv")
    assert set(failures["case_id"]) == {"c02"}
    icc = pd.read_parquet(folder / "icc.parquet")
    assert len(icc) == 107 and (icc["n"] == 4).all() and np.isfinite(icc["icc3_1"]).any()
    with pytest.raises(stage.ExtractionFailed, match="failures.csv"):
        stage.run(_cfg(tmp_path / "out", manifest, "extract.fail_on_error=true"))
