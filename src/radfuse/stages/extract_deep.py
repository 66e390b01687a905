"""Deep half of the extract stage: a trained checkpoint or pretrained weights -> deep_<layer>.parquet, and the
fold runs of a cross-fit -> deep_crossfit.parquet (out-of-fold CNN scores, radfuse.extract.crossfit).

The crops are the training crops (the train run's own data config for a checkpoint), served deterministically
by the datamodule's predict loader: every ROI of the manifest, all cohorts, no augmentation, fixed order.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Callable, Iterable

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


def run_deep(cfg: DictConfig, folder: Path, cohort: Cohort | None = None, inputs: dict | None = None) -> Path:
    """Embed every ROI from `extract.deep.layer`; return the table's path. `inputs` gets the file the network came
    from (for provenance.json). Batches already embedded by an earlier (interrupted) run come from the cache."""
    deep = cfg.extract.deep
    cohort = cohort or load_cohort(cfg)
    sources = {"checkpoint": _from_checkpoint, "weights": _from_weights}
    if deep.source not in sources:
        raise ValueError(f"extract.deep.source={deep.source!r}: use checkpoint, weights or null")
    model, crop, origin = sources[deep.source](cfg, len(cohort.classes))
    model = model.to(deep.device)
    network = origin.pop("file", None)
    if inputs is not None and network:
        inputs["deep_checkpoint" if deep.source == "checkpoint" else "deep_weights"] = network
    print(f"[radfuse] extract: deep embeddings ({deep.source}, layer {deep.layer}, tta={deep.tta}) of "
          f"{len(cohort.frame)} ROIs", flush=True)
    key = _network_key(network, origin, kind="embeddings", layer=str(deep.layer), tta=bool(deep.tta), crop=crop,
                       device=str(deep.device), weights=OmegaConf.to_container(deep.weights, resolve=True),
                       classes=list(cohort.classes))
    table = cached_batches(
        lambda batches: extract_embeddings(model, batches, layer=deep.layer, tta=bool(deep.tta), device=deep.device),
        _predict_loader(cfg, cohort, crop), deep_cache(cfg, key))
    path = artifacts.write_parquet(folder / artifacts.deep_table_name(deep.layer), table)
    record_deep_source(folder, path.name, origin)
    return path


# ---------------------------------------------------------------------------------------------- batch cache
def deep_cache(cfg: DictConfig, key: str | None) -> Path | None:
    """`<paths.cache>/deep/<network key>/`: one parquet per batch of ROIs; None when the network has no file."""
    return None if key is None else Path(cfg.paths.cache) / "deep" / key


def _network_key(network: str | Path | None, origin: dict, **settings) -> str | None:
    """Hash of what decides a deep table's numbers: the network file's content, its origin and the settings."""
    if not network or not Path(network).is_file():
        return None
    settings["crop"] = dataclasses.asdict(settings["crop"]) if dataclasses.is_dataclass(settings["crop"]) else \
        repr(settings["crop"])
    described = json.dumps({"file": artifacts.file_sha256(network), "origin": origin, **settings}, sort_keys=True,
                           default=str)
    return hashlib.sha256(described.encode()).hexdigest()[:32]


def _batch_key(batch) -> str:
    """Hash of a batch's case ids and crop tensors: a changed image never gets the old batch's numbers."""
    digest = hashlib.sha256("\n".join(str(c) for c in batch["case_id"]).encode())
    digest.update(np.ascontiguousarray(batch["image"].numpy()).tobytes())
    return digest.hexdigest()[:32]


def cached_batches(compute: Callable[[list], pd.DataFrame], loader: Iterable, cache: Path | None) -> pd.DataFrame:
    """`compute` of every batch of `loader` (one row per ROI, key case_id), each batch's table cached under `cache`
    as soon as it is done: a rerun after an interruption only runs the network on the batches not yet done. A
    damaged cache entry is named, discarded and recomputed."""
    frames = []
    for batch in loader:
        path = cache / f"{_batch_key(batch)}.parquet" if cache is not None else None
        frame = _read_cached(path)
        if frame is None:
            frame = compute([batch])
            if path is not None:
                artifacts.write_parquet(path, frame)
        frames.append(frame)
    if not frames:
        return compute([])  # the library's own message for an empty loader
    table = pd.concat(frames, ignore_index=True)
    duplicated = table[artifacts.KEY_COLUMN][table[artifacts.KEY_COLUMN].duplicated()].unique().tolist()
    if duplicated:
        raise ValueError(f"case ids {duplicated[:5]} appear more than once: case_id must be unique per ROI")
    return table


def _read_cached(path: Path | None) -> pd.DataFrame | None:
    if path is None or not path.is_file():
        return None
    try:
        return pd.read_parquet(path)
    except Exception as err:  # noqa: BLE001 - any unreadable entry is recomputed
        print(f"[radfuse] extract: damaged deep cache entry {path} ({type(err).__name__}: {err}); recomputing it",
              flush=True)
        path.unlink(missing_ok=True)
        return None


def run_crossfit(cfg: DictConfig, cohort: Cohort | None = None, inputs: dict | None = None) -> Path:
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
        artifacts.require_complete(run_dir, "train", files=(checkpoint.name,))
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
        if inputs is not None:
            inputs[f"crossfit_{run}"] = checkpoint
        crop = crop_config(data)
        key = _network_key(checkpoint, {"classes": trained_on}, kind="scores", tta=bool(deep.tta), crop=crop,
                           device=str(deep.device))
        classifier = classifier.to(deep.device)
        scores[int(fold)] = cached_batches(
            lambda batches: class_scores(classifier, batches, tta=bool(deep.tta), device=deep.device),
            _predict_loader(cfg, cohort, crop), deep_cache(cfg, key))
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
        validated_on = json.loads(metrics.read_text(encoding="utf-8")).get("validated_on")
    return {"train_run": run, "checkpoint": checkpoint.name, "epoch": checkpoint_epoch(checkpoint),
            "validated_on": validated_on, "chosen_on_validation": chosen}


def record_deep_source(folder: Path, table: str, source: dict) -> None:
    """Add one deep table's origin to <extract run>/deep_sources.json (fuse reads it to say which cohort is clean)."""
    path = folder / artifacts.DEEP_SOURCES_FILE
    known = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
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
    if not deep.checkpoint or artifacts.is_run_folder(path.parent, "train"):
        artifacts.require_complete(path.parent, "train", files=(path.name,))
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
                                                          chosen), "file": path}
    return (InputNormalized(classifier.backbone, classifier.input_mean, classifier.input_std), crop_config(data),
            origin)


def _from_weights(cfg: DictConfig, num_classes: int) -> tuple[InputNormalized, CropConfig, dict]:
    from radfuse.models import create_backbone

    weights = cfg.extract.deep.weights
    crop = crop_config(cfg.data)
    backbone = create_backbone(weights.arch, crop.spatial_dims, crop.in_channels, num_classes,
                               weights=weights.file, weights_format=weights.format, strict=bool(weights.strict))
    shape = (1, -1) + (1,) * crop.spatial_dims
    mean = None if weights.input_mean is None else torch.tensor(list(weights.input_mean)).view(shape)
    std = None if weights.input_std is None else torch.tensor(list(weights.input_std)).view(shape)
    return InputNormalized(backbone, mean, std), crop, {
        "source": "weights", "arch": str(weights.arch), "chosen_on_validation": None, "file": weights.file}
