"""train stage end to end on a tiny on-disk cohort: run folder, resume, refusals, loggers."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from radfuse.stages import train
from tests.stages.train_helpers import SECRET, compose_train, tiny_cohort

RUN_FILES = {"best.ckpt", "last.ckpt", "config.yaml", "metrics.json"}



@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cohort")
    return tiny_cohort(folder), folder / "cache"


@pytest.mark.parametrize("overrides", [
    ["model.arch=resnet18"],
    ["model.arch=shufflenet_v2_x0_5", "data.mode=3d", "data.size=16"],
])
def test_fast_dev_run_through_the_stage(tmp_path, cohort, overrides):
    manifest, cache = cohort
    cfg = compose_train(manifest, tmp_path, cache, "debug=fast_dev_run", "data.size=32", *overrides)
    train.run(cfg)
    metrics = json.loads((tmp_path / "train" / "default" / "metrics.json").read_text())
    assert metrics["global_step"] == 1 and metrics["classes"] == ["0", "1"]
    assert metrics["n_train"] + metrics["n_val"] < 12  # the external cohort is neither


def test_run_folder_and_resume_from_last(tmp_path, cohort):
    manifest, cache = cohort
    common = ["debug=tiny", "model.arch=resnet18", "run=r18"]
    train.run(compose_train(manifest, tmp_path, cache, *common))
    run_dir = tmp_path / "train" / "r18"
    assert RUN_FILES <= {p.name for p in run_dir.iterdir()}
    first = json.loads((run_dir / "metrics.json").read_text())
    assert first["global_step"] == 2 and first["best_checkpoint"] == "best.ckpt"
    assert 0.0 <= first["best_val_auc"] <= 1.0
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["model"]["arch"] == "resnet18" and config["run"] == "r18"
    best = torch.load(run_dir / "best.ckpt", weights_only=True)
    assert best["hyper_parameters"]["classes"] == ["0", "1"]

    train.run(compose_train(manifest, tmp_path, cache, *common, "ckpt_path=last", "trainer.max_epochs=2"))
    second = json.loads((run_dir / "metrics.json").read_text())
    assert second["global_step"] == 4 and second["epochs_completed"] == 2  # continued, not restarted
    assert torch.load(run_dir / "last.ckpt", weights_only=True)["global_step"] == 4


def test_resume_without_a_previous_run_is_refused(tmp_path, cohort):
    manifest, cache = cohort
    with pytest.raises(FileNotFoundError, match="last.ckpt"):
        train.run(compose_train(manifest, tmp_path, cache, "debug=tiny", "ckpt_path=last", "run=never"))


@pytest.mark.parametrize("backbone,where", [("imagenet", "download.pytorch.org"), ("radimagenet", "RadImageNet"),
                                            ("medicalnet", "MedicalNet")])
def test_pretrained_backbone_without_weights_says_where_to_get_them(tmp_path, cohort, backbone, where):
    manifest, cache = cohort
    with pytest.raises(train.TrainConfigError, match="model.weights=") as error:
        train.run(compose_train(manifest, tmp_path, cache, f"backbone={backbone}"))
    assert where in str(error.value)
    assert not (tmp_path / "train").exists()


def test_pretrained_weights_are_loaded_before_training(tmp_path, cohort):
    manifest, cache = cohort
    from radfuse.models import create_backbone

    source = create_backbone("resnet18", 2, 3, 1000)
    torch.save(source.state_dict(), tmp_path / "resnet18-imagenet.pth")
    cfg = compose_train(manifest, tmp_path, cache, "backbone=imagenet", "model.arch=resnet18",
                        f"model.weights={tmp_path / 'resnet18-imagenet.pth'}", "data.channels=1", "debug=tiny",
                        "optimizer.lr=0.0", "run=loaded")
    train.run(cfg)
    state = torch.load(tmp_path / "train" / "loaded" / "last.ckpt", weights_only=True)["state_dict"]
    # learning rate 0: the 1-channel first conv is the sum of the file's RGB kernels (channel adaptation)
    torch.testing.assert_close(state["backbone.conv1.weight"], source.conv1.weight.sum(1, keepdim=True))
    torch.testing.assert_close(state["backbone.layer3.1.conv2.weight"], source.layer3[1].conv2.weight)


def test_wandb_offline_run_folder_has_metrics_and_no_identifiers(tmp_path, cohort, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("WANDB_SILENT", "true")
    manifest, cache = cohort
    train.run(compose_train(manifest, tmp_path, cache, "debug=tiny", "model.arch=shufflenet_v2_x0_5",
                            "logger=wandb", "logger.wandb.mode=offline", "run=wb"))
    runs = list((tmp_path / "train" / "wb" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    # what `wandb sync` uploads: the run record and files/ (logs/ holds W&B's local debug logs, never uploaded)
    files = list(runs[0].glob("*.wandb")) + [p for p in (runs[0] / "files").rglob("*") if p.is_file()]
    blob = b"".join(p.read_bytes() for p in files)
    assert b"val/auc" in blob and b"train/loss" in blob
    for secret in (SECRET.encode(), b"SECRETPATIENT", str(manifest.parent).encode(), str(tmp_path).encode()):
        assert secret not in blob, f"{secret!r} leaked into the W&B run folder"
    assert list((tmp_path / "train" / "wb" / "logs").glob("version_*/metrics.csv"))  # CSV is always on


def test_grad_cam_overlays_for_chosen_cases_of_a_run(tmp_path, cohort, capsys):
    from radfuse.models import cam

    manifest, cache = cohort
    train.run(compose_train(manifest, tmp_path, cache, "debug=tiny", "model.arch=shufflenet_v2_x0_5", "run=cam"))
    run_dir = tmp_path / "train" / "cam"
    cases = [f"{SECRET}000", f"{SECRET}005"]
    assert cam.main([str(run_dir), "--cases", *cases, "--layer", "stage3"]) == 0
    written = sorted(p.name for p in (run_dir / "cam").glob("*.png"))
    assert written == [f"{c}_stage3.png" for c in cases]
    assert cam.main([str(run_dir), "--cases", "NOSUCHCASE"]) == 2  # the unknown case named, no traceback
    assert "NOSUCHCASE" in capsys.readouterr().err


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_bf16_mixed_precision_on_gpu(tmp_path, cohort):
    manifest, cache = cohort
    cfg = compose_train(manifest, tmp_path, cache, "trainer=gpu", "debug=tiny", "model.arch=resnet18", "run=gpu")
    assert cfg.trainer.precision == "bf16-mixed"
    train.run(cfg)
    metrics = json.loads((tmp_path / "train" / "gpu" / "metrics.json").read_text())
    assert metrics["global_step"] == 2 and torch.isfinite(torch.tensor(metrics["final"]["train/loss"]))


def test_lightning_messages_are_printed_once_under_hydra_logging():
    import logging

    import lightning  # noqa: F401  (gives the `lightning` logger its own console handler)

    from radfuse.stages.common import log_lightning_once

    records = []

    class Collect(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    root, lightning_logger = logging.getLogger(), logging.getLogger("lightning")
    console = logging.StreamHandler()
    lightning_logger.addHandler(console)  # as `import lightning` does, whatever ran before in this process
    collect = Collect()
    root.addHandler(collect)  # as Hydra's job logging does
    try:
        log_lightning_once()
        assert console not in lightning_logger.handlers
        assert not [h for h in lightning_logger.handlers if type(h) is logging.StreamHandler]
        logging.getLogger("lightning.pytorch.utilities").warning("said once")
        assert records.count("said once") == 1
    finally:
        root.removeHandler(collect)
        lightning_logger.removeHandler(console)
