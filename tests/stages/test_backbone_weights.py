"""Per-backbone weights files: a backbone sweep starts each backbone from its own file; one file for two
pretrained backbones is refused. The files are random state dicts in torchvision's layout, written here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from radfuse.models import create_backbone
from radfuse.stages import train
from radfuse.stages.common import load_cohort
from radfuse.stages.sweep_checks import SameWeightsRefused, check_sweep_overrides, record_job_weights
from tests.stages.train_helpers import compose_train, run_train_py, tiny_cohort

KEY = "layer3.1.conv2.weight"


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cohort")
    return tiny_cohort(folder), folder / "cache"


def _write_weights(folder: Path) -> dict[str, Path]:
    """imagenet_resnet18.pth and radimagenet_resnet18.pt: the backbones' own file names, different values."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {"imagenet": folder / "imagenet_resnet18.pth", "radimagenet": folder / "radimagenet_resnet18.pt"}
    for seed, path in enumerate(files.values()):
        torch.manual_seed(seed)
        torch.save(create_backbone("resnet18", 2, 3, 1000).state_dict(), path)
    return files


def test_each_backbone_starts_from_its_own_file(tmp_path, cohort, monkeypatch):
    manifest, cache = cohort
    files = _write_weights(tmp_path / "weights")
    monkeypatch.setenv("RADFUSE_WEIGHTS_DIR", str(tmp_path / "weights"))
    initial = {}
    for backbone, path in files.items():
        cfg = compose_train(manifest, tmp_path, cache, f"backbone={backbone}", "model.arch=resnet18")
        assert cfg.model.weights == str(path)
        train.check_backbone_weights(cfg)
        model = train.build_model(cfg, train.build_datamodule(cfg, load_cohort(cfg)))
        initial[backbone] = model.backbone.state_dict()[KEY]
        torch.testing.assert_close(initial[backbone], torch.load(path, weights_only=True)[KEY])
    assert not torch.allclose(initial["imagenet"], initial["radimagenet"])


def test_a_missing_own_file_says_where_it_is_expected(tmp_path, cohort, monkeypatch):
    manifest, cache = cohort
    monkeypatch.setenv("RADFUSE_WEIGHTS_DIR", str(tmp_path / "nowhere"))
    cfg = compose_train(manifest, tmp_path, cache, "backbone=radimagenet")
    with pytest.raises(train.TrainConfigError) as err:
        train.check_backbone_weights(cfg)
    message = str(err.value)
    assert str(tmp_path / "nowhere" / "radimagenet_resnet50.pt") in message and "RADFUSE_WEIGHTS_DIR" in message
    assert "RadImageNet" in message and "model.weights=" in message


def test_one_weights_file_for_two_pretrained_backbones_is_refused():
    pretrained = {"imagenet": True, "radimagenet": True, "scratch": False}
    with pytest.raises(SameWeightsRefused, match="'imagenet', 'radimagenet'"):
        check_sweep_overrides(["backbone=imagenet,radimagenet", "model.weights=/m/r50.pth"], pretrained)
    check_sweep_overrides(["backbone=imagenet,radimagenet"], pretrained)  # each its own file
    with pytest.raises(SameWeightsRefused, match="scratch"):  # scratch would load the file too
        check_sweep_overrides(["backbone=imagenet,scratch", "model.weights=/m/r50.pth"], pretrained)
    check_sweep_overrides(["backbone=imagenet", "data.margin=0,6", "model.weights=/m/r50.pth"], pretrained)
    check_sweep_overrides(["backbone=imagenet,scratch"], pretrained)
    check_sweep_overrides(["backbone=imagenet,radimagenet", "model.weights=/a.pth,/b.pt"], pretrained)


def test_a_job_reusing_another_backbones_file_is_refused(tmp_path):
    record, weights = tmp_path / "sweep" / "backbone_weights.json", tmp_path / "w.pth"
    weights.write_bytes(b"")
    record_job_weights(record, "imagenet", str(weights))
    record_job_weights(record, "imagenet", str(weights))  # the same backbone again (another margin): fine
    link = tmp_path / "link.pt"
    link.symlink_to(weights)
    with pytest.raises(SameWeightsRefused, match="imagenet"):
        record_job_weights(record, "radimagenet", str(link))
    assert json.loads(record.read_text()) == {"imagenet": str(weights.resolve())}


def test_the_sweep_with_one_model_weights_is_refused_before_any_job(tmp_path, cohort):
    manifest, cache = cohort
    files = _write_weights(tmp_path / "weights")
    result = run_train_py(manifest, tmp_path, cache, "-m", "backbone=imagenet,radimagenet", "model.arch=resnet18",
                          f"model.weights={files['imagenet']}", "debug=tiny")
    assert result.returncode == 2, result.stderr[-3000:]
    assert "same file" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "train").exists()


@pytest.mark.slow
def test_a_backbone_sweep_trains_each_backbone_from_its_own_file(tmp_path, cohort, monkeypatch):
    manifest, cache = cohort
    files = _write_weights(tmp_path / "weights")
    monkeypatch.setenv("RADFUSE_WEIGHTS_DIR", str(tmp_path / "weights"))
    result = run_train_py(manifest, tmp_path, cache, "-m", "backbone=imagenet,radimagenet", "model.arch=resnet18",
                          "debug=tiny", "optimizer.lr=0.0", "trainer.limit_train_batches=1",
                          "trainer.limit_val_batches=1")
    assert result.returncode == 0, result.stderr[-3000:]
    runs = sorted(p.name for p in (tmp_path / "train").iterdir())
    assert len(runs) == 2
    for backbone, path in files.items():
        (run,) = [r for r in runs if f"backbone={backbone}," in r or r.startswith(f"backbone={backbone}")]
        state = torch.load(tmp_path / "train" / run / "last.ckpt", weights_only=True)["state_dict"]
        # learning rate 0: the trained network still holds its own file's values
        torch.testing.assert_close(state[f"backbone.{KEY}"], torch.load(path, weights_only=True)[KEY])


def test_the_backbones_weights_path_stays_out_of_remote_logger_configs(tmp_path, cohort):
    manifest, cache = cohort
    cfg = compose_train(manifest, tmp_path, cache, "backbone=imagenet")
    assert "weights" not in train.loggable_config(cfg, share_paths=False)["backbone"]
    assert train.loggable_config(cfg, share_paths=True)["backbone"]["weights"].endswith("imagenet_resnet50.pth")
