"""The built-in demo cohort: contract of the manifest, geometry, determinism and the planted signals.

Expected values are worked out by hand from the documented design (docs/demo.md): class shares 46/45/9 % from
Liu 2025, muscle at 45 HU and each site's HU calibration and noise, a body centred on x = 0, y = 0.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from scipy import ndimage

from radfuse.data import demo
from radfuse.data.manifest import read_manifest

N_PATIENTS = 36
SEED = 7
SPEC_COLUMNS = ["case_id", "patient_id", "image", "mask", "mask_label", "mask2", "label", "site", "cohort", "age",
                "sex", "t_score"]


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    """A small cohort written once; rows carry absolute paths (read_manifest) plus the raw relative ones."""
    out = tmp_path_factory.mktemp("demo")
    path = demo.make_cohort(out, n_patients=N_PATIENTS, seed=SEED, processes=1)
    frame = read_manifest(path)
    frame["raw"] = pd.read_csv(path, dtype=str, keep_default_na=False).to_dict("records")
    return frame


@pytest.fixture(scope="module")
def big_sample() -> pd.DataFrame:
    """Many patients' manifest rows without drawing any image."""
    return demo.sample_cohort(2000, seed=3)[1]


def _array(path: str) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(path))


def _tree_hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _physical_coords(image: sitk.Image) -> np.ndarray:
    """(z, y, x, 3) physical coordinates of every voxel: origin + direction @ (index * spacing)."""
    size, spacing = image.GetSize(), np.array(image.GetSpacing())
    direction = np.array(image.GetDirection()).reshape(3, 3)
    k, j, i = np.meshgrid(*(np.arange(n) for n in size[::-1]), indexing="ij")
    steps = np.stack([i, j, k], axis=-1) * spacing
    return np.array(image.GetOrigin()) + steps @ direction.T


# ---------------------------------------------------------------------------------------------- contract
def test_manifest_columns_paths_and_values(cohort: pd.DataFrame) -> None:
    raw = pd.DataFrame(list(cohort["raw"]))
    assert list(raw.columns) == SPEC_COLUMNS
    assert raw["case_id"].is_unique
    assert set(raw["label"]) <= {"0", "1", "2"} and set(raw["sex"]) <= {"M", "F"}
    assert set(raw["site"]) == {"A", "B", "C"}
    for column in ("image", "mask"):
        assert not any(Path(p).is_absolute() for p in raw[column])
        assert all(Path(p).is_file() for p in cohort[column])
    with_second = raw["mask2"] != ""
    assert all(Path(p).is_file() for p in cohort.loc[with_second.to_numpy(), "mask2"])
    assert 0.1 <= with_second.mean() <= 0.45  # a subset, about a quarter
    assert pd.to_numeric(raw["t_score"]).notna().all() and pd.to_numeric(raw["age"]).between(50, 95).all()


def test_cohorts_follow_sites_and_never_split_a_patient(cohort: pd.DataFrame, big_sample: pd.DataFrame) -> None:
    for frame in (cohort, big_sample):
        assert (frame.groupby("patient_id")["cohort"].nunique() == 1).all()
        assert (frame.loc[frame["site"] == "C", "cohort"] == "external").all()
        assert set(frame.loc[frame["site"] != "C", "cohort"]) <= {"train", "internal", "prospective"}
    patients = big_sample.drop_duplicates("patient_id")
    home = patients[patients["site"] != "C"]["cohort"].value_counts(normalize=True)
    assert home["prospective"] == pytest.approx(0.08, abs=0.01)
    assert home["internal"] / (home["internal"] + home["train"]) == pytest.approx(0.2, abs=0.01)


# ---------------------------------------------------------------------------------------------- determinism
def test_same_seed_gives_same_bytes_serial_or_parallel(tmp_path: Path) -> None:
    first = demo.make_cohort(tmp_path / "one", n_patients=4, seed=11, processes=1).parent
    second = demo.make_cohort(tmp_path / "two", n_patients=4, seed=11, processes=2).parent
    other = demo.make_cohort(tmp_path / "three", n_patients=4, seed=12, processes=1).parent
    hashes = _tree_hashes(first)
    assert any(name.startswith("images/") for name in hashes)
    assert hashes == _tree_hashes(second)
    different = _tree_hashes(other)
    assert all(different.get(name) != digest for name, digest in hashes.items() if name.startswith("images/"))


# ---------------------------------------------------------------------------------------------- classes
def test_class_shares_match_liu2025_overall_and_per_site(big_sample: pd.DataFrame) -> None:
    expected = pd.Series({"0": 0.46, "1": 0.45, "2": 0.09})
    shares = big_sample["label"].value_counts(normalize=True)
    assert np.allclose(shares[expected.index], expected, atol=0.01)
    for site, rows in big_sample.groupby("site"):
        site_shares = rows["label"].value_counts(normalize=True)
        assert np.allclose(site_shares[expected.index], expected, atol=0.015), site


def test_severity_cuts_are_normal_quantiles() -> None:
    # Phi(-0.1004) = 0.46 and Phi(1.3408) = 0.91 (normal table)
    assert demo.severity_class(np.array([-0.11, -0.09, 1.33, 1.35])).tolist() == [0, 1, 1, 2]


def test_multi_roi_patients_share_one_image_with_distinct_labels(cohort: pd.DataFrame,
                                                                  big_sample: pd.DataFrame) -> None:
    per_patient = big_sample.groupby("patient_id").size()
    assert (per_patient > 1).mean() == pytest.approx(0.105, abs=0.02)
    assert set(per_patient) == {1, 2, 3}
    multi = cohort.groupby("patient_id").filter(lambda rows: len(rows) > 1)
    assert len(multi) > 0
    for _, rows in multi.groupby("patient_id"):
        assert rows["image"].nunique() == 1 and rows["mask"].nunique() == 1
        labels = sorted(rows["mask_label"].astype(int))
        assert labels == list(range(1, len(rows) + 1))
        assert sorted(np.unique(_array(rows["mask"].iloc[0]))[1:].tolist()) == labels


def test_clinical_columns_follow_severity(big_sample: pd.DataFrame) -> None:
    by_class = big_sample.groupby("label")[["t_score", "age"]].mean()
    assert by_class.loc["2", "t_score"] < by_class.loc["1", "t_score"] < by_class.loc["0", "t_score"]
    assert by_class.loc["2", "age"] > by_class.loc["0", "age"]
    patients = big_sample.drop_duplicates("patient_id")
    assert patients["t_score"].mean() == pytest.approx(-2.82, abs=0.1)  # Liu 2025 cohort: -2.82 (0.82)
    assert (patients["sex"] == "F").mean() == pytest.approx(0.70, abs=0.04)  # 70 % women


def test_neighbouring_classes_overlap_in_the_strongest_cue() -> None:
    """Height loss (the plan's, before image noise and body-size variation) orders the classes but does not
    separate neighbouring ones: Mann-Whitney AUC by brute force over all pairs."""
    plans, _ = demo.sample_cohort(600, seed=5)
    loss: dict[int, list[float]] = {0: [], 1: [], 2: []}
    for plan in plans:
        for roi, vertebra in zip(plan.rois, plan.volume.vertebrae[1:-1]):
            loss[roi.label].append(vertebra.height_loss)
    for low, high in ((0, 1), (1, 2)):
        auc = (np.array(loss[high])[:, None] > np.array(loss[low])[None, :]).mean()
        assert 0.7 < auc < 0.95, (low, high, auc)


# ---------------------------------------------------------------------------------------------- images
def test_images_are_hu_ct_on_the_masks_grid(cohort: pd.DataFrame) -> None:
    for _, row in cohort.drop_duplicates("patient_id").iterrows():
        image, mask = sitk.ReadImage(row["image"]), sitk.ReadImage(row["mask"])
        assert image.GetPixelID() == sitk.sitkInt16 and mask.GetPixelID() == sitk.sitkUInt8
        for attribute in ("GetSize", "GetSpacing", "GetOrigin", "GetDirection"):
            assert getattr(image, attribute)() == getattr(mask, attribute)(), (row["case_id"], attribute)
        protocol = demo.SITES[row["site"]]
        assert image.GetSpacing() == pytest.approx((protocol.spacing_xy_mm,) * 2 + (protocol.slice_mm,))
        values = sitk.GetArrayFromImage(image)
        assert values.min() >= -1024 and np.percentile(values, 2) < -900  # air behind the back


def test_rois_are_bone_inside_the_image_and_centred_in_physical_space(cohort: pd.DataFrame) -> None:
    for _, row in cohort.iterrows():
        image = sitk.ReadImage(row["image"])
        roi = _array(row["mask"]) == int(row["mask_label"])
        assert roi.sum() > 500, row["case_id"]
        for axis in range(3):  # does not touch the border: the neighbours and margins are in the field of view
            extent = np.nonzero(roi.any(axis=tuple(a for a in range(3) if a != axis)))[0]
            assert extent[0] > 0 and extent[-1] < roi.shape[axis] - 1, row["case_id"]
        assert sitk.GetArrayFromImage(image)[roi].mean() > 100, row["case_id"]
        centre = _physical_coords(image)[roi].mean(axis=0)  # the body is drawn around x = 0, y = 0 (+-0.8 mm)
        assert abs(centre[0]) < 0.5 and abs(centre[1]) < 1.5, (row["case_id"], row["site"], centre)


def test_sites_differ_in_calibration_and_noise(cohort: pd.DataFrame) -> None:
    # Paraspinal muscle (45 HU) left of the spinous process; expected = 45 * scale + offset and the noise SD
    # times the scale: A 45.0 / 28.0, B 62.75 / 17.1, C 18.15 / 12.84 (docs/demo.md, site table).
    expected = {"A": (45.0, 28.0), "B": (62.75, 17.1), "C": (18.15, 12.84)}
    measured: dict[str, list[tuple[float, float]]] = {site: [] for site in expected}
    for _, row in cohort.drop_duplicates("patient_id").iterrows():
        image = sitk.ReadImage(row["image"])
        points = _physical_coords(image)
        box = (points[..., 0] > -28) & (points[..., 0] < -17) & (points[..., 1] > 14) & (points[..., 1] < 24)
        values = sitk.GetArrayFromImage(image)[box].astype(float)
        centre = np.median(values)
        measured[row["site"]].append((centre, 1.4826 * np.median(np.abs(values - centre))))  # robust: fat patches
    for site, (level, noise) in expected.items():
        level_found, noise_found = np.median(np.array(measured[site]), axis=0)
        assert level_found == pytest.approx(level, abs=5.0), site
        assert noise_found == pytest.approx(noise, rel=0.2), site


def test_severe_fractures_are_lower_and_less_uniform(cohort: pd.DataFrame) -> None:
    """Mean vertebral height (mm, over the ROI's axial footprint) drops with class; marrow heterogeneity rises."""
    heights, spreads = {}, {}
    for _, row in cohort.iterrows():
        image = sitk.ReadImage(row["image"])
        roi = _array(row["mask"]) == int(row["mask_label"])
        columns = roi.sum(axis=0) * image.GetSpacing()[2]
        inner = ndimage.binary_erosion(roi, iterations=2)
        heights.setdefault(str(row["label"]), []).append(columns[columns > 0].mean())
        spreads.setdefault(str(row["label"]), []).append(sitk.GetArrayFromImage(image)[inner].std())
    assert len(heights.get("2", [])) >= 2
    assert np.mean(heights["2"]) < np.mean(heights["1"]) < np.mean(heights["0"])
    assert np.mean(spreads["2"]) > np.mean(spreads["0"])


def test_second_reader_mask_differs_by_about_a_voxel(cohort: pd.DataFrame) -> None:
    rows = cohort[cohort["mask2"].notna() & (cohort["mask2"].astype(str) != "")]
    assert len(rows) > 0
    for _, row in rows.iterrows():
        first = _array(row["mask"]) == int(row["mask_label"])
        second = _array(row["mask2"]) == int(row["mask_label"])
        dice = 2 * (first & second).sum() / (first.sum() + second.sum())
        assert 0.8 < dice < 0.97, (row["case_id"], dice)
        # no voxel moved by more than two in-plane steps
        assert not (second & ~ndimage.binary_dilation(first, iterations=3)).any()


# ---------------------------------------------------------------------------------------------- entry points
def test_cli_prints_a_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    demo.main([str(tmp_path), "--patients", "3", "--seed", "1", "--processes", "1"])
    printed = capsys.readouterr().out
    assert (tmp_path / "manifest.csv").is_file()
    assert "ROIs from 3 patients" in printed and "cohort" in printed and "time:" in printed


def test_ensure_cohort_generates_once_and_again_for_other_settings(tmp_path: Path) -> None:
    path = demo.ensure_cohort(tmp_path, n_patients=3, seed=2, processes=1)
    stamp = path.stat().st_mtime_ns
    assert demo.ensure_cohort(tmp_path, n_patients=3, seed=2).stat().st_mtime_ns == stamp
    demo.ensure_cohort(tmp_path, n_patients=4, seed=2, processes=1)
    assert pd.read_csv(path)["patient_id"].nunique() == 4
