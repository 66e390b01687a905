"""The `vcf_acuity` demo task, shaped for Wang 2025: acute vs chronic vertebral compression fracture.

Expected values come from the paper (218 patients, one centre, 171 acute / 47 chronic = 78.4 %, a random test set
of 43 = 19.7 %, ICC re-delineation on 30 of the 175 training patients, age 63.1 (15.7), BMD T-score -2.3 (1.3))
and from docs/demo.md, not from radfuse's code.
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
from radfuse.data.phantom import draw_volume
from radfuse.data.validate import validate_manifest

TASK = "vcf_acuity"
CLASSES = ["acute", "chronic"]
CLINICAL = {"age": "numeric", "sex": "categorical", "t_score": "numeric"}


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    out = tmp_path_factory.mktemp("vcf")
    return read_manifest(demo.make_cohort(out, n_patients=14, seed=4, processes=1, task=TASK))


@pytest.fixture(scope="module")
def big_sample() -> pd.DataFrame:
    return demo.sample_cohort(2000, seed=3, task=TASK)[1]


def _auc(positive: list[float], negative: list[float]) -> float:
    """Mann-Whitney AUC by brute force over all pairs (ties count one half)."""
    pos, neg = np.asarray(positive)[:, None], np.asarray(negative)[None, :]
    return float((pos > neg).mean() + 0.5 * (pos == neg).mean())


def test_manifest_validates_with_the_papers_classes_and_clinical_columns(cohort: pd.DataFrame) -> None:
    assert validate_manifest(cohort, classes=CLASSES, clinical=CLINICAL, n_folds=2) == []
    assert set(cohort["label"]) == set(CLASSES) and set(cohort["site"]) == {"A"}
    assert set(cohort["cohort"]) == {"train", "internal"}  # one centre: no external or prospective set
    assert cohort["patient_id"].is_unique  # one fractured vertebra per patient


def test_icc_subset_has_a_second_reader_and_a_repeat_reading(cohort: pd.DataFrame) -> None:
    raw = pd.read_csv(Path(cohort.attrs["manifest_path"]), dtype=str, keep_default_na=False)
    subset = raw["mask2"] != ""
    assert subset.sum() >= 3 and (subset == (raw["mask_repeat"] != "")).all()  # the same patients, both masks
    assert set(raw.loc[subset, "cohort"]) == {"train"}  # Wang: 30 patients "from the training sequence"
    root = Path(cohort.attrs["manifest_path"]).parent
    for _, row in raw[subset].iterrows():
        first = sitk.GetArrayFromImage(sitk.ReadImage(str(root / row["mask"]))) == 1
        dice = {}
        for column in ("mask2", "mask_repeat"):
            other_image = sitk.ReadImage(str(root / row[column]))
            assert other_image.GetSize() == sitk.ReadImage(str(root / row["image"])).GetSize()
            other = sitk.GetArrayFromImage(other_image) == 1
            dice[column] = 2 * (first & other).sum() / (first.sum() + other.sum())
        assert 0.8 < dice["mask2"] < 0.97
        assert dice["mask2"] < dice["mask_repeat"] < 1.0  # the same reader a week later agrees more, not fully


def test_class_balance_cohorts_and_icc_share_follow_wang2025(big_sample: pd.DataFrame) -> None:
    assert (big_sample["label"] == "acute").mean() == pytest.approx(171 / 218, abs=0.005)
    internal = big_sample["cohort"] == "internal"
    assert internal.mean() == pytest.approx(43 / 218, abs=0.01)
    for _, rows in big_sample.groupby("label"):  # stratified: each class is split alike
        assert (rows["cohort"] == "internal").mean() == pytest.approx(0.2, abs=0.015)
    train = big_sample[~internal]
    assert (train["mask2"] != "").mean() == pytest.approx(30 / 175, abs=0.01)
    assert big_sample["age"].mean() == pytest.approx(63.1, abs=1.0) and big_sample["age"].between(21, 97).all()
    assert big_sample["t_score"].mean() == pytest.approx(-2.3, abs=0.1)
    assert big_sample["t_score"].std() == pytest.approx(1.27, abs=0.1)
    assert (big_sample["sex"] == "F").mean() == pytest.approx(119 / 218, abs=0.03)


def test_mean_hu_in_the_roi_separates_the_classes_but_not_perfectly() -> None:
    """Chronic fractures are sclerotic (denser), acute ones oedematous; bone density (BMD) blurs the difference."""
    plans, rows = demo.sample_cohort(80, seed=9, task=TASK)  # about 17 chronic; drawn in memory, ~3 s
    roi_hu: dict[str, list[float]] = {"acute": [], "chronic": []}
    shell_hu: dict[str, list[float]] = {"acute": [], "chronic": []}
    for plan, label in zip(plans, rows["label"]):
        image, labels = draw_volume(plan.volume)
        values, roi = sitk.GetArrayFromImage(image).astype(float), sitk.GetArrayFromImage(labels) == 1
        roi_hu[label].append(values[roi].mean())
        # 1-4 voxels around the body, in its slices, left out the bone: soft tissue a margin crop sees
        ring = ndimage.binary_dilation(roi, iterations=4) & ~ndimage.binary_dilation(roi, iterations=1)
        soft = ring & (values < 150) & roi.any(axis=(1, 2))[:, None, None]
        shell_hu[label].append(values[soft].mean())
    assert len(roi_hu["chronic"]) >= 12
    density_auc = _auc(roi_hu["chronic"], roi_hu["acute"])  # about 0.74 on 200 patients (docs/demo.md)
    assert 0.6 < density_auc < 0.95, density_auc
    assert _auc(shell_hu["acute"], shell_hu["chronic"]) > 0.6  # acute: paravertebral swelling (fat stranding)


def test_default_task_is_unchanged() -> None:
    # manifest rows of the 3-class ASTLOF demo, recorded before the task option existed (generator version 1)
    rows = demo.sample_cohort(400, seed=0)[1].to_csv(index=False).encode()
    assert hashlib.sha256(rows).hexdigest() == "451d65ccccbd3bfb30a40ab2a6ba25ab054977ba0c4c0f58e81042fcb1efc810"
    assert list(demo.sample_cohort(5, seed=0, task="astlof")[1].columns) == list(demo.MANIFEST_COLUMNS)
    with pytest.raises(ValueError, match="vcf_acuity"):
        demo.sample_cohort(5, seed=0, task="vcf")


def test_ensure_cohort_regenerates_for_another_task(tmp_path: Path) -> None:
    path = demo.ensure_cohort(tmp_path, n_patients=3, seed=2, processes=1)
    assert set(pd.read_csv(path)["label"].astype(str)) <= {"0", "1", "2"}
    demo.ensure_cohort(tmp_path, n_patients=3, seed=2, processes=1, task=TASK)
    assert set(pd.read_csv(path)["label"]) <= set(CLASSES)


def test_cli_takes_the_task(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    demo.main([str(tmp_path), "--patients", "3", "--seed", "1", "--processes", "1", "--task", TASK])
    printed = capsys.readouterr().out
    assert "acute" in printed and "repeat" in printed


def test_stages_make_the_configured_task(tmp_path: Path) -> None:
    from omegaconf import OmegaConf

    from radfuse.stages.common import manifest_path

    conf = OmegaConf.load(Path(__file__).resolve().parents[2] / "conf" / "data" / "demo.yaml")
    assert conf.demo.task == "astlof"  # the default demo stays the 3-class one
    data = OmegaConf.create({"manifest": None,
                             "demo": {"dir": str(tmp_path), "n_patients": 3, "seed": 1, "task": TASK}})
    assert set(pd.read_csv(manifest_path(data, make_demo=True))["label"]) <= set(CLASSES)
