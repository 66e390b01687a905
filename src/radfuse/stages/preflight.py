"""The study's configs -> the pre-flight checks of radfuse.data.preflight (the one module of the pre-flight that
reads a DictConfig).

`python -m radfuse.data.validate --config-dir STUDY_DIR experiment=study [key=value ...]` composes the study for
prepare, train, extract and fuse as each stage would (the same overrides apply to all four), validates the
manifest with the study's data settings, makes the split in memory (or reads splits.json when it exists, refusing
one made from another manifest), and checks what the chosen stages need: an internal cohort for a train run that
chooses its checkpoint on validation data, patients of each class for the inner LASSO folds of every outer training
fold, two sites for ComBat, a second reader's masks for the ICC filter. It writes nothing. The train and fuse
stages run their own part of these checks right after they validate the manifest.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from radfuse.artifacts import BEST_CHECKPOINT, splits_path
from radfuse.data.manifest import (COHORT, LABEL, MASK2, MASK_REPEAT, PATIENT_ID, SITE, ManifestError,
                                   coerce_clinical)
from radfuse.data.preflight import (internal_cohort_problems, inner_fold_problems, second_reader_problems,
                                    site_problems)
from radfuse.data.problems import WHOLE_TABLE, ManifestInvalid, Problem, errors
from radfuse.data.splits import SplitMismatch, Splits, make_splits, manifest_fingerprint, read_splits
from radfuse.data.validate import label_str, validate_manifest
from radfuse.stages.study import CONF_DIR, STAGES, StudyPresetError, with_study_groups

LASSO_TARGET = "LassoSelector"
ICC_TARGET = "ICCFilter"
COMBAT_TARGET = "ComBat"


# ---------------------------------------------------------------------------------------------- what a stage needs
def checkpoint_needs(cfg: DictConfig) -> list[tuple[str, str]]:
    """(key, what it does) of each train callback that chooses on validation data, for a run that validates on
    the internal cohort (no data.fold); empty for a fold run, which validates on its CV fold."""
    if cfg.data.get("fold") is not None:
        return []
    needs = []
    for key, callback in (cfg.get("callbacks") or {}).items():
        monitor = callback.get("monitor") if isinstance(callback, DictConfig) else None
        if monitor and str(monitor).startswith("val/"):
            does = BEST_CHECKPOINT if "Checkpoint" in str(callback.get("_target_", "")) else "when to stop"
            needs.append((f"callbacks.{key}", f"callbacks.{key} monitors {monitor}: {does}"))
    return needs


def train_problems(cfg: DictConfig, splits: Splits, manifest_file: str) -> list[Problem]:
    """What a train run needs of the split."""
    return internal_cohort_problems(splits.cohorts, checkpoint_needs(cfg), str(cfg.get("run") or "default"),
                                    manifest_file)


def _steps(node) -> dict[str, DictConfig]:
    return {k: v for k, v in (node or {}).items() if isinstance(v, DictConfig) and "_target_" in v}


def _used_blocks(cfg: DictConfig) -> list[str]:
    return sorted({str(b) for blocks in cfg.feature_sets.values() for b in blocks})


def lasso_settings(cfg: DictConfig) -> dict[str, int]:
    """config key of n_splits -> inner folds, for every LASSO step fuse will fit (blocks of the feature sets, final)."""
    out = {}
    for name in _used_blocks(cfg):
        for step, node in _steps(cfg.blocks.get(name)).items():
            if str(node._target_).endswith(LASSO_TARGET):
                out[f"blocks.{name}.{step}.n_splits"] = int(node.get("n_splits", 10))
    for step, node in _steps(cfg.get("final")).items():
        if str(node._target_).endswith(LASSO_TARGET):
            out[f"final.{step}.n_splits"] = int(node.get("n_splits", 10))
    return out


def fuse_problems(cfg: DictConfig, frame: pd.DataFrame, splits: Splits, classes: Sequence[str],
                  manifest_file: str) -> list[Problem]:
    """What fuse needs of the training cohort: inner LASSO folds, sites for ComBat, second outlines for ICC."""
    cohorts = splits.cohort_of(frame)
    train = (cohorts == "train").to_numpy()
    if not train.any():
        return [Problem(WHOLE_TABLE, COHORT, manifest_file, "no patient is in the train cohort; fuse fits on it",
                        "give patients cohort 'train', or leave their cohort empty to be split automatically")]
    rows = frame[train].reset_index(drop=True)
    labels = rows[LABEL].map(label_str)
    problems = []
    settings = lasso_settings(cfg)
    if settings:
        parts, folds_text = outer_training_parts(cfg, rows, labels, splits, classes)
        problems += inner_fold_problems(labels, rows[PATIENT_ID].astype(str), parts, settings, classes,
                                        manifest_file, folds_text)
    for name in _used_blocks(cfg):
        for step, node in _steps(cfg.blocks.get(name)).items():
            key = f"blocks.{name}.{step}"
            if str(node._target_).endswith(COMBAT_TARGET):
                column = str(node.get("site_column", f"meta__{SITE}")).removeprefix("meta__")
                problems += site_problems(rows[column] if column in rows.columns else None, key, manifest_file,
                                          column)
            elif str(node._target_).endswith(ICC_TARGET) and not node.get("keep_missing", False):
                problems += _icc_problems(cfg, node, frame, key, manifest_file)
    return problems


def outer_training_parts(cfg: DictConfig, rows: pd.DataFrame, labels: pd.Series, splits: Splits,
                         classes: Sequence[str]) -> tuple[dict[str, np.ndarray], str]:
    """name -> mask over the training ROIs, for each outer CV fold's training part and the final refit, and how
    the folds are made (fuse's cv.folds)."""
    if cfg.cv.folds == "splits":
        fold = splits.fold_of(rows)
        folds_text = f"outer folds: the split's CV folds, cv.folds=splits, data.split.n_folds={splits.n_folds}"
    else:
        from radfuse.fuse.search import patient_folds

        y = labels.map({c: i for i, c in enumerate(classes)}).to_numpy()
        fold = pd.Series(-1, index=rows.index)
        for k, (_, test) in enumerate(patient_folds(y, rows[PATIENT_ID].astype(str).to_numpy(),
                                                    int(cfg.cv.n_splits), int(cfg.cv.seed))):
            fold.iloc[test] = k
        folds_text = f"outer folds: cv.folds=fresh, cv.n_splits={int(cfg.cv.n_splits)}"
    parts = {f"the training part of outer fold {int(k)}": (fold != k).to_numpy()
             for k in sorted(fold.dropna().unique())}
    parts["the whole training cohort (the refit)"] = np.ones(len(rows), bool)
    return parts, folds_text


def _icc_problems(cfg: DictConfig, node: DictConfig, frame: pd.DataFrame, key: str, manifest_file: str):
    """An ICC filter whose table extract computes from mask2 (icc_table) or mask_repeat (icc_intra_table), when the
    manifest has none of those masks; a table of the user's own that exists is taken as it is."""
    tables = node.get("icc_table")
    tables = [tables] if tables is None or isinstance(tables, str) else list(tables)
    sources = {str(cfg.get("icc_table")): MASK2, str(cfg.get("icc_intra_table")): MASK_REPEAT}
    problems = []
    for table in tables:
        column = sources.get(str(table))
        if table is None or column is None or Path(str(table)).is_file():
            continue
        present = column in frame.columns and frame[column].notna().any() and \
            (frame[column].astype(str).str.strip() != "").any()
        problems += second_reader_problems(column, bool(present), key, manifest_file)
    return problems


# ---------------------------------------------------------------------------------------------- the whole study
def compose_study(overrides: Sequence[str], config_dirs: Sequence[Path] = ()) -> dict[str, DictConfig]:
    """Each stage's config as its entry script composes it. An override applies to every stage that has its key
    or group (`callbacks.model_checkpoint=null` to train, `final=scale` to fuse, `data.*` to all); one that no
    stage has is an error."""
    from hydra.core.global_hydra import GlobalHydra

    searchpath = [f"hydra.searchpath=[{','.join(f'file://{Path(d).resolve()}' for d in config_dirs)}]"] \
        if config_dirs else []
    if GlobalHydra.instance().is_initialized():
        GlobalHydra.instance().clear()
    configs, unused = {}, None
    for stage in STAGES:
        configs[stage], dropped = _compose_dropping(stage, list(overrides), searchpath, config_dirs)
        unused = set(dropped) if unused is None else unused & set(dropped)
    if unused:
        raise ValueError(f"override(s) {sorted(unused)} fit no stage's config (prepare, train, extract, fuse): "
                         "check the key's spelling (python train.py --cfg job shows a stage's keys)")
    return configs


def _compose_dropping(stage: str, overrides: list[str], searchpath: list[str], config_dirs: Sequence[Path]):
    """(config, overrides left out because this stage has no such key or group)."""
    from hydra import compose, initialize_config_dir

    dropped: list[str] = []
    while True:
        kept = [o for o in overrides if o not in dropped]
        try:
            with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
                return compose(stage, overrides=with_study_groups(stage, [*kept, *searchpath],
                                                                  search_dirs=list(config_dirs))), dropped
        except Exception as err:
            if type(err).__module__.split(".")[0] not in ("hydra", "omegaconf"):
                raise
            named = [o for o in kept if f"'{_override_key(o)}'" in str(err) or f"'{_override_key(o)}/" in str(err)]
            if not named:
                raise
            dropped += named


def _override_key(item: str) -> str:
    return item.partition("=")[0].lstrip("+~").removeprefix("override ")


def study_problems(configs: dict[str, DictConfig]) -> tuple[str, int, list[Problem]]:
    """(manifest file, ROIs, every problem) of the study: the manifest with its data settings, then what each
    stage needs (only when the manifest's ids and labels are sound enough to split)."""
    from radfuse.stages.common import manifest_path, read_cohort_frame

    data = configs["prepare"].data
    path = str(manifest_path(data))
    frame, _ = read_cohort_frame(configs["prepare"])
    clinical = dict(OmegaConf.to_container(data.clinical)) if data.get("clinical") else {}
    classes = [str(c) for c in data.classes]
    problems = validate_manifest(frame, classes=classes, clinical=clinical, n_folds=int(data.split.n_folds),
                                 resample_masks=bool(data.get("resample_masks", False)), manifest_file=path,
                                 modality=str(data.get("modality", "ct")), margin=data.get("margin"))
    if any(p.column in (PATIENT_ID, LABEL, COHORT, "case_id") for p in errors(problems)):
        return path, len(frame), problems
    frame = coerce_clinical(frame, clinical)
    splits, split_problems = _study_splits(configs["prepare"], frame, path)
    problems += split_problems
    if splits is None:
        return path, len(frame), problems
    problems += train_problems(configs["train"], splits, path)
    problems += fuse_problems(configs["fuse"], frame, splits, classes, path)
    return path, len(frame), problems


def _study_splits(cfg: DictConfig, frame: pd.DataFrame, manifest_file: str) -> tuple[Splits | None, list[Problem]]:
    """splits.json when it exists (and was made from this manifest), else the split prepare would write."""
    split = cfg.data.split
    path = splits_path(cfg.paths.out)
    try:
        if path.exists():
            splits = read_splits(path)
            if splits.fingerprint != manifest_fingerprint(frame):
                from radfuse.data.splits import _mismatch_message

                raise SplitMismatch(_mismatch_message(path, splits, frame))
            return splits, []
        return make_splits(frame, int(split.seed), float(split.internal_fraction), int(split.n_folds)), []
    except (SplitMismatch, ValueError) as err:
        return None, [Problem(WHOLE_TABLE, COHORT, str(path), f"no split: {err}",
                              "see the message; data.split.* set how patients are split")]


def ensure_ready(problems: list[Problem], manifest: str) -> None:
    """A stage's own pre-flight: warnings printed, errors raised (the stage exits 2 with them)."""
    for problem in problems:
        if not problem.is_error:
            print(f"[radfuse] {problem}", flush=True)
    if errors(problems):
        raise ManifestInvalid(errors(problems), manifest)


def main(overrides: Sequence[str], config_dirs: Sequence[Path]) -> int:
    """The validator's study mode (radfuse.data.validate's CLI): exit 2 on any error, nothing written."""
    import sys

    try:
        configs = compose_study(overrides, config_dirs)
        path, n_rois, problems = study_problems(configs)
    except (StudyPresetError, ManifestError, ValueError, FileNotFoundError) as err:
        print(f"[radfuse] error: {err}", file=sys.stderr)
        return 2
    except Exception as err:  # Hydra's own errors: an unknown key or group, a missing value (???)
        if type(err).__module__.split(".")[0] not in ("hydra", "omegaconf"):
            raise
        print(f"[radfuse] error: {err}", file=sys.stderr)
        return 2
    for problem in problems:
        print(problem, file=sys.stderr)
    failed = errors(problems)
    print(f"{path}: {n_rois} ROI(s), {len(failed)} error(s) in {len({p.case_id for p in failed})} case(s), "
          f"{len(problems) - len(failed)} warning(s)" + ("" if failed else ": valid, and the study can run"))
    return 2 if failed else 0
