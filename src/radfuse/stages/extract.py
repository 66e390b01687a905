"""extract stage: manifest -> radiomics.parquet, radiomics_diagnostics.parquet, icc.parquet, failures.csv,
deep_<layer>.parquet and deep_crossfit.parquet under <out>/extract/<run>/, with config.yaml and provenance.json
beside them."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from radfuse import artifacts
from radfuse.data import manifest as mf
from radfuse.extract.params import load_params
from radfuse.extract.radiomics import ExtractOptions
from radfuse.extract.radiomics_run import extract_radiomics, rois_from_manifest
from radfuse.run_lock import run_lock
from radfuse.stages.common import load_cohort, log_lightning_once, read_cohort_frame, save_run_config

log = logging.getLogger(__name__)


class ExtractionFailed(RuntimeError):
    """Raised at the end of a run with failed ROIs when `extract.fail_on_error` is set."""


def run(cfg: DictConfig) -> dict[str, Any]:
    """Run the stage; returns a small summary (counts and the output folder). One run owns the folder at a time."""
    folder = artifacts.extract_dir(cfg.paths.out, cfg.run)
    with run_lock(folder):
        artifacts.start_run(folder)  # before anything is written: a killed (re)run is never "complete"
        return _run(cfg, folder)


def _run(cfg: DictConfig, folder: Path) -> dict[str, Any]:
    frame, path, rejected = _manifest(cfg)
    extractable = frame[~frame[mf.CASE_ID].astype(str).isin({case for case, _, _ in rejected})]
    params = load_params(cfg.extract.params_file or OmegaConf.to_container(cfg.radiomics, resolve=True))
    print(f"[radfuse] extract: radiomics of {len(frame)} ROIs ({len(params['imageType'])} image types) "
          f"-> {folder}", flush=True)
    icc_cases = icc_case_ids(cfg, frame)
    result = extract_radiomics(
        rois_from_manifest(extractable, second_reader_cases=icc_cases), params, Path(cfg.paths.cache) / "radiomics", folder,
        workers=int(cfg.extract.workers), executor=cfg.extract.executor, scheduler=cfg.extract.scheduler,
        options=ExtractOptions(crop=bool(cfg.extract.crop), fast_kernels=bool(cfg.extract.fast_kernels),
                               retry_failed=bool(cfg.extract.retry_failed),
                               resample_masks=bool(cfg.data.get("resample_masks", False)),
                               backend=str(cfg.extract.get("backend", "numpy")),
                               device=str(cfg.extract.get("device", "auto"))),
        progress=bool(cfg.extract.progress), params_name=params_name(cfg),
        refuse_few_grey_levels=bool(cfg.extract.grey_levels.refuse), rejected=rejected)
    if result.grey_levels is not None:
        for line in result.grey_levels.lines():
            print(f"[radfuse] extract: grey levels after discretisation, {line}", flush=True)
    summary = {"folder": str(folder), "rows": result.n_rows, "failures": len(result.failures),
               "computed": result.summary.count("computed"), "cached": result.summary.count("cached")}
    print(f"[radfuse] extract: radiomics {summary}", flush=True)
    inputs = {"manifest": path, **({"radiomics_params": cfg.extract.params_file} if cfg.extract.params_file else {})}
    if icc_cases:
        inputs["splits"] = artifacts.splits_path(cfg.paths.out)
    if cfg.extract.deep.source or cfg.extract.deep.crossfit.train_runs:
        from radfuse.stages.extract_deep import run_crossfit, run_deep  # imports lightning

        log_lightning_once()
        cohort = load_cohort(cfg)
        inputs["splits"] = artifacts.splits_path(cfg.paths.out)
        if cfg.extract.deep.source:
            summary["deep"] = str(run_deep(cfg, folder, cohort, inputs))
        if cfg.extract.deep.crossfit.train_runs:
            summary["crossfit"] = str(run_crossfit(cfg, cohort, inputs))
            train_out = cfg.extract.deep.crossfit.get("train_out")
            if train_out:
                inputs["crossfit_splits"] = artifacts.splits_path(train_out)
    artifacts.write_json(folder / artifacts.RADIOMICS_PARAMS_FILE, params)
    save_run_config(cfg, folder, inputs)
    if cfg.extract.fail_on_error and len(result.failures):
        raise ExtractionFailed(f"{len(result.failures)} ROI(s) failed; reasons in {folder / artifacts.FAILURES_TABLE}; "
                               "the run folder is not marked complete (extract.fail_on_error=true)")
    artifacts.mark_complete(folder, "extract")
    return summary


def params_name(cfg: DictConfig) -> str:
    """How the user named the radiomics params (for messages): the file, or the preset of the `radiomics` group."""
    if cfg.extract.params_file:
        return str(cfg.extract.params_file)
    from hydra.core.hydra_config import HydraConfig

    choice = HydraConfig.get().runtime.choices.get("radiomics") if HydraConfig.initialized() else None
    return f"radiomics={choice} (conf/radiomics/{choice}.yaml)" if choice else "conf/radiomics/<preset>.yaml"


def icc_case_ids(cfg: DictConfig, frame: pd.DataFrame) -> set[str]:
    """The cases whose second masks (`mask2`: another reader; `mask_repeat`: the same reader again) enter the ICC:
    training-cohort cases only (the ICC filter is a choice of features, and it must not see a held-out case),
    optionally a seeded sample of `extract.icc.patients` training patients (Liu 2025 and Wang 2025: 30)."""
    from radfuse.artifacts import splits_path
    from radfuse.data.splits import load_or_make_splits

    present = [c for c in mf.SECOND_MASK_COLUMNS if c in frame.columns]
    has_second = np.zeros(len(frame), dtype=bool)
    for column in present:
        has_second |= frame[column].fillna("").astype(str).str.strip().ne("").to_numpy()
    if not has_second.any():
        return set()
    split = cfg.data.split
    splits = load_or_make_splits(frame, splits_path(cfg.paths.out), seed=int(split.seed),
                                 internal_fraction=float(split.internal_fraction), n_folds=int(split.n_folds))
    candidates = frame[(splits.cohort_of(frame) == "train").to_numpy() & has_second]
    patients = sorted(candidates[mf.PATIENT_ID].astype(str).unique())
    wanted = cfg.extract.icc.patients
    if wanted is not None and int(wanted) < len(patients):
        patients = sorted(np.random.default_rng(int(split.seed)).choice(patients, int(wanted), replace=False))
    chosen = candidates[candidates[mf.PATIENT_ID].astype(str).isin(patients)]
    print(f"[radfuse] extract: ICC on the second masks ({', '.join(present)}) of {len(chosen)} ROIs of "
          f"{len(patients)} training patients (held-out cohorts never enter the ICC)", flush=True)
    return set(chosen[mf.CASE_ID].astype(str))


def _manifest(cfg: DictConfig) -> tuple[pd.DataFrame, Path, list[tuple[str, str, str]]]:
    """The manifest as training sees it (component expansion included), validated leniently.

    Identity problems (ids, cohorts) stop the run; a row problem (unreadable file, empty ROI) is only warned
    here: extraction records it in failures.csv with its reason and goes on with the other ROIs.
    """
    from radfuse.data.validate import ManifestInvalid, validate_manifest

    frame, path = read_cohort_frame(cfg)
    problems = validate_manifest(frame, n_folds=1, resample_masks=bool(cfg.data.get("resample_masks", False)),
                                 manifest_file=str(path), modality=str(cfg.data.get("modality", "ct")))
    fatal = [p for p in problems if p.column in (mf.CASE_ID, mf.PATIENT_ID, mf.COHORT) and p.is_error]
    for problem in problems:
        if problem not in fatal:
            log.warning("manifest: %s", problem)
    if fatal:
        raise ManifestInvalid(fatal, str(path))
    # a row the validator refuses (NaN in the ROI, no HU rescale, a few-voxel ROI, a corrupt file) gives no
    # features: it is recorded in failures.csv with the validator's message, never extracted
    rejected = {str(p.case_id): str(p) for p in problems if p.is_error and p.case_id in set(frame[mf.CASE_ID])}
    return frame, path, [(case, "mask", reason) for case, reason in sorted(rejected.items())]
