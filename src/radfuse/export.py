"""A finished study as `radfuse score` needs it, read from its fuse run folder or from one portable folder.

`python -m radfuse.export RUN_DIR --to FOLDER` writes that folder: the fitted pipelines (model.joblib), each feature
table's recipe (the radiomics params and extract settings, the fold CNN checkpoints with their crop settings, or the
embedding checkpoint), and the manifest schema (classes, clinical columns, sites, training feature ranges). It holds
no image, no feature row and no patient id, so it can go to another machine: `score --study FOLDER` reads it the
same way as the run folder, because the folder mirrors a study's layout with paths relative to itself.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from radfuse import artifacts
from radfuse.artifacts import CONFIG_FILE, CROSSFIT_TABLE, MODEL_FILE, RADIOMICS_PARAMS_FILE, RADIOMICS_TABLE
from radfuse.data.manifest import CASE_ID, PATIENT_ID, read_manifest
from radfuse.fuse.combat import ComBat
from radfuse.fuse.design import CLINICAL_BLOCK, block_table

SCHEMA_FILE = "schema.json"            # classes, clinical columns, sites, blocks: what a new manifest must match
RANGES_FILE = "feature_ranges.csv"     # per design feature column: min and max over the study's training rows
CROP_AND_RUN_KEYS = ("fold", "classes")


class StudyError(ValueError):
    """The folder is not a finished study (or an export of one), or one of its parts is missing."""


@dataclass
class BlockSource:
    """How one feature block's table was made: `kind` radiomics, crossfit or embeddings, from `extract_dir`."""

    block: str
    kind: str
    table: Path
    extract_dir: Path
    extract_cfg: DictConfig = field(repr=False)


@dataclass
class Study:
    """Everything scoring reads from a study; `owned` are the folders it must never write into."""

    run_dir: Path
    fuse_cfg: DictConfig = field(repr=False)
    model: dict = field(repr=False)
    classes: list[str]
    clinical: dict[str, str]
    sources: list[BlockSource]
    owned: list[Path]
    exported: bool

    @property
    def model_path(self) -> Path:
        return self.run_dir / MODEL_FILE

    def train_out(self, source: BlockSource) -> Path:
        """The paths.out whose train/ and splits.json hold the fold CNNs of a cross-fitted block."""
        deep = source.extract_cfg.extract.deep
        return self._path(deep.crossfit.get("train_out") or source.extract_cfg.paths.out)

    def _path(self, value: str | Path) -> Path:
        path = Path(value)
        return path if path.is_absolute() else (self.run_dir / path if self.exported else path.resolve())


def _trusted_model(run_dir: Path, exported: bool) -> dict:
    """model.joblib is a pickle (loading it runs code): loaded only when its sha256 is the one recorded beside it,
    by the fuse run's COMPLETE.json, or by an export's schema.json (docs/runs.md, "Trusting model.joblib")."""
    if not exported:
        from radfuse.predict import load_model

        return load_model(run_dir)
    import json

    expected = json.loads((run_dir / SCHEMA_FILE).read_text(encoding="utf-8")).get("model_sha256")
    found = artifacts.file_sha256(run_dir / MODEL_FILE)
    if expected != found:
        raise StudyError(f"{run_dir / MODEL_FILE}: its sha256 {found[:12]}... is not the {SCHEMA_FILE} record "
                         f"{str(expected)[:12]}...; the file changed after export. Export the study again from its "
                         "fuse run, and load pickles only from a source you trust")
    return joblib.load(run_dir / MODEL_FILE)


def load_study(folder: str | Path) -> Study:
    """Read a fuse run folder (<out>/fuse/<run>) or a folder written by `export_study`."""
    run_dir = Path(folder)
    config, model_path = run_dir / CONFIG_FILE, run_dir / MODEL_FILE
    if not model_path.is_file() or not config.is_file():
        raise StudyError(f"{run_dir} holds no {MODEL_FILE} and {CONFIG_FILE}: pass --study the folder of a finished "
                         "fuse run (<paths.out>/fuse/<run>) or a folder written by python -m radfuse.export")
    exported = (run_dir / SCHEMA_FILE).is_file()
    fuse_cfg = OmegaConf.load(config)
    model = _trusted_model(run_dir, exported)
    study = Study(run_dir, fuse_cfg, model, [str(c) for c in model["classes"]],
                  dict(OmegaConf.to_container(fuse_cfg.data.clinical)) if fuse_cfg.data.get("clinical") else {},
                  [], [run_dir.resolve()], exported)
    used = {b for fs in model["feature_columns"] for b in fuse_cfg.feature_sets[fs]}
    for block in sorted(used - {CLINICAL_BLOCK}):
        table = study._path(fuse_cfg.tables[block])
        extract_cfg = table.parent / CONFIG_FILE
        if not extract_cfg.is_file():
            raise StudyError(f"block {block!r}: {extract_cfg} does not exist, so how {table.name} was extracted is "
                             "unknown; score with the study's own folders, or export the study again")
        study.sources.append(BlockSource(block, _kind(table), table, table.parent, OmegaConf.load(extract_cfg)))
        study.owned.append(table.parent.resolve())
    if not exported:  # the study's whole output root (splits.json, train/, extract/, fuse/)
        study.owned.append(study._path(fuse_cfg.paths.out).resolve())
    for source in study.sources:
        if source.kind == "crossfit":
            study.owned.append(study.train_out(source).resolve())
    return study


def _kind(table: Path) -> str:
    if table.name == RADIOMICS_TABLE:
        return "radiomics"
    if table.name == CROSSFIT_TABLE:
        return "crossfit"
    if table.name.startswith("deep_"):
        return "embeddings"
    raise StudyError(f"feature table {table} is neither radiomics.parquet nor a deep_*.parquet table of extract")


def combat_steps(estimator) -> list[ComBat]:
    """Every fitted ComBat inside a fitted pipeline (its blocks' pipelines included)."""
    found = [estimator] if isinstance(estimator, ComBat) else []
    for _, step in getattr(estimator, "steps", []):
        found += combat_steps(step)
    for _, fitted, _ in getattr(estimator, "transformers_", []):
        found += combat_steps(fitted)
    return found


def training_sites(model: dict) -> list[str]:
    return sorted({str(s) for p in model["pipelines"].values() for c in combat_steps(p) for s in c.sites_})


def feature_ranges(study: Study) -> pd.DataFrame:
    """Index: design feature column; columns min, max over the study's training rows (an export stores them)."""
    stored = study.run_dir / RANGES_FILE
    if stored.is_file():
        return pd.read_csv(stored, index_col="feature")
    train_cases = _training_cases(study)
    frames = []
    for source in study.sources:
        table = block_table(pd.read_parquet(source.table), source.block, source.table)
        rows = table.loc[table.index.intersection(train_cases)].replace([np.inf, -np.inf], np.nan)
        frames.append(pd.DataFrame({"min": rows.min(), "max": rows.max()}))
    ranges = pd.concat(frames) if frames else pd.DataFrame(columns=["min", "max"])
    ranges.index.name = "feature"
    return ranges


def _training_cases(study: Study) -> pd.Index:
    """case ids of the study's training cohort: its manifest's patients that splits.json puts in 'train' (the fuse
    run's own predictions when the manifest has moved)."""
    from radfuse.data.splits import read_splits

    data = study.fuse_cfg.data
    manifest = study._path(data.manifest) if data.manifest else study._path(data.demo.dir) / "manifest.csv"
    splits_file = artifacts.splits_path(study._path(study.fuse_cfg.paths.out))
    if manifest.is_file() and splits_file.is_file() and not data.get("split_components"):
        frame = read_manifest(manifest)
        cohorts = frame[PATIENT_ID].astype(str).map(read_splits(splits_file).cohorts)
        return pd.Index(frame.loc[(cohorts == "train").to_numpy(), CASE_ID].astype(str))
    predictions = study.run_dir / artifacts.PREDICTIONS_TABLE
    if not predictions.is_file():
        raise StudyError(f"the training rows of {study.run_dir} cannot be found: neither {manifest} with "
                         f"{splits_file} nor {predictions} exists")
    rows = pd.read_parquet(predictions, columns=["case_id", "cohort"])
    return pd.Index(rows.loc[rows.cohort == "train", "case_id"].astype(str).unique())


# ------------------------------------------------------------------------------------------------ export
def export_study(run_dir: str | Path, target: str | Path) -> Path:
    """Write the portable folder of a finished study (see the module docstring); return it."""
    study, target = load_study(run_dir), Path(target)
    if study.exported and target.resolve() == study.run_dir.resolve():
        raise StudyError(f"{target} is the exported study itself")
    if target.exists() and any(target.iterdir()):
        raise StudyError(f"{target} exists and is not empty: export into a new folder")
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy2(study.model_path, target / MODEL_FILE)
    ranges = feature_ranges(study)
    ranges.to_csv(target / RANGES_FILE)
    tables = {}
    for source in study.sources:
        tables[source.block] = str(Path("extract") / source.block / source.table.name)
        _export_source(study, source, target / "extract" / source.block, target)
    fuse_cfg = {"data": _portable_data(study.fuse_cfg.data), "feature_sets": study.fuse_cfg.feature_sets,
                "tables": tables, "paths": {"out": "."}, "run": str(study.fuse_cfg.run)}
    OmegaConf.save(OmegaConf.create(fuse_cfg), target / CONFIG_FILE)
    artifacts.write_json(target / SCHEMA_FILE, {
        "classes": study.classes, "clinical": study.clinical, "sites": training_sites(study.model),
        "categorical_clinical": list(study.model.get("categorical_clinical", [])),
        "feature_sets": {fs: list(study.fuse_cfg.feature_sets[fs]) for fs in study.model["pipelines"]},
        "blocks": {s.block: s.kind for s in study.sources}, "n_training_feature_ranges": len(ranges),
        "model_sha256": artifacts.file_sha256(target / MODEL_FILE), "exported_from": str(study.run_dir.resolve()),
        "versions": study.model.get("versions", {})})
    return target


def _portable_data(data: DictConfig) -> dict:
    """The study's data keys without its paths (manifest, demo folder): classes, clinical, crops, modality."""
    plain = OmegaConf.to_container(data, resolve=True)
    return {k: v for k, v in plain.items() if k not in ("manifest", "demo")}


def _export_source(study: Study, source: BlockSource, folder: Path, target: Path) -> None:
    """One block's recipe: its extract config (paths made relative), params, and the CNN checkpoints it needs."""
    folder.mkdir(parents=True)
    cfg = OmegaConf.to_container(source.extract_cfg, resolve=True)
    cfg["data"] = _portable_data(source.extract_cfg.data)
    cfg["paths"] = {"out": ".", "cache": "cache"}
    deep = cfg["extract"]["deep"]
    if source.kind == "radiomics":
        shutil.copy2(source.extract_dir / RADIOMICS_PARAMS_FILE, folder / RADIOMICS_PARAMS_FILE)
        cfg["extract"]["params_file"] = str(Path("extract") / source.block / RADIOMICS_PARAMS_FILE)
    elif source.kind == "crossfit":
        from radfuse.stages.extract_deep import crossfit_runs

        train_out = study.train_out(source)
        n_folds = int(_splits_n_folds(train_out))
        runs = crossfit_runs(deep["crossfit"]["train_runs"], n_folds)
        for run in runs:
            _copy_train_run(artifacts.train_dir(train_out, run), str(deep["crossfit"]["checkpoint"]),
                            target / "train" / run)
        deep["crossfit"].update({"train_runs": runs, "train_out": "."})
        # the fold CNNs' folds without the study's patients: run_crossfit reads n_folds from splits.json
        artifacts.write_json(artifacts.splits_path(target), {"version": 1, "seed": 0, "n_folds": n_folds,
                                                              "manifest_fingerprint": "", "cohorts": {}, "folds": {}})
    elif source.kind == "embeddings":
        if deep["source"] != "checkpoint":
            raise StudyError(f"block {source.block!r}: exporting embeddings of extract.deep.source="
                             f"{deep['source']!r} is not supported; score with the study's own folders")
        checkpoint = (study._path(deep["checkpoint"]) if deep.get("checkpoint") else
                      artifacts.train_dir(study._path(source.extract_cfg.paths.out), deep["train_run"])
                      / str(deep["checkpoint_file"]))
        _copy_train_run(checkpoint.parent, checkpoint.name, target / "train" / f"embeddings_{source.block}")
        deep["checkpoint"] = str(Path("train") / f"embeddings_{source.block}" / checkpoint.name)
    OmegaConf.save(OmegaConf.create(cfg), folder / CONFIG_FILE)


def _splits_n_folds(train_out: Path) -> int:
    from radfuse.data.splits import read_splits

    path = artifacts.splits_path(train_out)
    if not path.is_file():
        raise StudyError(f"{path} does not exist: the fold CNNs' study has no splits.json")
    return read_splits(path).n_folds


def _copy_train_run(run_dir: Path, checkpoint: str, target: Path) -> None:
    """The checkpoint, metrics.json (its final epoch) and the run's crop settings, without the run's paths."""
    if not (run_dir / checkpoint).is_file():
        raise StudyError(f"{run_dir / checkpoint} does not exist: the study's CNN checkpoints must be present to export")
    artifacts.require_complete(run_dir, "train", files=(checkpoint,))  # only a finished run, its checkpoint unchanged
    target.mkdir(parents=True)
    shutil.copy2(run_dir / checkpoint, target / checkpoint)
    if (run_dir / artifacts.METRICS_FILE).is_file():
        shutil.copy2(run_dir / artifacts.METRICS_FILE, target / artifacts.METRICS_FILE)
    run_cfg = OmegaConf.load(run_dir / CONFIG_FILE) if (run_dir / CONFIG_FILE).is_file() else OmegaConf.create({})
    data = {k: v for k, v in OmegaConf.to_container(run_cfg.get("data") or {}, resolve=True).items()
            if k not in ("manifest", "demo")}
    callbacks = OmegaConf.to_container(run_cfg.get("callbacks") or {}, resolve=True)
    OmegaConf.save(OmegaConf.create({"data": data, "callbacks": callbacks}), target / CONFIG_FILE)
    artifacts.mark_complete(target, "train")  # the exported copy is a finished run of its own


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m radfuse.export", description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="a finished fuse run folder (<paths.out>/fuse/<run>)")
    parser.add_argument("--to", type=Path, required=True, help="the new folder to write")
    args = parser.parse_args(argv)
    try:
        folder = export_study(args.run_dir, args.to)
    except (StudyError, FileNotFoundError) as err:
        print(f"[radfuse] error: {err}", file=sys.stderr)
        return 2
    print(f"[radfuse] exported {args.run_dir} -> {folder} (score with: radfuse score NEW_MANIFEST --study {folder} "
          "--out DIR)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
