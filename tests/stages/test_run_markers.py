"""Run folders: the completion marker each stage writes last and every reader checks, checkpoints and reports
without absolute paths or case ids, byte-identical fuse reruns, and model.joblib loaded only with its recorded hash."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch
from hydra import compose, initialize_config_dir

from radfuse import artifacts
from radfuse.artifacts import COMPLETE_FILE, RunIncomplete
from tests.stages.train_helpers import CONF, DATA_OVERRIDES, SECRET, compose_train, tiny_cohort


def _strings(obj) -> list[str]:
    """Every string inside a nested checkpoint state (keys included)."""
    if isinstance(obj, dict):
        return [s for k, v in obj.items() for s in _strings(k) + _strings(v)]
    if isinstance(obj, (list, tuple, set)):
        return [s for v in obj for s in _strings(v)]
    return [obj] if isinstance(obj, str) else []


# ------------------------------------------------------------------------------------------------ train
@pytest.fixture(scope="module")
def train_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("train_markers")
    manifest = tiny_cohort(folder / "cohort")
    out = folder / "out"
    from radfuse.stages import train

    train.run(compose_train(manifest, out, folder / "cache", "debug=tiny", "model.arch=resnet18", "run=r18"))
    return manifest, out, out / "train" / "r18"


def test_a_train_run_is_marked_complete_with_the_hash_of_every_file(train_run):
    _, out, run_dir = train_run
    marker = json.loads((run_dir / COMPLETE_FILE).read_text())
    assert marker["stage"] == "train"
    assert {"best.ckpt", "last.ckpt", "config.yaml", "metrics.json", "provenance.json"} <= set(marker["files"])
    assert all(artifacts.file_sha256(run_dir / name) == digest for name, digest in marker["files"].items())
    assert not any(name.startswith(".") for name in marker["files"])  # no lock, no temporary file
    inputs = json.loads((run_dir / "provenance.json").read_text())["inputs"]
    assert {"manifest", "splits"} <= set(inputs)


def test_checkpoints_hold_no_absolute_path(train_run):
    _, out, run_dir = train_run
    for name in ("best.ckpt", "last.ckpt"):
        state = torch.load(run_dir / name, map_location="cpu", weights_only=True)
        paths = [s for s in _strings(state) if str(out.parent) in s or s.startswith("/")]
        assert paths == [], f"{name} holds {paths}"
        callback = next(v for k, v in state["callbacks"].items() if "RunFolderCheckpoint" in k)
        assert "dirpath" not in callback and callback["best_model_path"] in ("", "best.ckpt")  # a file name


def test_extract_refuses_the_checkpoint_of_a_train_run_killed_before_its_end(train_run, tmp_path):
    """A killed train.py leaves checkpoints and config.yaml but no COMPLETE.json."""
    manifest, out, run_dir = train_run
    killed = out / "train" / "killed"
    shutil.copytree(run_dir, killed)
    (killed / COMPLETE_FILE).unlink()
    (killed / "metrics.json").unlink()
    from radfuse.stages.extract_deep import run_deep

    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        cfg = compose("extract", overrides=[f"data.manifest={manifest}", f"paths.out={out}", *DATA_OVERRIDES,
                                            "extract.deep.source=checkpoint", "extract.deep.train_run=killed",
                                            f"paths.cache={tmp_path / 'cache'}"])
    with pytest.raises(RunIncomplete) as err:
        run_deep(cfg, tmp_path / "extract")
    message = str(err.value)
    assert str(killed) in message and "ckpt_path=last" in message and "run=killed" in message
    assert not (tmp_path / "extract").exists()


def test_cam_overlays_record_what_they_read_and_only_from_a_finished_run(train_run, tmp_path, capsys):
    from radfuse.models.cam import main as cam_main

    manifest, out, run_dir = train_run
    case = f"{SECRET}000"
    assert cam_main([str(run_dir), "--cases", case, "--out", str(tmp_path / "cam")]) == 0
    assert [p.suffix for p in sorted((tmp_path / "cam").iterdir())] == [".png", ".json"]
    inputs = json.loads((tmp_path / "cam" / "provenance.json").read_text())["inputs"]
    assert inputs == {"checkpoint": artifacts.file_sha256(run_dir / "best.ckpt"),
                      "train_config": artifacts.file_sha256(run_dir / "config.yaml"),
                      "manifest": artifacts.file_sha256(manifest), "splits": artifacts.file_sha256(out / "splits.json")}

    killed = out / "train" / "killed_cam"
    shutil.copytree(run_dir, killed)
    (killed / COMPLETE_FILE).unlink()
    assert cam_main([str(killed), "--cases", case, "--out", str(tmp_path / "refused")]) == 2
    assert f"{killed} has no {COMPLETE_FILE}" in capsys.readouterr().err
    assert not (tmp_path / "refused").exists()


# ------------------------------------------------------------------------------------------------ fuse
def _fuse_cfg(manifest: Path, out: Path, *extra: str):
    from tests.fuse.test_stage import _cfg

    folder = out / "extract" / "default"
    paths = {name: folder / f for name, f in (("rad", "radiomics.parquet"), ("deep", "deep_penultimate.parquet"),
                                               ("icc", "icc.parquet"))}
    return _cfg(manifest, out, paths, "report.n_resamples=20", "use_classifiers=[lr]", *extra)


def _cohort_with_tables(folder: Path, complete: bool = True) -> tuple[Path, Path]:
    from tests.fuse.test_stage import _tables

    manifest = tiny_cohort(folder / "cohort", n_patients=40)  # case ids SECRETCASE000 ...
    extract = folder / "out" / "extract" / "default"
    extract.mkdir(parents=True)
    _tables(manifest, extract)
    if complete:
        artifacts.mark_complete(extract, "extract")
    return manifest, folder / "out"


def test_fuse_provenance_pins_the_extract_runs_and_the_grad_cam_checkpoint(tmp_path):
    from types import SimpleNamespace

    from radfuse.stages.fuse import fuse_inputs

    manifest, out = _cohort_with_tables(tmp_path)
    extract = out / "extract" / "default"
    artifacts.write_provenance(extract, {"manifest": manifest})
    inputs = fuse_inputs(_fuse_cfg(manifest, out, "report.train_run=r18"), SimpleNamespace(manifest_path=manifest))
    assert Path(inputs["rad_extract_provenance"]) == extract / "provenance.json"  # it hashes the deep checkpoints
    assert Path(inputs["deep_extract_provenance"]) == extract / "provenance.json"
    assert Path(inputs["gradcam_checkpoint"]) == out / "train" / "r18" / "best.ckpt"
    assert {"manifest", "splits", "rad", "deep", "icc_table", "icc_intra_table"} <= set(inputs)


def test_fuse_refuses_an_extract_folder_without_its_marker(tmp_path):
    from radfuse.stages import fuse

    manifest, out = _cohort_with_tables(tmp_path, complete=False)
    with pytest.raises(RunIncomplete) as err:
        fuse.run(_fuse_cfg(manifest, out))
    assert str(out / "extract" / "default") in str(err.value) and "python extract.py run=default" in str(err.value)
    assert not (out / "fuse" / "default" / COMPLETE_FILE).exists()


def test_fuse_refuses_a_table_changed_after_its_extract_run_finished(tmp_path):
    from radfuse.stages import fuse

    manifest, out = _cohort_with_tables(tmp_path)
    table = out / "extract" / "default" / "radiomics.parquet"
    pd.read_parquet(table).iloc[:-1].to_parquet(table, index=False)
    with pytest.raises(RunIncomplete, match="radiomics.parquet changed since the extract run"):
        fuse.run(_fuse_cfg(manifest, out))


@pytest.fixture(scope="module")
def fused_twice(tmp_path_factory):
    """One fuse run on a finished extract folder, then the same run again; the first run's folder is kept."""
    from radfuse.stages import fuse

    folder = tmp_path_factory.mktemp("fuse_twice")
    manifest, out = _cohort_with_tables(folder)
    run_dir = out / "fuse" / "default"
    fuse.run(_fuse_cfg(manifest, out))
    first = folder / "first"
    shutil.copytree(run_dir, first)
    fuse.run(_fuse_cfg(manifest, out))
    return manifest, out, first, run_dir


@pytest.mark.slow  # two fuse runs (about 80 s on one core)
def test_fuse_marks_its_run_complete(fused_twice):
    _, _, _, run_dir = fused_twice
    marker = json.loads((run_dir / COMPLETE_FILE).read_text())
    assert marker["stage"] == "fuse"
    assert {"model.joblib", "metrics.json", "report.html", "predictions.parquet"} <= set(marker["files"])
    assert any(name.startswith("figures/") for name in marker["files"])
    inputs = json.loads((run_dir / "provenance.json").read_text())["inputs"]
    assert {"manifest", "splits", "rad", "deep", "icc_table"} <= set(inputs)


@pytest.mark.slow  # two fuse runs (about 80 s on one core)
def test_fuse_rerun_gives_identical_metrics_and_figures(fused_twice):
    _, _, first, second = fused_twice
    figures = sorted(p.relative_to(first).as_posix() for p in (first / "figures").rglob("*") if p.is_file())
    assert any(f.endswith(".pdf") for f in figures) and any("beeswarm" in f for f in figures)
    assert figures == sorted(p.relative_to(second).as_posix() for p in (second / "figures").rglob("*") if p.is_file())
    different = [f for f in ["metrics.json", "predictions.parquet", *figures]
                 if (first / f).read_bytes() != (second / f).read_bytes()]
    assert different == []
    generated = re.compile(r"Generated [0-9T:+-]+")
    assert generated.sub("", (first / "report.html").read_text()) == \
        generated.sub("", (second / "report.html").read_text())


@pytest.mark.slow  # two fuse runs (about 80 s on one core)
def test_report_and_metrics_hold_no_absolute_path_and_no_case_id(fused_twice):
    _, out, _, run_dir = fused_twice
    for name in ("report.html", "metrics.json"):
        text = (run_dir / name).read_text()
        assert str(out.parent) not in text, name
        assert SECRET not in text, name
    config = json.loads((run_dir / "metrics.json").read_text())["config"]
    assert config["tables"]["rad"] == "extract/default/radiomics.parquet"
    assert config["data"]["manifest"] == "<outside paths.out>/manifest.csv"


def test_decision_plot_legend_names_cases_only_when_asked():
    import numpy as np

    from radfuse.evaluate.shap_explain import ShapResult, plot_decision

    rng = np.random.default_rng(0)
    result = ShapResult(rng.normal(size=(4, 3, 2)), np.zeros(2), rng.normal(size=(4, 3)), ["a", "b", "c"],
                        [f"{SECRET}{i}" for i in range(4)], ["0", "1"], "linear", "log-odds")
    for show, expected in ((False, ["case 1", "case 2"]), (True, [f"{SECRET}0", f"{SECRET}1"])):
        fig = plot_decision(result, 1, [0, 1], show_case_ids=show)
        labels = [t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()]
        assert labels == expected


# ------------------------------------------------------------------------------------------------ predict
@pytest.mark.slow  # two fuse runs (about 80 s on one core)
def test_predict_refuses_a_tampered_model_or_a_run_without_marker(fused_twice, tmp_path):
    from radfuse.predict import load_model, main

    _, _, first, _ = fused_twice
    run_dir = tmp_path / "fuse_run"
    shutil.copytree(first, run_dir)
    assert load_model(run_dir)["classes"] == ["0", "1"]
    model = run_dir / "model.joblib"
    model.write_bytes(model.read_bytes() + b"\0")
    with pytest.raises(RunIncomplete, match=r"model.joblib changed since the fuse run"):
        load_model(run_dir)
    assert main([str(run_dir), str(tmp_path / "features.parquet")]) == 2
    (run_dir / COMPLETE_FILE).unlink()
    with pytest.raises(RunIncomplete, match=f"fuse run folder {re.escape(str(run_dir))} has no COMPLETE.json"):
        load_model(run_dir)
