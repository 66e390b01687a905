"""Deep half of the extract stage: a trained checkpoint or pretrained weights -> deep_<layer>.parquet, and the
fold runs of a cross-fit -> deep_crossfit.parquet (out-of-fold CNN scores, radfuse.extract.crossfit).

The crops are the training crops (the train run's own data config for a checkpoint), served deterministically
by the datamodule's predict loader: every ROI of the manifest, all cohorts, no augmentation, fixed order.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig, ListConfig, OmegaConf

from radfuse import artifacts
from radfuse.data import manifest as mf
from radfuse.data.crops import CropConfig
from radfuse.data.datamodule import RadfuseDataModule
from radfuse.extract.crossfit import class_scores, cross_fit
from radfuse.extract.deep import InputNormalized, extract_embeddings
from radfuse.models.checkpoints import checkpoint_epoch, validation_choice
from radfuse.stages.common import Cohort, crop_config, load_cohort


def run_deep(cfg: DictConfig, folder: Path, cohort: Cohort | None = None) -> Path:
    """Embed every ROI from `extract.deep.layer`; return the table's path."""
    deep = cfg.extract.deep
    cohort = cohort or load_cohort(cfg)
    sources = {"checkpoint": _from_checkpoint, "weights": _from_weights}
    if deep.source not in sources:
        raise ValueError(f"extract.deep.source={deep.source!r}: use checkpoint, weights or null")
    model, crop, origin = sources[deep.source](cfg, len(cohort.classes))
    model = model.to(deep.device)
    print(f"[radfuse] extract: deep embeddings ({deep.source}, layer {deep.layer}, tta={deep.tta}) of "
          f"{len(cohort.frame)} ROIs", flush=True)
    table = extract_embeddings(model, _predict_loader(cfg, cohort, crop), layer=deep.layer, tta=bool(deep.tta),
                               device=deep.device)
    path = artifacts.write_parquet(folder / artifacts.deep_table_name(deep.layer), table)
    record_deep_source(folder, path.name, origin)
    return path


def run_crossfit(cfg: DictConfig, cohort: Cohort | None = None) -> Path:
    """Out-of-fold scores of the fold runs named by `extract.deep.crossfit.train_runs`; return the table's path.

    The folds are those the runs were trained on: `<train_out>/splits.json`, where `train_out` is this run's
    `paths.out` unless `extract.deep.crossfit.train_out` names a finished study (scoring a new cohort with its fold
    CNNs: no case of this manifest is a training case there, so every case gets the mean of the fold CNNs).
    """
    from radfuse.models.module import load_classifier

    deep, spec = cfg.extract.deep, cfg.extract.deep.crossfit
    cohort = cohort or load_cohort(cfg)
    train_out = Path(spec.get("train_out") or cfg.paths.out)
    same_study = train_out.resolve() == Path(cfg.paths.out).resolve()
    splits = cohort.splits if same_study else _study_splits(train_out)
    patients = cohort.frame[mf.PATIENT_ID].astype(str)
    # another study's fold CNNs never saw a case of this manifest, whatever its patient id
    folds = patients.map(splits.folds) if same_study else pd.Series(np.nan, index=patients.index)
    fold_of_case = pd.Series(folds.to_numpy(dtype=float), index=cohort.frame[mf.CASE_ID].astype(str))
    scores, sources = {}, {}
    for run in crossfit_runs(spec.train_runs, splits.n_folds):
        run_dir = artifacts.train_dir(train_out, run)
        checkpoint, config = run_dir / str(spec.checkpoint), run_dir / artifacts.CONFIG_FILE
        if not checkpoint.is_file() or not config.is_file():
            raise FileNotFoundError(
                f"cross-fit train run {run!r}: {checkpoint} or its config.yaml does not exist: train the fold runs "
                f"first (python train.py -m data.fold=0,...,{splits.n_folds - 1} 'run=<name>${{data.fold}}')")
        run_cfg = OmegaConf.load(config)
        data = run_cfg.data
        fold = data.get("fold")
        if fold is None:
            raise ValueError(f"train run {run!r} was trained on the whole train cohort (data.fold=null), so it saw "
                             "every training label: cross-fitting needs one run per fold, trained with data.fold=k")
        if int(fold) in scores:
            raise ValueError(f"two cross-fit train runs were trained with data.fold={fold}; name one run per fold")
        chosen = validation_choice(checkpoint, early_stopping=_early_stopped(run_cfg))
        if chosen is not None:
            raise ValueError(
                f"cross-fit train run {run!r}: {chosen}. Fold {fold}'s labels would then have chosen the CNN that "
                f"scores fold {fold}'s cases, and their out-of-fold scores would be optimistic. Score with the true "
                "last epoch (extract.deep.crossfit.checkpoint=last.ckpt) of fold runs trained to the end, without "
                "callbacks=early_stopping")
        classifier = load_classifier(str(checkpoint))
        trained_on = [str(c) for c in classifier.hparams.get("classes") or cohort.classes]
        if trained_on != list(cohort.classes):
            raise ValueError(f"train run {run!r} was trained on classes {trained_on}, data.classes is "
                             f"{list(cohort.classes)}: cross-fit runs must use the manifest's classes in order")
        print(f"[radfuse] extract: out-of-fold scores, fold {fold} from train run {run!r} ({spec.checkpoint})",
              flush=True)
        sources[run] = checkpoint_source(run, checkpoint, None)
        scores[int(fold)] = class_scores(classifier.to(deep.device), _predict_loader(cfg, cohort, crop_config(data)),
                                         tta=bool(deep.tta), device=deep.device)
    table = cross_fit(scores, fold_of_case, n_folds=splits.n_folds)
    folder = artifacts.extract_dir(cfg.paths.out, cfg.run)
    path = artifacts.write_parquet(folder / artifacts.CROSSFIT_TABLE, table)
    record_deep_source(folder, artifacts.CROSSFIT_TABLE, {"source": "crossfit", "train_out_is_this_study": same_study,
                                                           "runs": sources})
    return path


def crossfit_runs(train_runs: str | list | ListConfig, n_folds: int) -> list[str]:
    """`train_runs` as a list of run names; or a prefix, giving <prefix>0 ... <prefix><K-1>; or a pattern with
    `{fold}` (quote it on the command line)."""
    if isinstance(train_runs, str):
        return [train_runs.format(fold=k) if "{fold}" in train_runs else f"{train_runs}{k}" for k in range(n_folds)]
    return [str(r) for r in train_runs]


def _study_splits(train_out: Path):
    from radfuse.data.splits import read_splits

    path = artifacts.splits_path(train_out)
    if not path.is_file():
        raise FileNotFoundError(f"extract.deep.crossfit.train_out={train_out}: {path} does not exist; point it at "
                                "the paths.out of the study whose fold CNNs you want (it holds splits.json and train/)")
    return read_splits(path)


def _predict_loader(cfg: DictConfig, cohort: Cohort, crop: CropConfig):
    datamodule = RadfuseDataModule(cohort.frame, cohort.splits, crop, cfg.paths.cache, cohort.classes,
                                   batch_size=int(cfg.extract.deep.batch_size),
                                   num_workers=int(cfg.data.num_workers), augment=False)
    return datamodule.predict_dataloader()


def checkpoint_source(run: str | None, checkpoint: Path, chosen: str | None) -> dict:
    """What deep_sources.json says of one checkpoint: run, file, epoch, and why validation labels chose it."""
    validated_on = None
    metrics = checkpoint.parent / artifacts.METRICS_FILE
    if metrics.is_file():
        validated_on = json.loads(metrics.read_text()).get("validated_on")
    return {"train_run": run, "checkpoint": checkpoint.name, "epoch": checkpoint_epoch(checkpoint),
            "validated_on": validated_on, "chosen_on_validation": chosen}


def record_deep_source(folder: Path, table: str, source: dict) -> None:
    """Add one deep table's origin to <extract run>/deep_sources.json (fuse reads it to say which cohort is clean)."""
    path = folder / artifacts.DEEP_SOURCES_FILE
    known = json.loads(path.read_text()) if path.is_file() else {}
    known[table] = source
    artifacts.write_json(path, known)


def _early_stopped(run_cfg: DictConfig) -> bool:
    return OmegaConf.select(run_cfg, "callbacks.early_stopping") is not None


def _from_checkpoint(cfg: DictConfig, _num_classes: int) -> tuple[InputNormalized, CropConfig, dict]:
    from radfuse.models.module import load_classifier

    deep = cfg.extract.deep
    path = Path(deep.checkpoint) if deep.checkpoint else \
        artifacts.train_dir(cfg.paths.out, deep.train_run) / str(deep.checkpoint_file)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist: train first (python train.py), point "
                                "extract.deep.checkpoint at a .ckpt, use extract.deep.source=weights, or "
                                "extract.deep.source=null for radiomics only")
    train_config = path.parent / artifacts.CONFIG_FILE
    # the crops the network was trained on, not whatever the extract config says
    run_cfg = OmegaConf.load(train_config) if train_config.is_file() else None
    data = run_cfg.data if run_cfg is not None else cfg.data
    chosen = validation_choice(path, early_stopping=run_cfg is not None and _early_stopped(run_cfg))
    if chosen is not None:
        print(f"[radfuse] caution: the embeddings' CNN checkpoint was chosen with validation labels ({chosen}); "
              "the cohort it validated on is not a clean hold-out for models using these embeddings", flush=True)
    classifier = load_classifier(str(path))
    origin = {"source": "checkpoint", **checkpoint_source(deep.train_run if not deep.checkpoint else None, path,
                                                          chosen)}
    return (InputNormalized(classifier.backbone, classifier.input_mean, classifier.input_std), crop_config(data),
            origin)


def _from_weights(cfg: DictConfig, num_classes: int) -> tuple[InputNormalized, CropConfig]:
    from radfuse.models import create_backbone

    weights = cfg.extract.deep.weights
    crop = crop_config(cfg.data)
    backbone = create_backbone(weights.arch, crop.spatial_dims, crop.in_channels, num_classes,
                               weights=weights.file, weights_format=weights.format, strict=bool(weights.strict))
    shape = (1, -1) + (1,) * crop.spatial_dims
    mean = None if weights.input_mean is None else torch.tensor(list(weights.input_mean)).view(shape)
    std = None if weights.input_std is None else torch.tensor(list(weights.input_std)).view(shape)
    return InputNormalized(backbone, mean, std), crop, {"source": "weights", "arch": str(weights.arch),
                                                        "chosen_on_validation": None}
