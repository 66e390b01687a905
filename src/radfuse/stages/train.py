"""train.py stage: manifest -> splits -> datamodule -> backbone (+ local weights) -> Lightning fit -> run folder.

The run folder `<out>/train/<run>/` holds best.ckpt (best val macro AUC), last.ckpt, config.yaml, metrics.json,
provenance.json and logs/metrics.csv (plus wandb/ with logger=wandb). This is the only module of the training
path that reads a DictConfig; everything it builds takes plain objects.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from pathlib import Path
from typing import Any

import lightning as L
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from radfuse import artifacts
from radfuse.artifacts import LAST_CHECKPOINT
from radfuse.data.datamodule import RadfuseDataModule
from radfuse.models.checkpoints import AtomicCheckpointIO, checkpoint_epoch
from radfuse.models.module import MONITOR, RadfuseClassifier
from radfuse.models.weight_formats import WeightsError
from radfuse.models.weights import load_weights
from radfuse.run_lock import RunFolderLocked
from radfuse.stages.preflight import ensure_ready, train_problems
from radfuse.stages.common import (Cohort, crop_config, exit_on_input_error, load_cohort, log_lightning_once,
                                   save_run_config)

log = logging.getLogger(__name__)

LOADING_KEYS = ("weights", "weights_format", "strict", "inflate")
CHECKPOINT_CALLBACKS = ("model_checkpoint", "last_checkpoint")  # callbacks that write into the run folder
PATH_KEYS = ("paths", "data.manifest", "data.demo", "model.weights", "backbone.weights", "ckpt_path")


class TrainConfigError(ValueError):
    """A configuration that cannot train (e.g. pretrained backbone named without a weights file)."""


# ---------------------------------------------------------------------------------------------- building
def build_datamodule(cfg: DictConfig, cohort: Cohort) -> RadfuseDataModule:
    data = cfg.data
    return RadfuseDataModule(
        cohort.frame, cohort.splits, crop_config(data), cfg.paths.cache, cohort.classes,
        batch_size=int(data.batch_size), num_workers=int(data.num_workers), fold=data.get("fold"),
        augment=bool(data.get("augment", True)), seed=int(cfg.seed),
    )


def check_backbone_weights(cfg: DictConfig) -> None:
    """A pretrained backbone without its weights file must fail loudly, saying where to get one and put it."""
    weights = cfg.model.weights
    own = cfg.backbone.get("weights")
    if not cfg.backbone.pretrained or (weights and (weights != own or Path(weights).is_file())):
        return  # an explicit model.weights that does not exist is reported by load_weights
    where = (f"its own file {own} (backbone.weights; the folder is $RADFUSE_WEIGHTS_DIR, default weights/) does "
             "not exist" if own and weights == own else "model.weights is not set")
    raise TrainConfigError(
        f"backbone={cfg.backbone.name} needs a local weights file, and {where}. Such weights are published by "
        f"{cfg.backbone.published_at}. Download the file, then put (or link) it there, or run e.g. "
        f"`python train.py backbone={cfg.backbone.name} model.weights=/path/to/file` "
        f"(or backbone=scratch to train from random initialisation)."
    )


def build_model(cfg: DictConfig, datamodule: RadfuseDataModule) -> RadfuseClassifier:
    module_cfg = OmegaConf.to_container(cfg.model, resolve=True)
    loading = {key: module_cfg.pop(key) for key in LOADING_KEYS}
    # partial first: Hydra would turn object arguments (a schedule dataclass) back into configs
    make_model = instantiate(module_cfg, _partial_=True)
    model = make_model(
        spatial_dims=datamodule.spatial_dims, in_channels=datamodule.in_channels,
        num_classes=datamodule.num_classes, classes=datamodule.classes, class_counts=datamodule.class_counts,
        optimizer=instantiate(cfg.optimizer), scheduler=instantiate(cfg.scheduler),
    )
    if loading["weights"]:
        report = load_weights(model.backbone, loading["weights"], weights_format=loading["weights_format"],
                              strict=loading["strict"], inflate_mode=loading["inflate"])
        print(f"[radfuse] {report.summary()}", flush=True)
    return model


def run_name(cfg: DictConfig) -> str:
    """cfg.run, else the command-line overrides (one folder per sweep job, stable across re-runs)."""
    if cfg.get("run"):
        return str(cfg.run)
    if HydraConfig.initialized():
        overrides = HydraConfig.get().job.override_dirname
        if overrides:
            return re.sub(r"[^A-Za-z0-9=,._+-]", "_", overrides)
    return "default"


def loggable_config(cfg: DictConfig, share_paths: bool) -> dict[str, Any]:
    """The resolved config for remote loggers, without paths unless the user opted in."""
    container = OmegaConf.to_container(cfg, resolve=True)
    if not share_paths:
        for dotted in PATH_KEYS:
            parent, _, leaf = dotted.rpartition(".")
            node = container
            for part in filter(None, parent.split(".")):
                node = node.get(part, {}) if isinstance(node, dict) else {}
            if isinstance(node, dict):
                node.pop(leaf, None)
    return container


def build_loggers(cfg: DictConfig, run_dir: Path, run: str) -> list[Any]:
    loggers = []
    for key, logger_cfg in cfg.logger.items():
        if not isinstance(logger_cfg, DictConfig) or "_target_" not in logger_cfg:
            continue
        extra: dict[str, Any] = {"save_dir": str(run_dir)}
        if key == "wandb":
            extra.update(name=run, config=loggable_config(cfg, bool(cfg.logger.get("share_paths", False))))
        # partial: `config` is also the name of instantiate's own first parameter
        loggers.append(instantiate(logger_cfg, _partial_=True)(**extra))
    return loggers


def build_callbacks(cfg: DictConfig, run_dir: Path) -> list[Any]:
    callbacks = []
    for key, callback_cfg in cfg.callbacks.items():
        if callback_cfg is None:
            continue
        extra = {"dirpath": str(run_dir)} if key in CHECKPOINT_CALLBACKS else {}
        callbacks.append(instantiate(callback_cfg, **extra))
    return callbacks


def build_trainer(cfg: DictConfig, run_dir: Path, loggers: list[Any]) -> L.Trainer:
    """The configured Trainer writing into `run_dir`; checkpoints are written atomically on any file system
    (Lightning's own writer stages them in the system temporary folder and copies them across file systems)."""
    return instantiate(cfg.trainer, logger=loggers, callbacks=build_callbacks(cfg, run_dir),
                       default_root_dir=str(run_dir), plugins=[AtomicCheckpointIO()])


def resolve_ckpt_path(cfg: DictConfig, run_dir: Path) -> str | None:
    if cfg.ckpt_path in (None, ""):
        return None
    if cfg.ckpt_path == "last":
        last = run_dir / LAST_CHECKPOINT
        if not last.is_file():
            raise FileNotFoundError(f"ckpt_path=last but {last} does not exist: train run {run_dir.name!r} first")
        return str(last)
    return str(cfg.ckpt_path)


# ---------------------------------------------------------------------------------------------- outputs
def collect_metrics(trainer: L.Trainer, run: str, datamodule: RadfuseDataModule, seconds: float) -> dict:
    checkpoint = trainer.checkpoint_callback
    best_score = getattr(checkpoint, "best_model_score", None)
    best_path = getattr(checkpoint, "best_model_path", "") or ""
    run_dir = Path(best_path).parent if best_path else None
    return {
        "run": run,
        "monitor": MONITOR,
        "validated_on": "internal cohort" if datamodule.fold is None else f"CV fold {datamodule.fold}",
        "best_val_auc": None if best_score is None else float(best_score),
        "best_checkpoint": Path(best_path).name if best_path else None,
        "best_epoch": checkpoint_epoch(best_path) if best_path and Path(best_path).is_file() else None,
        "last_epoch": _last_epoch(run_dir),
        "final": {k: float(v) for k, v in trainer.callback_metrics.items()},
        "epochs_completed": int(trainer.current_epoch),
        "global_step": int(trainer.global_step),
        "train_seconds": round(seconds, 2),
        "classes": datamodule.classes,
        "train_class_counts": datamodule.class_counts,
        "n_train": len(datamodule.frame("train")),
        "n_val": len(datamodule.frame("val")),
    }


def _owning(run_dir: Path):
    """The run folder's lock (radfuse.run_lock), taken by the launching process only: DDP workers that Lightning
    starts (LOCAL_RANK / NODE_RANK > 0) write nothing of their own."""
    import contextlib
    import os

    from radfuse.run_lock import run_lock

    worker = int(os.environ.get("LOCAL_RANK", "0") or 0) > 0 or int(os.environ.get("NODE_RANK", "0") or 0) > 0
    return contextlib.nullcontext() if worker else run_lock(run_dir)


def _last_epoch(run_dir: Path | None) -> int | None:
    last = run_dir / LAST_CHECKPOINT if run_dir is not None else None
    return checkpoint_epoch(last) if last is not None and last.is_file() else None


def run(cfg: DictConfig) -> float | None:
    """Train one model as configured; return the best validation macro AUC (for Hydra sweepers)."""
    log_lightning_once()
    L.seed_everything(cfg.seed, workers=True)
    check_backbone_weights(cfg)  # before any data work: a missing weights file is the cheapest error to report
    cohort = load_cohort(cfg)
    # a run that chooses its checkpoint on the internal cohort needs one: refused here, before any fitting
    ensure_ready(train_problems(cfg, cohort.splits, str(cohort.manifest_path)), str(cohort.manifest_path))
    datamodule = build_datamodule(cfg, cohort)
    model = build_model(cfg, datamodule)
    run = run_name(cfg)
    run_dir = artifacts.train_dir(cfg.paths.out, run)
    loggers = build_loggers(cfg, run_dir, run)
    trainer = build_trainer(cfg, run_dir, loggers)
    started = time.perf_counter()
    with _owning(run_dir):
        ckpt_path = resolve_ckpt_path(cfg, run_dir)
        if trainer.is_global_zero:
            artifacts.start_run(run_dir)  # a killed (re)run is never taken for a finished one
            if ckpt_path is None:
                clear_earlier_attempt(run_dir, loggers)
            save_run_config(cfg, run_dir, train_inputs(cfg, cohort, ckpt_path))
        try:
            trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
        finally:
            if "wandb" in sys.modules:  # one W&B run per sweep job, even when a job fails
                sys.modules["wandb"].finish()
        metrics = collect_metrics(trainer, run, datamodule, time.perf_counter() - started)
        if trainer.is_global_zero:
            artifacts.write_json(run_dir / artifacts.METRICS_FILE, metrics)
            if trainer.interrupted:  # Ctrl-C: Lightning returns from fit; the run did not finish
                print(f"[radfuse] train: interrupted; resume with ckpt_path=last run={run}", flush=True)
                return metrics["best_val_auc"]
            artifacts.mark_complete(run_dir, "train")
            log.info("run folder %s: best val macro AUC %s", run_dir, metrics["best_val_auc"])
            print(f"[radfuse] train: {run_dir} (best val macro AUC {metrics['best_val_auc']})", flush=True)
    return metrics["best_val_auc"]


def clear_earlier_attempt(run_dir: Path, loggers: list[Any]) -> None:
    """A run that starts from scratch (no ckpt_path) in a folder an earlier attempt wrote: remove that attempt's
    checkpoints, metrics.json and CSV logs (its `logs/version_<n>/` would sit beside this run's, and fast_dev_run
    writes no checkpoint, so old ones would pass for this run's). A W&B folder is kept (it may hold unsynced
    offline runs); a resumed run (ckpt_path=last) keeps everything."""
    import shutil

    from lightning.pytorch.loggers import CSVLogger

    for stale in [*run_dir.glob("*.ckpt"), run_dir / artifacts.METRICS_FILE]:
        stale.unlink(missing_ok=True)
    for logger in loggers:
        folder = Path(logger.root_dir) if isinstance(logger, CSVLogger) else None
        inside = folder is not None and run_dir.resolve() in folder.resolve().parents  # never the run folder
        if inside and folder.is_dir():
            shutil.rmtree(folder)


def train_inputs(cfg: DictConfig, cohort: Cohort, ckpt_path: str | None) -> dict[str, Any]:
    """What provenance.json hashes for a train run: manifest, split, weights file, the checkpoint resumed from."""
    inputs: dict[str, Any] = {"manifest": cohort.manifest_path, "splits": artifacts.splits_path(cfg.paths.out)}
    if cfg.model.get("weights"):
        inputs["weights"] = cfg.model.weights
    if ckpt_path:
        inputs["resumed_from"] = ckpt_path
    return inputs


@exit_on_input_error
def run_or_exit(cfg: DictConfig) -> float | None:
    """`run` for the command line: input errors end in a clear message and exit status 2."""
    try:
        return run(cfg)
    except (TrainConfigError, WeightsError, RunFolderLocked) as err:
        print(f"[radfuse] error: {err}", file=sys.stderr, flush=True)
        sys.exit(2)
