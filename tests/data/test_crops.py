import pytest
import torch

from radfuse.data import crops as crops_module
from radfuse.data.crops import WINDOWS, CropConfig, crop_pipeline
from radfuse.data.datamodule import RadfuseDataModule, cached_dataset, manifest_items
from radfuse.data.manifest import read_manifest
from radfuse.data.splits import make_splits
from tests.data.cohort_factory import make_tiny_cohort

LUMBAR_BODIES = [20, 21, 22, 23, 24]  # VerSe numbering in vertebral_bodies.nii.gz: L1..L5


def _hu(crop: CropConfig, values: torch.Tensor) -> torch.Tensor:
    width, level = WINDOWS[crop.window]
    return values * width + level - width / 2


@pytest.mark.parametrize("mode,expected", [("2d", (3, 64, 64)), ("2.5d", (3, 64, 64)), ("3d", (3, 64, 64, 64))])
@pytest.mark.parametrize("margin", [0, 6])
def test_real_ct_crops_have_the_right_size_and_are_centred_on_bone(spine_ct, mode, expected, margin):
    crop = CropConfig(mode=mode, margin=margin, size=64, normalize="unit")
    pipeline = crop_pipeline(crop)
    for label in LUMBAR_BODIES:
        item = pipeline({"image": str(spine_ct / "ct.nii.gz"), "mask": str(spine_ct / "vertebral_bodies.nii.gz"),
                         "mask_label": label, "case_id": f"L{label - 19}"})
        image, roi = item["image"], item["mask"][0] > 0.5
        assert tuple(image.shape) == expected
        centre = image[1] if mode == "2.5d" else image[0]
        assert _hu(crop, centre[roi]).mean() > 100, (mode, margin, label)  # trabecular bone, not soft tissue
        share = roi.float().mean().item()
        # The ROI fills much of a tight crop and less of a crop with a 6-voxel margin, and sits in its middle.
        assert (share > 0.1) if margin == 0 else (0.05 < share < 0.5)
        coords = torch.nonzero(roi).float().mean(0) / torch.tensor(roi.shape, dtype=torch.float32)
        assert torch.all((coords > 0.3) & (coords < 0.7))


def test_padding_to_square_keeps_the_vertebral_proportions(spine_ct):
    import SimpleITK as sitk

    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.Execute(sitk.ReadImage(str(spine_ct / "vertebral_bodies.nii.gz")))
    spacing = sitk.ReadImage(str(spine_ct / "vertebral_bodies.nii.gz")).GetSpacing()
    box = stats.GetBoundingBox(20)  # L1: x0, y0, z0, sx, sy, sz (LPS, voxel units)
    physical = (box[5] * spacing[2]) / (box[4] * spacing[1])  # superior-inferior height / antero-posterior depth

    def rows_over_cols(aspect):
        item = crop_pipeline(CropConfig(mode="2d", aspect=aspect, size=64))(
            {"image": str(spine_ct / "ct.nii.gz"), "mask": str(spine_ct / "vertebral_bodies.nii.gz"), "mask_label": 20})
        roi = item["mask"][0] > 0.5
        rows, cols = torch.nonzero(roi.any(1)).flatten(), torch.nonzero(roi.any(0)).flatten()
        return (rows.max() - rows.min() + 1).item() / (cols.max() - cols.min() + 1).item()

    assert physical < 0.85  # L1 is lower than it is deep: a wedge
    assert rows_over_cols("pad") == pytest.approx(physical, abs=0.1)
    assert rows_over_cols("stretch") == pytest.approx(1.0, abs=0.1)


def test_margin_expands_the_physical_field_of_view(spine_ct):
    def roi_share(margin):
        crop = CropConfig(mode="3d", margin=margin, size=32, normalize="unit")
        item = crop_pipeline(crop)({"image": str(spine_ct / "ct.nii.gz"),
                                    "mask": str(spine_ct / "vertebral_bodies.nii.gz"), "mask_label": 22})
        return item["mask"].mean().item()
    shares = [roi_share(m) for m in (0, 2, 6, 10)]
    assert shares == sorted(shares, reverse=True)


def test_zscore_normalisation_and_channel_replication(spine_ct):
    crop = CropConfig(mode="2d", size=32, channels=3)
    item = crop_pipeline(crop)({"image": str(spine_ct / "ct.nii.gz"),
                                "mask": str(spine_ct / "vertebral_bodies.nii.gz"), "mask_label": 21})
    image = item["image"]
    assert image.dtype == torch.float32
    assert torch.equal(image[0], image[2])
    assert abs(image[0].mean().item()) < 1e-4 and abs(image[0].std().item() - 1) < 0.02
    single = crop_pipeline(CropConfig(mode="2d", size=32, channels=1))(
        {"image": str(spine_ct / "ct.nii.gz"), "mask": str(spine_ct / "vertebral_bodies.nii.gz"), "mask_label": 21})
    assert single["image"].shape == (1, 32, 32)


def test_invalid_crop_settings_are_refused():
    with pytest.raises(ValueError, match="crop mode"):
        CropConfig(mode="4d")
    with pytest.raises(ValueError, match="window"):
        CropConfig(window="lung")
    assert CropConfig(margin=2).key() != CropConfig(margin=4).key()
    assert CropConfig(margin=2).key() == CropConfig(margin=2, spacing=[1, 1, 1]).key()


def test_cache_hits_on_the_second_pass_and_misses_when_the_crop_config_changes(tmp_path, monkeypatch):
    manifest = make_tiny_cohort(tmp_path / "cohort", n_patients=6)
    items = manifest_items(read_manifest(manifest), ["0", "1"])
    reads = []
    original = crops_module.io.read_image
    monkeypatch.setattr(crops_module.io, "read_image", lambda p: reads.append(p) or original(p))
    crop = CropConfig(mode="2d", size=32)
    first = [cached_dataset(items, crop, tmp_path / "cache")[i]["image"] for i in range(len(items))]
    assert len(reads) == 2 * len(items)  # image + mask of every item
    second = [cached_dataset(items, crop, tmp_path / "cache")[i]["image"] for i in range(len(items))]
    assert len(reads) == 2 * len(items)  # all hits: nothing read again
    assert all(torch.equal(a, b) for a, b in zip(first, second))
    changed = CropConfig(mode="2d", size=32, margin=3)
    cached_dataset(items, changed, tmp_path / "cache")[0]
    assert len(reads) == 2 * len(items) + 2  # a new configuration misses
    assert len(list((tmp_path / "cache").iterdir())) == 2


def test_datamodule_serves_folds_cohorts_and_deterministic_prediction(tmp_path):
    manifest = make_tiny_cohort(tmp_path / "cohort", n_patients=20)
    frame = read_manifest(manifest)
    splits = make_splits(frame, seed=0, n_folds=3)
    dm = RadfuseDataModule(frame, splits, CropConfig(mode="2d", size=32), tmp_path / "cache", ["0", "1"],
                           batch_size=4, fold=1)
    dm.prepare_data()
    train, val = dm.frame("train"), dm.frame("val")
    assert not set(train.patient_id) & set(val.patient_id)
    assert set(train.patient_id) | set(val.patient_id) == {p for p, c in splits.cohorts.items() if c == "train"}
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (4, 3, 32, 32) and batch["label"].dtype == torch.int64
    assert len(batch["case_id"]) == 4
    assert sum(dm.class_counts) == len(train)
    predicted = [cid for b in dm.predict_dataloader() for cid in b["case_id"]]
    assert predicted == list(frame.case_id)
    one = torch.cat([b["image"] for b in dm.predict_dataloader()])
    two = torch.cat([b["image"] for b in dm.predict_dataloader()])
    assert torch.equal(one, two)
    assert dm.test_dataloader() and dm.spatial_dims == 2 and dm.in_channels == 3
