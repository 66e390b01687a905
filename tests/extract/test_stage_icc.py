"""The ICC that filters features sees training-cohort cases only (issue 11, defect 6), on as many training
patients as asked for (Liu 2025: 30)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import pandas as pd
import SimpleITK as sitk
from hydra import compose, initialize_config_dir

from tests.extract.synthetic import make_cohort

CONF = Path(__file__).resolve().parents[2] / "conf"


def _cfg(out: Path, manifest: Path, *overrides: str):
    with initialize_config_dir(str(CONF), version_base="1.3"):
        return compose("extract", overrides=[
            f"paths.out={out}", f"data.manifest={manifest}", "extract.progress=false", "data.classes=[0,1]",
            "~data.clinical", "data.split.n_folds=2", "radiomics=fast", "extract.deep.source=null", *overrides])


def _cohort(folder: Path) -> Path:
    manifest = make_cohort(folder, n_cases=8)
    frame = pd.read_csv(manifest)
    frame.loc[frame["patient_id"] == "p03", "cohort"] = "external"  # cases c06, c07
    frame.to_csv(manifest, index=False)
    return manifest


def test_icc_uses_training_cases_only(tmp_path):
    from radfuse.stages import extract as stage

    manifest = _cohort(tmp_path / "data")
    cfg = _cfg(tmp_path / "out", manifest)
    stage.run(cfg)
    icc_path = tmp_path / "out" / "extract" / "default" / "icc.parquet"
    first = pd.read_parquet(icc_path)
    assert (first["n"] == 6).all()  # 8 ROIs have a second mask, 2 of them external

    # a held-out case's second mask changes: the ICC (and so the features the filter keeps) must not move
    mask2 = tmp_path / "data" / "c07_mask2.nii.gz"
    image = sitk.ReadImage(str(mask2))
    array = sitk.GetArrayFromImage(image)
    array[:] = np.roll(array, 3, axis=1) | array
    changed = sitk.GetImageFromArray(array)
    changed.CopyInformation(image)
    sitk.WriteImage(changed, str(mask2))
    stage.run(cfg)
    pd.testing.assert_frame_equal(pd.read_parquet(icc_path), first)


def test_icc_on_a_chosen_number_of_training_patients(tmp_path):
    from radfuse.stages import extract as stage

    cfg = _cfg(tmp_path / "out", _cohort(tmp_path / "data"), "extract.icc.patients=2")
    stage.run(cfg)
    icc = pd.read_parquet(tmp_path / "out" / "extract" / "default" / "icc.parquet")
    assert (icc["n"] == 4).all()  # 2 patients x 2 ROIs


def test_intra_observer_icc_from_the_same_readers_repeat(tmp_path):
    """Wang 2025: inter- (mask2) and intra-observer (mask_repeat) ICC, each on training cases only."""
    from radfuse.stages import extract as stage

    manifest = _cohort(tmp_path / "data")
    frame = pd.read_csv(manifest)
    frame["mask_repeat"] = frame["mask"]  # the reader outlined the same voxels again: ICC 1 for stable features
    frame.loc[frame.index % 2 == 1, "mask_repeat"] = ""  # and only half of the cases
    frame.to_csv(manifest, index=False)
    stage.run(_cfg(tmp_path / "out", manifest))
    folder = tmp_path / "out" / "extract" / "default"
    inter, intra = pd.read_parquet(folder / "icc.parquet"), pd.read_parquet(folder / "icc_intra.parquet")
    assert (inter["n"] == 6).all()
    assert (intra["n"] == 3).all()  # c00, c02, c04: training cases with a repeat outline (c06 is external)
    assert intra.set_index("feature").loc["rad__original_shape_VoxelVolume", "icc2_1"] == pytest.approx(1.0)
