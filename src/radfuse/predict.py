"""Score new ROIs with a fitted fuse run: `python -m radfuse.predict RUN_DIR FEATURES.parquet [--out FILE]`.

FEATURES.parquet holds one row per ROI: `case_id`, the feature columns the model was trained on (`rad__*`,
`deep__*`, ...), `site` (when the model harmonises with ComBat), ComBat covariates and clinical columns under
their manifest names. A table lacking any of them is refused with the missing names. ComBat scores an unseen
site from that site's own rows in the table (>= 2 needed), see docs/fuse.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import joblib
import numpy as np
import pandas as pd

from radfuse.artifacts import (KEY_COLUMN, MODEL_FILE, PROB_PREFIX, RunIncomplete, prob_columns, require_complete,
                               write_parquet)
from radfuse.fuse.design import CLINICAL_BLOCK, META_PREFIX

ALIAS_PREFIXES = (META_PREFIX, f"{CLINICAL_BLOCK}__")


class FeatureMismatch(ValueError):
    """The table does not carry every column the model needs."""


def load_model(run_dir: str | Path) -> dict:
    """The fitted model of a finished fuse run. model.joblib is a pickle (loading it runs code): it is loaded only
    when its sha256 is the one the run's COMPLETE.json recorded (docs/runs.md, "Trusting model.joblib")."""
    path = Path(run_dir) / MODEL_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: pass the folder of a finished fuse run (fuse/<run>)")
    require_complete(run_dir, "fuse", files=(MODEL_FILE,))
    return joblib.load(path)


def _resolve(table: pd.DataFrame, required: list[str]) -> tuple[dict[str, str], list[str]]:
    """(renames from manifest names to design names, the required columns that are missing, user-facing)."""
    renames, missing = {}, []
    for column in required:
        alias = next((column[len(p):] for p in ALIAS_PREFIXES if column.startswith(p)), None)
        if column in table.columns:
            continue
        if alias is not None and alias in table.columns:
            renames[alias] = column
        else:
            missing.append(alias or column)
    return renames, missing


def check_columns(table: pd.DataFrame, required: list[str], source: str = "the table") -> None:
    """Refuse a table lacking any column the model needs, naming every missing one."""
    if KEY_COLUMN not in table.columns:
        raise FeatureMismatch(f"{source} has no {KEY_COLUMN!r} column")
    missing = _resolve(table, required)[1]
    if missing:
        raise FeatureMismatch(f"{source} lacks {len(missing)} column(s) the model was trained on: "
                              f"{missing[:20]}{' ...' if len(missing) > 20 else ''}; extract them with the same "
                              "settings as the training run")


def model_input(table: pd.DataFrame, required: list[str], categorical: list[str] = (),
                source: str = "the table") -> pd.DataFrame:
    """The design frame the pipeline expects: required columns (site/clinical under their manifest names)."""
    check_columns(table, required, source)
    frame = table.rename(columns=_resolve(table, required)[0]).set_index(KEY_COLUMN)
    frame.index = frame.index.astype(str)
    for column in (f"{CLINICAL_BLOCK}__{c}" for c in categorical):
        if column in frame.columns:
            frame[column] = frame[column].astype(object).where(frame[column].isna(), frame[column].astype(str))
    return frame[required]


def score(model: dict, table: pd.DataFrame, feature_sets: list[str] | None = None,
          source: str = "the table") -> pd.DataFrame:
    """Class probabilities and predicted class of every ROI for each feature set's winning pipeline."""
    classes = list(model["classes"])
    feature_sets = feature_sets or list(model["pipelines"])
    unknown = [fs for fs in feature_sets if fs not in model["pipelines"]]
    if unknown:
        raise ValueError(f"feature set(s) {unknown} are not in the model; it has {list(model['pipelines'])}")
    needed = list(dict.fromkeys(c for fs in feature_sets for c in model["feature_columns"][fs]))
    check_columns(table, needed, source)  # one message naming everything missing, for every feature set
    frames = []
    for fs in feature_sets:
        X = model_input(table, model["feature_columns"][fs], model.get("categorical_clinical", []), source)
        proba = model["pipelines"][fs].predict_proba(X)
        frame = pd.DataFrame({KEY_COLUMN: X.index, "feature_set": fs, "model": model["winners"][fs],
                              "pred": np.asarray(classes, dtype=object)[proba.argmax(axis=1)]})
        frame[prob_columns(classes)] = proba
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m radfuse.predict", description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="a fuse run folder (<out>/fuse/<run>)")
    parser.add_argument("features", type=Path, help="parquet table of the new ROIs")
    parser.add_argument("--feature-set", action="append", help="score only this feature set (repeatable)")
    parser.add_argument("--out", type=Path, help="output parquet (default: ./predictions_<table>.parquet, never the "
                                                 "model's folder)")
    args = parser.parse_args(argv)
    try:
        model = load_model(args.run_dir)
        table = pd.read_parquet(args.features)
        scored = score(model, table, args.feature_set, source=str(args.features))
    except (FeatureMismatch, FileNotFoundError, ValueError, RunIncomplete) as err:
        print(f"[radfuse] error: {err}", file=sys.stderr)
        return 2
    out = args.out or Path.cwd() / f"predictions_{args.features.stem}.parquet"  # a study's folder stays as fuse left it
    write_parquet(out, scored)
    print(f"[radfuse] {len(table)} ROI(s) scored -> {out} (columns case_id, feature_set, model, pred, "
          f"{PROB_PREFIX}<class>)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
