"""Fuse stage: feature tables + manifest -> grid-searched fusion pipelines -> predictions, model, metrics."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, NamedTuple

import joblib
import pandas as pd
from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf

from radfuse import artifacts
from radfuse.artifacts import (BEST_CHECKPOINT, CROSSFIT_TABLE, CV_RESULTS_FILE, DEEP_SOURCES_FILE, METRICS_FILE,
                               MODEL_FILE, PREDICTIONS_TABLE, atomic_path, fuse_dir, write_csv, write_json,
                               write_parquet)
from radfuse.data.manifest import COHORT
from radfuse.fuse.combat import ComBat
from radfuse.fuse.design import META_PREFIX, Design, block_table, design_frame
from radfuse.fuse.experiment import SELECTION_RULE, FusionResult, FusionSetup, report_inputs, run_fusion
from radfuse.fuse.search import ClassifierSpec
from radfuse.run_lock import run_lock
from radfuse.stages.common import Cohort, load_cohort, save_run_config
from radfuse.stages.fuse_gradcam import gradcam_panels
from radfuse.stages.preflight import ensure_ready, fuse_problems


def run(cfg: DictConfig) -> FusionResult:
    """Fit, evaluate and write `<out>/fuse/<run>/`; one run owns that folder at a time (radfuse.run_lock)."""
    folder = fuse_dir(cfg.paths.out, cfg.run)
    with run_lock(folder):
        artifacts.start_run(folder)  # before anything is written: a killed (re)run is never "complete"
        result = _run(cfg)
        artifacts.mark_complete(folder, "fuse")
        return result


def embed_icc_tables(blocks: dict[str, Any]) -> dict[str, Any]:
    """Give every ICC filter its table(s) as data rather than as paths: the fitted model (model.joblib) then holds
    no path of this machine, and no CV fold re-reads the parquet file. A missing file stays a path, so the filter
    still stops with its own message."""
    import pandas as pd

    from radfuse.fuse.filters import ICCFilter

    def load(table):
        return pd.read_parquet(table) if isinstance(table, (str, Path)) and Path(table).is_file() else table

    for steps in blocks.values():
        for step in (steps or {}).values():
            if isinstance(step, ICCFilter) and step.icc_table is not None:
                single = isinstance(step.icc_table, (str, Path, pd.DataFrame))
                step.icc_table = load(step.icc_table) if single else [load(t) for t in step.icc_table]
    return blocks


def _run(cfg: DictConfig) -> FusionResult:
    start = time.perf_counter()
    cohort = load_cohort(cfg)
    # inner LASSO folds, sites for ComBat, second outlines for ICC: refused here, before any table is read or fitted
    ensure_ready(fuse_problems(cfg, cohort.frame, cohort.splits, cohort.classes, str(cohort.manifest_path)),
                 str(cohort.manifest_path))
    blocks = embed_icc_tables({name: instantiate(steps) for name, steps in cfg.blocks.items() if _used(cfg, name)})
    design = build_design(cfg, cohort, blocks)
    if cfg.get("icc_table") and Path(cfg.icc_table).is_file():
        check_extract_table(Path(cfg.icc_table))
    constant = constant_training_features(design, blocks)
    setup = FusionSetup(
        classes=cohort.classes, blocks=blocks, feature_sets=OmegaConf.to_container(cfg.feature_sets),
        final=instantiate(cfg.final), classifiers=classifier_specs(cfg), n_splits=int(cfg.cv.n_splits),
        seed=int(cfg.cv.seed), n_jobs=int(cfg.n_jobs), nested_splits=cfg.cv.nested_splits, cache=bool(cfg.cache),
        fold_of_patient=cohort.splits.folds if cfg.cv.folds == "splits" else None)
    result = run_fusion(design, setup)
    result.model["categorical_clinical"] = [c for c, k in cohort.clinical.items() if k == "categorical"]
    remarks = deep_block_remarks(cfg, blocks)
    result.metrics["cautions"] = remarks.cautions
    result.metrics["constant_features"] = constant
    for caution in result.metrics["cautions"]:
        print(f"[radfuse] caution: {caution}", flush=True)
    out = write_outputs(cfg, result)
    save_run_config(cfg, out, inputs=fuse_inputs(cfg, cohort))
    report = write_report(cfg, cohort, design, result, out, notes=remarks.notes)
    print(f"[radfuse] model selection: {SELECTION_RULE}", flush=True)
    for fs, m in result.metrics["feature_sets"].items():
        print(f"[radfuse] {winner_line(fs, m)}", flush=True)
    print(f"[radfuse] fuse outputs in {out}; took {time.perf_counter() - start:.1f} s", flush=True)
    if report is not None:
        print(f"[radfuse] report: {report.resolve()}", flush=True)
    return result


def fuse_inputs(cfg: DictConfig, cohort: Cohort) -> dict[str, Any]:
    """What provenance.json hashes: manifest, split, every feature table and the ICC table; the provenance.json of
    the extract run behind each table (which hashes the checkpoint or weights file the deep tables came from); and
    the checkpoint the report's Grad-CAM overlays read."""
    inputs = {"manifest": cohort.manifest_path, "splits": artifacts.splits_path(cfg.paths.out), **dict(cfg.tables)}
    for key in ("icc_table", "icc_intra_table"):
        if cfg.get(key):
            inputs[key] = cfg[key]
    for block, table in dict(cfg.tables).items():
        upstream = Path(table).parent / artifacts.PROVENANCE_FILE
        if artifacts.is_run_folder(upstream.parent, "extract") and upstream.is_file():
            inputs[f"{block}_extract_provenance"] = upstream
    if cfg.report.enabled and cfg.report.get("train_run"):
        inputs["gradcam_checkpoint"] = Path(cfg.paths.out) / "train" / str(cfg.report.train_run) / BEST_CHECKPOINT
    return inputs


def check_extract_table(path: Path) -> None:
    """A table inside an extract run folder is used only when that run finished and the table is the one it
    wrote (its COMPLETE.json); tables of the user's own, outside any run folder, are taken as they are."""
    if artifacts.is_run_folder(path.parent, "extract"):
        artifacts.require_complete(path.parent, "extract", files=(path.name,))


def shareable_config(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config for report.html and metrics.json, without absolute paths: a path under paths.out
    becomes relative to it (`extract/default/radiomics.parquet`), any other absolute path keeps its file name only
    (`<outside paths.out>/manifest.csv`)."""
    out = Path(cfg.paths.out).resolve()

    def clean(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, list):
            return [clean(v) for v in value]
        if isinstance(value, str) and Path(value).is_absolute():
            path = Path(value).resolve()
            if path == out or out in path.parents:
                return path.relative_to(out).as_posix()
            return f"<outside paths.out>/{path.name}"
        return value

    return clean(OmegaConf.to_container(cfg, resolve=True))


def constant_training_features(design: Design, blocks: dict[str, Any]) -> dict[str, list[str]]:
    """Feature columns of each image block that are constant across the training cohort, said out loud: they carry
    no information (texture of a one-grey-level ROI, a filter that failed quietly). The pipeline's ConstantFilter
    drops them inside every fold; this is the whole training cohort's view, for the console and metrics.json."""
    from radfuse.fuse.filters import constant_columns

    train = design.X[(design.cohorts == "train").to_numpy()]
    found = {}
    for block in blocks:
        columns = [c for c in train.columns if c.startswith(f"{block}__")]
        if block == "clinical" or not columns:
            continue
        flags = constant_columns(train[columns].to_numpy(dtype=float))
        found[block] = [c for c, flag in zip(columns, flags) if flag]
        if found[block]:
            print(f"[radfuse] {block}: {len(found[block])} of {len(columns)} features are constant across the "
                  f"{len(train)} training ROIs and carry no information (dropped before selection), e.g. "
                  f"{found[block][:3]}", flush=True)
    return found


def winner_line(feature_set: str, entry: dict) -> str:
    """`fused: winner lr, mean CV-fold macro AUC 0.843 (95% CI 0.801-0.885); internal 0.773, external 0.648`."""
    best = entry["selection"]["ranking"][0]
    low, high = best["cv_ci95"]
    cohorts = entry["classifiers"][entry["winner"]]["cohort_macro_auc"]
    held_out = ", ".join(f"{c} {'n/a' if cohorts.get(c) is None else f'{cohorts[c]:.3f}'}"
                         for c in ("internal", "external", "prospective") if c in cohorts)
    return (f"{feature_set}: winner {entry['winner']}, mean CV-fold macro AUC {best['cv_macro_auc']:.3f} "
            f"(95% CI {low:.3f}-{high:.3f})" + (f"; {held_out}" if held_out else ""))


def write_report(cfg: DictConfig, cohort: Cohort, design: Design, result: FusionResult, out: Path,
                 notes: list[str] = ()) -> Path | None:
    """The evaluation and report.html of this run (radfuse.evaluate), with Grad-CAM panels of the CNN(s) that
    scored each shown case (radfuse.stages.fuse_gradcam)."""
    if not cfg.report.enabled:
        return None
    from radfuse.evaluate.report import build_report

    print("[radfuse] evaluating and writing the report", flush=True)
    extras = {**report_inputs(result, design), "config": shareable_config(cfg),
              "show_case_ids": bool(cfg.report.get("show_case_ids", False)),
              "cautions": result.metrics.get("cautions", []), "notes": list(notes),
              "n_resamples": int(cfg.report.n_resamples), "seed": int(cfg.cv.seed),
              "gradcam": gradcam_panels(cfg, cohort, set(result.predictions["case_id"].astype(str)))}
    frame = cohort.frame.assign(**{COHORT: cohort.splits.cohort_of(cohort.frame)})
    return build_report(out, result.predictions, classes=cohort.classes, manifest=frame,
                        clinical_columns=list(cohort.clinical), extras=extras)


class DeepRemarks(NamedTuple):
    notes: list[str]      # where each cross-fitted deep block came from (report overview)
    cautions: list[str]   # blocks whose training-cohort CV is optimistic (printed, metrics.json, report)


def deep_block_remarks(cfg: DictConfig, blocks: dict[str, Any]) -> DeepRemarks:
    """What the extract run behind each used deep table says about the honesty of the training-cohort CV.

    Embeddings of a CNN fine-tuned on the training cohort carry its labels into that CV: the CNN is a fitted step
    that cannot sit inside the scikit-learn folds, so out-of-fold AUCs of feature sets with such a block are
    optimistic (the held-out cohorts stay honest). Cross-fitted scores do not: each training case is scored by the
    fold CNN that never saw it.
    """
    remarks = DeepRemarks([], [])
    for name in blocks:
        table = Path(cfg.tables[name]) if name != "clinical" and cfg.tables.get(name) else None
        config = table.parent / artifacts.CONFIG_FILE if table else None
        if config is None or not config.is_file() or not table.name.startswith("deep_"):
            continue
        deep = OmegaConf.select(OmegaConf.load(config), "extract.deep")
        if deep is None:
            continue
        if table.name == CROSSFIT_TABLE:
            spec = deep.get("crossfit") or {}
            runs = spec.get("train_runs")
            runs = OmegaConf.to_container(runs) if isinstance(runs, ListConfig) else runs
            remarks.notes.append(
                f"Block '{name}' holds cross-fitted CNN scores (train runs {runs}, {spec.get('checkpoint')}): each "
                "training case is scored by the fold CNN that never saw it, every other case by the mean of "
                "the fold CNNs, so the training-cohort CV of feature sets using it is honest.")
        elif deep.get("source") == "checkpoint" and table.suffix == ".parquet":
            remarks.cautions.append(_embeddings_caution(name, deep.get("train_run"), _deep_source(table)))
    return remarks


def _deep_source(table: Path) -> dict | None:
    """The extract run's record of where a deep table came from (deep_sources.json), None for older runs."""
    path = table.parent / DEEP_SOURCES_FILE
    return json.loads(path.read_text(encoding="utf-8")).get(table.name) if path.is_file() else None


def _embeddings_caution(block: str, train_run: str | None, source: dict | None) -> str:
    """Embeddings of one fine-tuned CNN: the training-cohort CV is optimistic, and the validation cohort is no clean
    hold-out either when its labels chose the CNN's checkpoint (best epoch, early stopping)."""
    text = (f"block '{block}' holds embeddings of a CNN fine-tuned on the training cohort (train run '{train_run}'): "
            "out-of-fold AUCs on the training cohort of every feature set using it are optimistic, and so is model "
            "selection by them. Cross-fit the CNN instead (deep_features=crossfit, docs/fuse.md), or use embeddings "
            "of pretrained weights (extract.deep.source=weights). ")
    if source is None:
        return text + ("Which checkpoint the embeddings came from is not recorded (an extract run older than "
                       "deep_sources.json): if it was best.ckpt, the internal cohort chose it and is no clean "
                       "hold-out; judge those models on the external and prospective cohorts only.")
    chosen = source.get("chosen_on_validation")
    if chosen:
        cohort = source.get("validated_on") or "validation cohort"
        return text + (f"The {cohort} chose the CNN's checkpoint ({chosen}), so it is no clean hold-out for these "
                       "models either: judge them on the external and prospective cohorts only.")
    return text + (f"The embeddings come from {source.get('checkpoint')} (epoch {source.get('epoch')}, the run's "
                   "last, chosen by no label): judge those models on the internal, external and prospective "
                   "cohorts.")


def _used(cfg: DictConfig, block: str) -> bool:
    return any(block in blocks for blocks in cfg.feature_sets.values())


def build_design(cfg: DictConfig, cohort: Cohort, blocks: dict[str, Any]) -> Design:
    """Read the configured tables of the used blocks and join them with the manifest."""
    tables = {}
    for name in blocks:
        if name == "clinical":
            continue
        if name not in cfg.tables:
            raise ValueError(f"block {name!r} has no feature table: add tables.{name}=<path to a parquet table>")
        path = Path(cfg.tables[name])
        if not path.is_file():
            hint = (" The cross-fitted scores need one train run per CV fold (python train.py -m data.fold=0,1,2,3,4 "
                    "'run=cv${data.fold}') and extract.deep.crossfit.train_runs=cv; or use the single-CNN embeddings "
                    "of the papers, with their optimistic CV: deep_features=embeddings."
                    if path.name == CROSSFIT_TABLE else "") + _deep_tables_hint(path)
            raise FileNotFoundError(f"feature table {path} (block {name!r}) does not exist: run extract first, "
                                    f"or point tables.{name} at the right file.{hint}")
        tables[name] = path
    for name, path in tables.items():  # every missing table named first, then the unfinished runs
        check_extract_table(path)
        tables[name] = block_table(pd.read_parquet(path), name, path)
    covariates = sorted({c.removeprefix(META_PREFIX) for steps in blocks.values() for step in steps.values()
                         if isinstance(step, ComBat) for c in step.covariates})
    clinical = list(cohort.clinical) if "clinical" in blocks else []
    if "clinical" in blocks and not clinical:
        raise ValueError("a feature set uses the clinical block but data.clinical declares no column: declare them "
                         "(data.clinical.age=numeric ...) or drop that feature set (~feature_sets.fused+clinical)")
    categorical = [c for c, kind in cohort.clinical.items() if kind == "categorical"]
    frame = cohort.frame.assign(**{COHORT: cohort.splits.cohort_of(cohort.frame)})
    return design_frame(frame, tables, clinical=clinical, covariates=covariates, categorical=categorical)


def _deep_tables_hint(path: Path) -> str:
    """For a missing deep table: the deep tables that do exist in its extract folder, and the key choosing each."""
    if not path.name.startswith("deep_"):
        return ""
    found = artifacts.deep_tables_in(path.parent)
    if not found:
        return f" No deep_*.parquet table is in {path.parent}."
    keys = ["deep_features=crossfit" if name == CROSSFIT_TABLE else
            f"deep_features=embeddings deep_layer={name.removeprefix('deep_').removesuffix('.parquet')}"
            for name in found]
    return (f" Deep tables in {path.parent}: " + ", ".join(f"{n} ({k})" for n, k in zip(found, keys))
            + ". deep_layer must be the extract.deep.layer that wrote the table.")


def classifier_specs(cfg: DictConfig) -> list[ClassifierSpec]:
    names = list(cfg.use_classifiers) if cfg.use_classifiers else list(cfg.classifiers)
    unknown = [n for n in names if n not in cfg.classifiers]
    if unknown:
        raise ValueError(f"use_classifiers names {unknown}, not configured; choose from {list(cfg.classifiers)}")
    return [ClassifierSpec(n, instantiate(cfg.classifiers[n].estimator),
                           OmegaConf.to_container(cfg.classifiers[n].grid)) for n in names]


def write_outputs(cfg: DictConfig, result: FusionResult) -> Path:
    out = fuse_dir(cfg.paths.out, cfg.run)
    write_parquet(out / PREDICTIONS_TABLE, result.predictions)
    write_csv(out / CV_RESULTS_FILE, result.cv_results)
    write_json(out / METRICS_FILE, result.metrics)
    with atomic_path(out / MODEL_FILE) as tmp:
        joblib.dump(result.model, tmp)
    return out
