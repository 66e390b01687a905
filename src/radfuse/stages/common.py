"""What every stage does first: find the manifest (prepare makes the demo cohort on first use), validate, split."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from omegaconf import DictConfig, OmegaConf

from radfuse.artifacts import CONFIG_FILE, splits_path, write_provenance, write_text
from radfuse.data.crops import CropConfig
from radfuse.data.train_run import crop_from_settings
from radfuse.data.manifest import coerce_clinical, read_manifest
from radfuse.data.splits import Splits, load_or_make_splits
from radfuse.data.validate import ensure_valid



@dataclass
class Cohort:
    frame: pd.DataFrame
    splits: Splits
    classes: list[str]
    clinical: dict[str, str]
    manifest_path: Path


def manifest_path(data: DictConfig, make_demo: bool = False) -> Path:
    """The configured manifest, or the demo cohort's. A missing demo cohort is made by prepare (`make_demo`) or by
    any stage of a config that says it is the demo (`data.demo.make_in_any_stage`, experiment=demo); any other stage
    stops: a user who forgot `data.manifest` must not get a synthetic cohort."""
    if data.manifest:
        return Path(data.manifest)
    from radfuse.data.demo import MANIFEST_FILE, make_cohort

    manifest = Path(data.demo.dir) / MANIFEST_FILE
    if not manifest.exists():
        if not (make_demo or data.demo.get("make_in_any_stage", False)):
            raise FileNotFoundError(
                f"no manifest: data.manifest is not set and the demo cohort's manifest {manifest} does not exist. "
                "Fix: set data.manifest=<your manifest.csv> (python -m radfuse.data.build writes one), or make the "
                "demo cohort first with python -m radfuse.stages.prepare (same paths.out and experiment)")
        print(f"[radfuse] generating the demo cohort ({data.demo.n_patients} patients) in {data.demo.dir}", flush=True)
        make_cohort(Path(data.demo.dir), n_patients=int(data.demo.n_patients), seed=int(data.demo.seed),
                    task=str(data.demo.get("task", "astlof")))
    return manifest


def read_cohort_frame(cfg: DictConfig, make_demo: bool = False) -> tuple[pd.DataFrame, Path]:
    """The manifest as every stage sees it (connected components expanded when asked for), and its path."""
    data = cfg.data
    path = manifest_path(data, make_demo)
    frame = read_manifest(path)
    if data.get("split_components"):
        from radfuse.data.components import expand_components

        frame = expand_components(frame, Path(cfg.paths.out) / "components", int(data.min_component_voxels))
    return frame, path


def load_cohort(cfg: DictConfig, make_demo: bool = False) -> Cohort:
    """Read and validate the manifest (refusing to go on with any problem), then read or make the split.
    `make_demo`: make the demo cohort if it is missing (prepare's job; `manifest_path`)."""
    data = cfg.data
    frame, path = read_cohort_frame(cfg, make_demo)
    classes = [str(c) for c in data.classes]
    clinical = dict(OmegaConf.to_container(data.clinical)) if data.get("clinical") else {}
    ensure_valid(frame, classes=classes, clinical=clinical, n_folds=int(data.split.n_folds),
                 resample_masks=bool(data.resample_masks), manifest_file=str(path),
                 modality=str(data.get("modality", "ct")), margin=data.get("margin"))
    frame = coerce_clinical(frame, clinical)  # 'n/a', 'unknown', blank -> NaN, which the pipeline imputes
    splits = load_or_make_splits(frame, splits_path(cfg.paths.out), seed=int(data.split.seed),
                                 internal_fraction=float(data.split.internal_fraction),
                                 n_folds=int(data.split.n_folds))
    return Cohort(frame, splits, classes, clinical, path)


def crop_config(data: DictConfig) -> CropConfig:
    """The crop settings of a `data` config node (the one mapping, shared with reopened train runs)."""
    return crop_from_settings(data)


def save_run_config(cfg: DictConfig, folder: str | Path, inputs: dict | None = None) -> None:
    """The resolved config and provenance beside a stage's outputs."""
    folder = Path(folder)
    write_text(folder / CONFIG_FILE, OmegaConf.to_yaml(cfg, resolve=True))
    write_provenance(folder, inputs)


def exit_on_input_error(func):
    """Run a stage's main; input errors (bad manifest, stale split, missing weights) end in a clear message."""
    import functools
    import sys

    from radfuse.artifacts import RunIncomplete
    from radfuse.data.manifest import ManifestError
    from radfuse.data.splits import SplitMismatch
    from radfuse.data.validate import ManifestInvalid
    from radfuse.extract.deep import UnknownLayer
    from radfuse.extract.params import RadiomicsConfigError
    from radfuse.run_lock import RunFolderLocked

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except (ManifestError, ManifestInvalid, SplitMismatch, FileNotFoundError, RunFolderLocked,
                RadiomicsConfigError, UnknownLayer, RunIncomplete) as err:
            print(f"[radfuse] error: {err}", file=sys.stderr, flush=True)
            sys.exit(2)

    return wrapper


def log_lightning_once() -> None:
    """Print each Lightning message once under Hydra's logging.

    The `lightning` package gives its logger a console handler of its own and still lets records propagate to the
    root logger, which Hydra has configured (console + the job's log file): every message came out twice. When the
    root has handlers, drop Lightning's console handler and keep the root's.
    """
    if not logging.getLogger().handlers:
        return
    lightning_logger = logging.getLogger("lightning")
    for handler in list(lightning_logger.handlers):
        if type(handler) is logging.StreamHandler:
            lightning_logger.removeHandler(handler)
