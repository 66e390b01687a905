"""train.py from the command line: Hydra multirun sweeps (one run folder per job), Wang 2025 margins, DDP."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

from radfuse.data.datamodule import crop_cache_dir
from radfuse.data.train_run import reopen_train_run
from radfuse.models import create_backbone
from radfuse.stages.study import with_study_groups
from tests.stages.train_helpers import CONF, run_train_py, tiny_cohort


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cohort")
    return tiny_cohort(folder), folder / "cache"


def _load_entry(path):
    return torch.load(path, weights_only=False)


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
    # the sweep reached the data, not only the config: each job cropped with its own margin (its own crop cache,
    # whose crops differ) and so trained other weights, from the same seed and everything else equal
    crops = [reopen_train_run(tmp_path / "train" / r).crop for r in runs]
    assert [c.margin for c in crops] == [0, 2]
    folders = [crop_cache_dir(cache, c) for c in crops]
    assert folders[0] != folders[1] and all(len(list(f.glob("*.pt"))) >= 8 for f in folders)
    by_case = [{str(e["case_id"]): e["image"] for e in map(_load_entry, f.glob("*.pt"))} for f in folders]
    case = sorted(by_case[0])[0]
    assert by_case[0][case].shape == by_case[1][case].shape and not torch.equal(by_case[0][case], by_case[1][case])
    weights = [torch.load(tmp_path / "train" / r / "last.ckpt", weights_only=True)["state_dict"] for r in runs]
    assert any(not torch.equal(weights[0][k], weights[1][k]) for k in weights[0] if weights[0][k].is_floating_point())


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


PRESET_EFFECTS = {  # what each preset changes in train's config, every value unlike the default's
    "liu2025": {"backbone.name": "radimagenet", "optimizer._target_": "torch.optim.Adam", "data.aspect": "stretch",
                "model.backbone_lr_mult": 0.1, "trainer.max_epochs": 50},
    "wang2025": {"model.arch": "shufflenet_v2_x1_0", "backbone.name": "imagenet", "data.mode": "3d",
                 "scheduler._target_": "radfuse.models.schedules.WarmupConstant", "data.classes": ["acute", "chronic"],
                 "hydra.sweeper.params": {"data.margin": "0,2,4,6,8,10"}},
    "demo": {"model.arch": "resnet18", "data.demo.make_in_any_stage": True},
}


def _train_cfg(*overrides: str):
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return compose("train", overrides=with_study_groups("train", list(overrides), Path(CONF)),
                       return_hydra_config=True)


@pytest.mark.parametrize("experiment", sorted(PRESET_EFFECTS))
def test_experiments_change_what_they_say(experiment):
    from omegaconf import OmegaConf

    def plain(cfg, key):
        value = OmegaConf.select(cfg, key)
        return OmegaConf.to_container(value) if OmegaConf.is_config(value) else value

    default, cfg = _train_cfg(), _train_cfg(f"experiment={experiment}")
    for key, value in PRESET_EFFECTS[experiment].items():
        assert plain(cfg, key) == value != plain(default, key), key


def test_launchers_take_their_sweep_settings():
    for launcher, target, key, value in (("local", "JoblibLauncher", "n_jobs", 3),
                                         ("slurm", "SlurmLauncher", "timeout_min", 77)):
        hydra_cfg = _train_cfg(f"hydra/launcher={launcher}", f"hydra.launcher.{key}={value}").hydra
        assert hydra_cfg.launcher._target_.endswith(target) and hydra_cfg.launcher[key] == value


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
