"""The fuse report's Grad-CAM panels, from the CNN that scored each case.

The deep block of a cross-fitted run (deep_crossfit.parquet) holds, for a training case of fold k, the scores of
the fold CNN trained without fold k, and for every other case the mean of the K fold CNNs (radfuse.extract
.crossfit). The panels follow the same rule: fold CNN k's map for a training case of fold k, the mean of the fold
CNNs' maps otherwise. Which runs, checkpoint and folds: the extract run's config.yaml and deep_sources.json, and each
fold run's own config.yaml (its data.fold and crop settings). Only when no used block is cross-fitted do the panels
come from the single CNN `report.train_run` (best.ckpt), and their captions say so.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from radfuse import artifacts
from radfuse.artifacts import BEST_CHECKPOINT, CROSSFIT_TABLE, DEEP_SOURCES_FILE
from radfuse.data.manifest import CASE_ID, COHORT, COHORTS, LABEL, PATIENT_ID
from radfuse.data.validate import label_str
from radfuse.stages.common import Cohort

SINGLE_CHECKPOINT = BEST_CHECKPOINT


@dataclass
class FoldCNNs:
    """The fold runs behind one cross-fitted block: fold k -> run folder, the checkpoint that scored, and the
    folds of the study they were trained on (None: another study's CNNs, which saw no case of this manifest)."""

    block: str
    runs: dict[int, Path]
    checkpoint: str
    folds: dict[str, int] | None


def gradcam_panels(cfg: DictConfig, cohort: Cohort, scored: set[str] | None = None) -> list:
    """`report.gradcam_per_class` cases of each class (spread over the cohorts, study order; only cases in
    `scored`, the predictions' case ids, when given), each mapped by the CNN(s) that scored it. Problems are
    printed and give no panel: the report says the section is unavailable, the run goes on."""
    frame = cohort.frame.assign(**{COHORT: cohort.splits.cohort_of(cohort.frame)})
    if scored is not None:
        frame = frame[frame[CASE_ID].astype(str).isin(scored)]
    cases = gradcam_cases(frame, cohort.classes, int(cfg.report.gradcam_per_class))
    if not cases:
        return []
    try:
        source = crossfit_source(cfg)
        if source is not None:
            return crossfit_panels(cfg, cohort, source, cases)
        return single_cnn_panels(cfg, cohort, cases)
    except (OSError, KeyError, RuntimeError, ValueError) as err:
        print(f"[radfuse] Grad-CAM overlays skipped: {err}", flush=True)
        return []


def gradcam_cases(frame: pd.DataFrame, classes: list[str], per_class: int) -> list[str]:
    """Up to `per_class` case ids of each class, taken in turn from each cohort (train, internal, external,
    prospective), so the panels show both rules: a training case's fold CNN and a held-out case's fold mean."""
    labels = frame[LABEL].map(label_str)
    order = [c for c in COHORTS if c in set(frame[COHORT])] + sorted(set(frame[COHORT]) - set(COHORTS))
    chosen = []
    for cls in classes:
        queues = [list(frame.loc[(labels == cls) & (frame[COHORT] == c), CASE_ID].astype(str)) for c in order]
        picked = []
        while len(picked) < per_class and any(queues):
            for queue in queues:
                if queue and len(picked) < per_class:
                    picked.append(queue.pop(0))
        chosen += picked
    return chosen


def _used_blocks(cfg: DictConfig) -> list[str]:
    return list(dict.fromkeys(b for blocks in cfg.feature_sets.values() for b in blocks))


def crossfit_source(cfg: DictConfig) -> FoldCNNs | None:
    """The fold runs of the first used block whose table is deep_crossfit.parquet; None when no block is."""
    for block in _used_blocks(cfg):
        table = Path(cfg.tables[block]) if block != "clinical" and cfg.tables.get(block) else None
        if table is None or table.name != CROSSFIT_TABLE:
            continue
        config = table.parent / artifacts.CONFIG_FILE
        extract_cfg = OmegaConf.load(config) if config.is_file() else OmegaConf.create({})
        spec = OmegaConf.select(extract_cfg, "extract.deep.crossfit")
        if spec is None or not spec.get("train_runs"):
            raise FileNotFoundError(f"block {block!r} reads {table}, but {config} names no cross-fit train runs "
                                    "(extract.deep.crossfit.train_runs): rerun that extract, or set "
                                    "report.train_run=null to leave out the Grad-CAM panels")
        extract_out = Path(extract_cfg.paths.out)
        train_out = Path(spec.get("train_out") or extract_out)
        record = _crossfit_record(table)
        same_study = record.get("train_out_is_this_study", train_out.resolve() == extract_out.resolve())
        splits = _read_splits(train_out)
        from radfuse.stages.extract_deep import crossfit_runs

        names = list(record.get("runs") or crossfit_runs(spec.train_runs, splits.n_folds))
        return FoldCNNs(block, _fold_runs(train_out, names, str(spec.checkpoint)), str(spec.checkpoint),
                        splits.folds if same_study else None)
    return None


def _crossfit_record(table: Path) -> dict:
    """deep_sources.json's entry for the table (its fold runs; whether they are this study's), {} when absent."""
    path = table.parent / DEEP_SOURCES_FILE
    known = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    return known.get(table.name) or {}


def _read_splits(train_out: Path):
    from radfuse.data.splits import read_splits

    return read_splits(artifacts.splits_path(train_out))


def _fold_runs(train_out: Path, names: list[str], checkpoint: str) -> dict[int, Path]:
    """fold k -> the finished run trained with data.fold=k (its config.yaml says which)."""
    from radfuse.data.train_run import reopen_train_run

    runs = {}
    for name in names:
        folder = artifacts.train_dir(train_out, name)
        artifacts.require_complete(folder, "train", files=(checkpoint,))
        fold = reopen_train_run(folder).data.get("fold")
        if fold is None:
            raise ValueError(f"cross-fit train run {folder} has no data.fold in its config.yaml")
        runs[int(fold)] = folder
    return runs


def crossfit_panels(cfg: DictConfig, cohort: Cohort, source: FoldCNNs, cases: list[str]) -> list:
    from radfuse.data.datamodule import RadfuseDataModule
    from radfuse.data.train_run import reopen_train_run
    from radfuse.models.cam import crossfit_cams
    from radfuse.models.module import load_classifier

    crops = {k: reopen_train_run(folder).crop for k, folder in source.runs.items()}
    if len({repr(c) for c in crops.values()}) > 1:
        raise ValueError(f"the fold runs {sorted(map(str, source.runs.values()))} crop differently, so their "
                         "Grad-CAMs cannot be averaged over one crop: retrain them with one data config")
    models = {k: load_classifier(str(folder / source.checkpoint)).eval() for k, folder in source.runs.items()}
    frame = cohort.frame[cohort.frame[CASE_ID].astype(str).isin(cases)]
    patients = frame[PATIENT_ID].astype(str)
    folds = patients.map(source.folds) if source.folds is not None else pd.Series(np.nan, index=patients.index)
    fold_of_case = dict(zip(frame[CASE_ID].astype(str), folds.to_numpy(dtype=float)))
    loader = RadfuseDataModule(frame, cohort.splits, next(iter(crops.values())), cfg.paths.cache, cohort.classes,
                               batch_size=max(1, len(frame)), augment=False).predict_dataloader()
    names = {k: f"train run {folder.name}, {source.checkpoint}" for k, folder in source.runs.items()}
    panels = crossfit_cams(models, loader, fold_of_case, names, cohort.classes, layer=_layer(cfg), block=source.block)
    return _in_order(panels, cases)


def single_cnn_panels(cfg: DictConfig, cohort: Cohort, cases: list[str]) -> list:
    """The fallback when no block is cross-fitted: the single CNN `report.train_run` (none linked: no panels)."""
    run = cfg.report.get("train_run")
    folder = artifacts.train_dir(cfg.paths.out, str(run)) if run else None
    if folder is None or not (folder / SINGLE_CHECKPOINT).is_file():
        return []
    from radfuse.data.train_run import reopen_train_run
    from radfuse.models.cam import single_cams
    from radfuse.models.module import load_classifier

    artifacts.require_complete(folder, "train", files=(SINGLE_CHECKPOINT,))
    model = load_classifier(str(folder / SINGLE_CHECKPOINT)).eval()
    deep = [b for b in _used_blocks(cfg) if b != "clinical" and Path(str(cfg.tables.get(b, ""))).name
            .startswith("deep_")]
    name = (f"the single CNN of train run {run!r} ({SINGLE_CHECKPOINT}); no cross-fitted fold CNNs exist for "
            "this run, so this need not be the network that scored the case")
    loader = reopen_train_run(folder).datamodule(cases).predict_dataloader()
    panels = single_cams(model, loader, name, cohort.classes, layer=_layer(cfg), block=deep[0] if deep else None)
    return _in_order(panels, cases)


def _layer(cfg: DictConfig) -> str | None:
    layer = cfg.report.get("gradcam_layer")
    return str(layer) if layer else None


def _in_order(panels: list, cases: list[str]) -> list:
    rank = {c: i for i, c in enumerate(cases)}
    return sorted(panels, key=lambda p: rank.get(p.case_id, len(rank)))
