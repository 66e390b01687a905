"""train.py from the command line: Hydra multirun sweeps (one run folder per job), Wang 2025 margins, DDP."""

from __future__ import annotations

import json

from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

from radfuse.models import create_backbone
from radfuse.stages.study import with_study_groups
from tests.stages.train_helpers import CONF, run_train_py, tiny_cohort


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cohort")
    return tiny_cohort(folder), folder / "cache"


def _metrics(out, run):
    return json.loads((out / "train" / run / "metrics.json").read_text())


def test_two_job_sweep_gives_two_run_folders(tmp_path, cohort):
    manifest, cache = cohort
    result = run_train_py(manifest, tmp_path, cache, "-m", "debug=tiny", "model.arch=shufflenet_v2_x0_5",
                          "data.margin=0,2")
    assert result.returncode == 0, result.stderr[-3000:]
    runs = sorted(p.name for p in (tmp_path / "train").iterdir())  # named by each job's overrides
    assert len(runs) == 2 and "data.margin=0," in runs[0] and "data.margin=2," in runs[1]
    for run in runs:
        assert {"best.ckpt", "last.ckpt", "config.yaml", "metrics.json"} <= {
            p.name for p in (tmp_path / "train" / run).iterdir()}
        assert _metrics(tmp_path, run)["run"] == run
    configs = [(tmp_path / "train" / r / "config.yaml").read_text() for r in runs]
    assert "margin: 0" in configs[0] and "margin: 2" in configs[1]


def test_wang2025_margin_sweep_end_to_end(tmp_path, cohort):
    """experiment=wang2025: 3D ShuffleNet from (inflated) ImageNet weights, one model per ROI expansion."""
    manifest, cache = cohort
    weights = tmp_path / "shufflenetv2_x1.pth"  # stands in for torchvision's file: same names, random values
    torch.save(create_backbone("shufflenet_v2_x1_0", 2, 3, 1000).state_dict(), weights)
    result = run_train_py(manifest, tmp_path, cache, "-m", "experiment=wang2025", f"model.weights={weights}",
                          "debug=tiny", "data.size=16", "trainer.limit_train_batches=1",
                          "trainer.limit_val_batches=1")
    assert result.returncode == 0, result.stderr[-3000:]
    runs = {p.name for p in (tmp_path / "train").iterdir()}
    assert len(runs) == 6
    for m in [0, 2, 4, 6, 8, 10]:
        (run,) = [r for r in runs if f"data.margin={m}," in r]
        metrics = _metrics(tmp_path, run)
        assert metrics["global_step"] == 1
        config = (tmp_path / "train" / run / "config.yaml").read_text()
        assert f"margin: {m}\n" in config and "arch: shufflenet_v2_x1_0" in config
        ckpt = torch.load(tmp_path / "train" / run / "last.ckpt", weights_only=True)
        assert ckpt["hyper_parameters"]["arch"] == "shufflenet_v2_x1_0"
        assert ckpt["hyper_parameters"]["spatial_dims"] == 3
        assert ckpt["state_dict"]["backbone.conv1.0.weight"].shape == (24, 3, 3, 3, 3)


def test_missing_weights_exit_with_a_message(tmp_path, cohort, capsys):
    from radfuse.stages.train import run_or_exit
    from tests.stages.train_helpers import compose_train

    manifest, cache = cohort
    with pytest.raises(SystemExit) as exit_info:
        run_or_exit(compose_train(manifest, tmp_path, cache, "experiment=liu2025"))
    assert exit_info.value.code == 2
    stderr = capsys.readouterr().err
    assert "model.weights=" in stderr and "RadImageNet" in stderr


@pytest.mark.parametrize("experiment", ["liu2025", "wang2025", "demo"])
def test_experiments_and_launchers_compose(experiment):
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        cfg = compose("train", overrides=with_study_groups("train", [f"experiment={experiment}"], Path(CONF)))
        assert cfg.model.arch in {"resnet50", "resnet18", "shufflenet_v2_x1_0"}
        for launcher, target in (("local", "JoblibLauncher"), ("slurm", "SlurmLauncher")):
            hydra_cfg = compose("train", overrides=[f"hydra/launcher={launcher}"], return_hydra_config=True)
            assert hydra_cfg.hydra.launcher._target_.endswith(target)
    expected = {"liu2025": ("2d", 64, "radimagenet"), "wang2025": ("3d", 64, "imagenet"), "demo": ("2d", 64, "scratch")}
    assert (cfg.data.mode, cfg.data.size, cfg.backbone.name) == expected[experiment]


@pytest.mark.slow
def test_ddp_two_cpu_processes(tmp_path, cohort):
    """trainer=ddp on CPU: two gloo processes, one run folder written by rank 0."""
    manifest, cache = cohort
    result = run_train_py(manifest, tmp_path, cache, "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2",
                          "trainer.precision=32-true", "trainer.sync_batchnorm=false", "debug=tiny",
                          "model.arch=shufflenet_v2_x0_5", "run=ddp", timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = _metrics(tmp_path, "ddp")
    # 8 training ROIs, batch 4: one process takes 2 steps; two ranks split the data and take 1 step each
    assert metrics["global_step"] == 1 and 0.0 <= metrics["best_val_auc"] <= 1.0
    assert metrics["n_train"] == 8
    assert "distributed_backend=gloo" in result.stderr + result.stdout


@pytest.mark.slow
def test_joblib_launcher_runs_jobs_in_parallel_processes(tmp_path, cohort):
    manifest, cache = cohort
    result = run_train_py(manifest, tmp_path, cache, "-m", "hydra/launcher=local", "hydra.launcher.n_jobs=2",
                          "debug=tiny", "model.arch=shufflenet_v2_x0_5", "data.margin=0,2")
    assert result.returncode == 0, result.stderr[-3000:]
    runs = sorted(p.name for p in (tmp_path / "train").iterdir())
    assert len(runs) == 2 and all((tmp_path / "train" / r / "last.ckpt").is_file() for r in runs)
