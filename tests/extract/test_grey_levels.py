"""Grey levels after discretisation: counted per ROI and image type, summarised, and a setting that leaves most ROIs
with fewer than a handful of levels refused (issue 11, defect 3: liu2025 binned z-scored images with width 25)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from hydra import compose, initialize_config_dir

from radfuse.data.demo import make_cohort
from radfuse.extract.grey_levels import count_grey_levels, grey_level_refusal, summarise_grey_levels
from radfuse.extract.params import RadiomicsConfigError, load_params
from radfuse.extract.radiomics import extract_roi

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def demo_rois(tmp_path_factory):
    folder = tmp_path_factory.mktemp("demo")
    manifest = make_cohort(folder, n_patients=4, seed=0)
    return manifest, pd.read_csv(manifest)


def _extract(demo_rois, params):
    manifest, frame = demo_rois
    out = []
    for _, row in frame.iterrows():
        label = None if pd.isna(row.get("mask_label")) else int(row["mask_label"])
        out.append(extract_roi(manifest.parent / row["image"], manifest.parent / row["mask"], label, params))
    return pd.DataFrame([f for f, _ in out]), pd.DataFrame([d for _, d in out])


def test_count_matches_a_worked_example():
    image = np.array([[[0.0, 24.9, 25.0, 49.0, 100.0, 3.0]]])
    mask = np.array([[[1, 1, 1, 1, 0, 1]]])
    # bin width 25 from 0: {0, 24.9, 3} -> bin 1, {25, 49} -> bin 2; the unmasked 100 does not count
    assert count_grey_levels(image, mask, {"binWidth": 25}) == 2
    assert count_grey_levels(image, mask, {"binCount": 4}) == 3  # edges over [0, 49]: 0-12.25, 12.25-24.5, ...


def test_liu2025_preset_keeps_texture_on_demo_rois(demo_rois):
    features, diagnostics = _extract(demo_rois, load_params(ROOT / "conf" / "radiomics" / "liu2025.yaml"))
    assert features["original_firstorder_Uniformity"].median() < 0.3
    assert features["original_glcm_Contrast"].median() > 1.0
    summary = summarise_grey_levels(diagnostics)
    assert summary.table.loc["original", "median"] >= 16 and summary.degenerate().empty


def test_a_hu_bin_width_on_z_scored_images_is_refused_by_the_stage(demo_rois, tmp_path):
    """The old liu2025 setting: every demo ROI falls into one or two grey levels."""
    from radfuse.stages import extract as stage

    old = yaml.safe_load((ROOT / "conf" / "radiomics" / "liu2025.yaml").read_text())
    old["setting"].pop("binCount")
    old["setting"]["binWidth"] = 25
    params_file = tmp_path / "old_liu2025.yaml"
    params_file.write_text(yaml.safe_dump(old))
    features, diagnostics = _extract(demo_rois, load_params(params_file))
    assert features["original_firstorder_Uniformity"].median() > 0.9  # the defect itself
    message = grey_level_refusal(summarise_grey_levels(diagnostics), str(params_file), old["setting"])
    assert "binWidth=25" in message and "normalize" in message and "binCount" in message

    manifest, _ = demo_rois
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("extract", overrides=[f"paths.out={tmp_path / 'out'}", f"data.manifest={manifest}",
                                            "data.split.n_folds=2", "extract.progress=false",
                                            f"extract.params_file={params_file}", "extract.deep.source=null"])
    with pytest.raises(RadiomicsConfigError, match=r"old_liu2025.yaml.*fewer than 5 grey levels in original"):
        stage.run(cfg)
    assert not (tmp_path / "out" / "extract" / "default" / "radiomics.parquet").exists()
    cfg.extract.grey_levels.refuse = False  # the user's explicit choice: features kept, summary stored
    stage.run(cfg)
    grey = pd.read_csv(tmp_path / "out" / "extract" / "default" / "grey_levels.csv").set_index("image")
    assert grey.loc["original", "fraction_below"] == 1.0


def test_every_image_type_of_wang2025_keeps_a_handful_of_levels(demo_rois):
    params = load_params(ROOT / "conf" / "radiomics" / "wang2025.yaml")
    _, diagnostics = _extract((demo_rois[0], demo_rois[1].head(2)), params)
    summary = summarise_grey_levels(diagnostics)
    assert len(summary.table) == 20  # original, 3 LoG, 8 wavelet, 3 LBP3D, 5 simple filters
    assert summary.table["median"].min() >= 5


@pytest.mark.slow
def test_the_wang2025_preset_leaves_real_vertebral_bodies_texture_in_every_image_type(spine_ct):
    """The paper's bin width 5 on bone CT's wavelet-HHH band left 2-4 grey levels (L1, L3, L5 bodies), so a study on
    real spine CT was refused at extract: the preset bins wavelet images by count, as it does LBP3D."""
    from pathlib import Path

    from radfuse.extract.params import load_params
    from radfuse.extract.radiomics import extract_roi

    params = load_params(Path(__file__).resolve().parents[2] / "conf" / "radiomics" / "wang2025.yaml")
    for label in (20, 22, 24):
        _, diagnostics = extract_roi(spine_ct / "ct.nii.gz", spine_ct / "vertebral_bodies.nii.gz", label, params)
        levels = {k.split("grey_levels_")[1]: int(v) for k, v in diagnostics.items() if "grey_levels_" in k}
        assert len(levels) == 20
        poor = {image: n for image, n in levels.items() if n < 5}
        assert not poor, (label, poor)
