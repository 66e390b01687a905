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
import pandas as pd
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from radfuse import artifacts
from radfuse.models.module import MONITOR, RadfuseClassifier
from radfuse.models.weights import load_weights

log = logging.getLogger(__name__)

LOADING_KEYS = ("weights", "weights_format", "strict", "inflate")
PATH_KEYS = ("paths", "data.manifest", "model.weights", "ckpt_path", "hydra")


class TrainConfigError(ValueError):
    """A configuration that cannot train (e.g. pretrained backbone named without a weights file)."""


# ---------------------------------------------------------------------------------------------- inputs
def manifest_path(cfg: DictConfig) -> Path:
    """The configured manifest, or the demo cohort (generated once under <out>/demo)."""
    if cfg.data.manifest:
        return Path(cfg.data.manifest)
    from radfuse.data.demo import make_cohort

    demo = Path(cfg.paths.out) / "demo"
    existing = demo / "manifest.csv"
    if existing.is_file():
        return existing
    log.info("no data.manifest given: generating the demo cohort under %s", demo)
    return Path(make_cohort(demo, n_patients=cfg.data.demo_patients, seed=cfg.seed))


def class_order(frame: pd.DataFrame, configured: list[str] | None) -> list[str]:
    if configured:
        return [str(c) for c in configured]
    labels = {str(v) for v in frame["label"].dropna()}
    numeric = all(re.fullmatch(r"-?\d+", v) for v in labels)
    return sorted(labels, key=lambda v: (int(v), v) if numeric else (0, v))


def read_valid_manifest(path: Path, cfg: DictConfig) -> tuple[pd.DataFrame, list[str]]:
    from radfuse.data.manifest import read_manifest
    from radfuse.data.validate import validate_manifest

    frame = read_manifest(path)
    classes = class_order(frame, cfg.data.classes)
    problems = validate_manifest(frame, classes, list(cfg.data.clinical_columns), cfg.data.n_folds)
    errors = [p for p in problems if _is_error(p)]
    for problem in problems:
        if not _is_error(problem):
            log.warning("%s", problem)
    if errors:
        listing = "\n".join(f"  - {p}" for p in errors)
        raise ValueError(f"manifest {path} has {len(errors)} problem(s):\n{listing}")
    return frame, classes


def _is_error(problem: Any) -> bool:
    level = getattr(problem, "severity", None) or getattr(problem, "level", None)
    return level is None or str(level).lower() == "error"


# ---------------------------------------------------------------------------------------------- building
def build_datamodule(cfg: DictConfig, frame: pd.DataFrame, classes: list[str]) -> L.LightningDataModule:
    from radfuse.data.splits import load_or_make_splits

    out = Path(cfg.paths.out)
    splits = load_or_make_splits(frame, artifacts.splits_path(out), seed=cfg.seed,
                                 internal_fraction=cfg.data.internal_fraction, n_folds=cfg.data.n_folds)
    return instantiate(cfg.data.datamodule, manifest=frame, splits=splits, crop=instantiate(cfg.data.crop),
                       cache_dir=artifacts.cache_dir(out), classes=classes)


def check_backbone_weights(cfg: DictConfig) -> None:
    """A pretrained backbone named without a file must fail loudly, saying where to get one."""
    if cfg.backbone.pretrained and not cfg.model.weights:
        raise TrainConfigError(
            f"backbone={cfg.backbone.name} needs a local weights file, and model.weights is not set. Such weights "
            f"are published by {cfg.backbone.published_at}. Download the file, then run e.g. "
            f"`python train.py backbone={cfg.backbone.name} model.weights=/path/to/file` "
            f"(or backbone=scratch to train from random initialisation)."
        )


def build_model(cfg: DictConfig, datamodule: Any, classes: list[str]) -> RadfuseClassifier:
    check_backbone_weights(cfg)
    module_cfg = OmegaConf.to_container(cfg.model, resolve=True)
    loading = {key: module_cfg.pop(key) for key in LOADING_KEYS}
    model = instantiate(
        module_cfg, spatial_dims=datamodule.spatial_dims, in_channels=datamodule.in_channels,
        num_classes=len(classes), classes=classes, class_counts=list(datamodule.class_counts),
        optimizer=instantiate(cfg.optimizer), scheduler=instantiate(cfg.scheduler),
    )
    if loading["weights"]:
        load_weights(model.backbone, loading["weights"], weights_format=loading["weights_format"],
                     strict=loading["strict"], inflate_mode=loading["inflate"])
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
        loggers.append(instantiate(logger_cfg, **extra))
    return loggers


def build_callbacks(cfg: DictConfig, run_dir: Path) -> list[Any]:
    callbacks = []
    for key, callback_cfg in cfg.callbacks.items():
        if callback_cfg is None:
            continue
        extra = {"dirpath": str(run_dir)} if key == "model_checkpoint" else {}
        callbacks.append(instantiate(callback_cfg, **extra))
    return callbacks


def resolve_ckpt_path(cfg: DictConfig, run_dir: Path) -> str | None:
    if cfg.ckpt_path in (None, ""):
        return None
    if cfg.ckpt_path == "last":
        last = run_dir / "last.ckpt"
        if not last.is_file():
            raise FileNotFoundError(f"ckpt_path=last but {last} does not exist: train run {run_dir.name!r} first")
        return str(last)
    return str(cfg.ckpt_path)


# ---------------------------------------------------------------------------------------------- outputs
def collect_metrics(trainer: L.Trainer, run: str, classes: list[str], counts: list[int], seconds: float) -> dict:
    checkpoint = trainer.checkpoint_callback
    best_score = getattr(checkpoint, "best_model_score", None)
    best_path = getattr(checkpoint, "best_model_path", "") or ""
    return {
        "run": run,
        "monitor": MONITOR,
        "best_val_auc": None if best_score is None else float(best_score),
        "best_checkpoint": Path(best_path).name if best_path else None,
        "final": {k: float(v) for k, v in trainer.callback_metrics.items()},
        "epochs_completed": int(trainer.current_epoch),
        "global_step": int(trainer.global_step),
        "train_seconds": round(seconds, 2),
        "classes": classes,
        "train_class_counts": [int(c) for c in counts],
    }


def run(cfg: DictConfig) -> float | None:
    """Train one model as configured; return the best validation macro AUC (for Hydra sweepers)."""
    L.seed_everything(cfg.seed, workers=True)
    path = manifest_path(cfg)
    frame, classes = read_valid_manifest(path, cfg)
    datamodule = build_datamodule(cfg, frame, classes)
    model = build_model(cfg, datamodule, classes)
    run = run_name(cfg)
    run_dir = artifacts.train_dir(cfg.paths.out, run)
    run_dir.mkdir(parents=True, exist_ok=True)
    artifacts.write_text(run_dir / artifacts.CONFIG_FILE, OmegaConf.to_yaml(cfg, resolve=True))
    loggers = build_loggers(cfg, run_dir, run)
    trainer = instantiate(cfg.trainer, logger=loggers, callbacks=build_callbacks(cfg, run_dir),
                          default_root_dir=str(run_dir))
    started = time.perf_counter()
    try:
        trainer.fit(model, datamodule=datamodule, ckpt_path=resolve_ckpt_path(cfg, run_dir))
    finally:
        if "wandb" in sys.modules:  # one W&B run per sweep job, even when a job fails
            sys.modules["wandb"].finish()
    metrics = collect_metrics(trainer, run, classes, list(datamodule.class_counts), time.perf_counter() - started)
    if trainer.is_global_zero:
        artifacts.write_json(run_dir / artifacts.METRICS_FILE, metrics)
        artifacts.write_provenance(run_dir, {"manifest": path})
        log.info("run folder %s: best val macro AUC %s", run_dir, metrics["best_val_auc"])
    return metrics["best_val_auc"]
