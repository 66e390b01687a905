"""PyRadiomics' own reference case: lung1 through radfuse's config path reproduces the published baseline.

Every lung1 column of `baseline/baseline_<class>.csv` (original, 2d, FBN, combined, flatRegion, normalization,
resampling, resegmentation, shape2D) becomes a params YAML with that column's `diagnostics_Configuration_Settings`,
is read by `load_params` and extracted by `extract_roi` (the function radfuse's workers run, ROI crop included),
and must match within relative tolerance 1e-6. The default run checks one cheap and one resampled/normalised
variant per class; the full sweep (~35 s on one core) is marked slow.
"""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
import yaml

from radfuse.extract.params import load_params
from radfuse.extract.radiomics import extract_roi
from tests.conftest import SHARED_DATA

REFERENCE = SHARED_DATA / "pyradiomics-reference"
RTOL = 1e-6
CLASSES = ("firstorder", "glcm", "gldm", "glrlm", "glszm", "ngtdm", "shape", "shape2D")
FAST_VARIANTS = {
    ("firstorder", "lung1"), ("firstorder", "lung1_resegmentation"), ("glcm", "lung1"), ("glcm", "lung1_2d"),
    ("glcm", "lung1_FBN"), ("glcm", "lung1_combined"), ("glcm", "lung1_flatRegion"), ("glrlm", "lung1_combined"),
    ("gldm", "lung1"), ("glszm", "lung1_2d"), ("ngtdm", "lung1_FBN"), ("shape", "lung1"), ("shape2D", "lung1_shape2D"),
    ("glcm", "lung1_normalization"),
}


def _variants() -> list[tuple[str, str]]:
    folder = REFERENCE / "baseline"
    if not folder.is_dir():  # collected without the data: one placeholder that the fixture turns into a skip
        return [("glcm", "lung1")]
    out = []
    for feature_class in CLASSES:
        columns = pd.read_csv(folder / f"baseline_{feature_class}.csv", index_col=0, nrows=0).columns
        out += [(feature_class, c) for c in columns if c.startswith("lung1")]
    return out


def _params(pyradiomics_reference: Path, feature_class: str, column: str, tmp_path: Path) -> tuple[dict, pd.Series]:
    baseline = pd.read_csv(pyradiomics_reference / "baseline" / f"baseline_{feature_class}.csv", index_col=0)
    settings = ast.literal_eval(baseline.loc["diagnostics_Configuration_Settings", column])
    path = tmp_path / f"{column}_{feature_class}.yaml"
    path.write_text(yaml.safe_dump({"imageType": {"Original": {}}, "featureClass": {feature_class: []},
                                    "setting": settings}))
    return load_params(path), baseline[column]


def _mask(pyradiomics_reference: Path, column: str) -> sitk.Image | Path:
    label = pyradiomics_reference / "lung1_label.nrrd"
    if column != "lung1_shape2D":
        return label
    # PyRadiomics' lung1_2D test mask is not shipped: it is slice 33 of lung1_label as a one-slice image (the
    # baseline's diagnostics: 347 voxels, bounding box (206, 347, 33, 24, 22, 1) after correctMask).
    return sitk.ReadImage(str(label))[:, :, 33:34]


def _differences(features: dict[str, float], expected: pd.Series) -> list[str]:
    lines = []
    for name, reference in expected.items():
        if name.startswith("diagnostics_") or pd.isna(reference):
            continue
        value, reference = features.get(name, np.nan), float(reference)
        if not np.isclose(value, reference, rtol=RTOL, atol=0):
            lines.append(f"{name}: baseline {reference!r}, radfuse {value!r}, "
                         f"relative difference {abs(value - reference) / abs(reference):.3g}")
    return lines


def _check(pyradiomics_reference: Path, feature_class: str, column: str, tmp_path: Path) -> None:
    params, expected = _params(pyradiomics_reference, feature_class, column, tmp_path)
    features, _ = extract_roi(pyradiomics_reference / "lung1_image.nrrd", _mask(pyradiomics_reference, column),
                              1, params)
    differences = _differences(features, expected)
    assert not differences, f"{column} / {feature_class}: {len(differences)} feature(s) differ:\n" + \
        "\n".join(differences)
    checked = [n for n in expected.index if not n.startswith("diagnostics_") and pd.notna(expected[n])]
    assert checked and all(n in features for n in checked)


@pytest.mark.parametrize(("feature_class", "column"), sorted(v for v in _variants() if v in FAST_VARIANTS))
def test_lung1_reference_subset(pyradiomics_reference, feature_class, column, tmp_path):
    _check(pyradiomics_reference, feature_class, column, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize(("feature_class", "column"), _variants())
def test_lung1_reference_every_variant(pyradiomics_reference, feature_class, column, tmp_path):
    _check(pyradiomics_reference, feature_class, column, tmp_path)
