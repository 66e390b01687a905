"""Per-scan extraction (one task, one read of the spine CT for several vertebrae) equals per-ROI extraction for
every image type of wang2025: the scan task shares the read only, never a crop-dependent filter (runner doc)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from radfuse.extract import radiomics as radiomics_module
from radfuse.extract.params import load_params
from radfuse.extract.radiomics_run import extract_radiomics
from radfuse.extract.runner import RoiSpec

WANG = Path(__file__).resolve().parents[2] / "conf" / "radiomics" / "wang2025.yaml"
BODIES = {20: "L1", 23: "L4"}
IMAGE_TYPES = ["Original", "LoG", "Wavelet", "LBP3D", "Exponential", "Square", "SquareRoot", "Logarithm", "Gradient"]


@pytest.mark.slow
@pytest.mark.parametrize("image_type", IMAGE_TYPES)
def test_per_scan_equals_per_roi_on_the_spine_ct(spine_ct, tmp_path, image_type):
    params = load_params(WANG)
    params["imageType"] = {image_type: params["imageType"][image_type]}
    params["featureClass"] = {"firstorder": [], "glszm": []}
    rois = [RoiSpec(name, str(spine_ct / "ct.nii.gz"), str(spine_ct / "vertebral_bodies.nii.gz"), label)
            for label, name in BODIES.items()]
    extract_radiomics(rois, params, tmp_path / "cache", tmp_path / "out", progress=False,
                      refuse_few_grey_levels=False)  # some wavelet bands get few levels at bin width 5
    table = pd.read_parquet(tmp_path / "out" / "radiomics.parquet").set_index("case_id")
    for roi in rois:
        radiomics_module._read_image.cache_clear()  # a fresh read per ROI, as a per-ROI run does
        alone, _ = radiomics_module.extract_roi(roi.image, roi.mask, roi.label, params)
        assert {f"rad__{k}": v for k, v in alone.items()} == table.loc[roi.case_id].to_dict()
