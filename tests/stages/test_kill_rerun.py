"""Kill-safety (issue 16): `kill -9` prepare, train.py (also halfway through writing a checkpoint), extract.py,
fuse.py and `radfuse score` at random points, rerun, and the outputs equal those of an uninterrupted run; an
interrupted folder never looks complete, every file a marker lists loads, and no temporary file is left where a
reader would take it. Slow: several real subprocess runs. The kill points and outcomes are printed (run with -s)
and recorded in bench/RESULTS.md, "Kill trials"."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import joblib
import pandas as pd
import pytest
import torch
import yaml

from radfuse import artifacts
from tests.data.cohort_factory import make_tiny_cohort
from tests.extract.synthetic import make_cohort

ROOT = Path(__file__).resolve().parents[2]
COMMON = ["data.classes=[0,1]", "~data.clinical", "data.split.n_folds=2", "extract.progress=false"]
FUSE = ["data.classes=[0,1]", "~data.clinical", "data.split.n_folds=2", "use_classifiers=[lr]", "report.enabled=false",
        "~feature_sets", "+feature_sets={rad:[rad]}", "blocks.rad.combat=null", "cv.n_splits=2"]


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}", "OMP_NUM_THREADS": "1",
            "WANDB_MODE": "disabled"}


def _command(script: str, out: Path, manifest: Path, extra: list[str]) -> list[str]:
    return [sys.executable, script, f"paths.out={out}", f"data.manifest={manifest}", *extra]


def _finish(command: list[str], **env: str) -> float:
    """Run to the end (exit 0 asserted); the wall time in seconds."""
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, env={**_env(), **env}, capture_output=True, text=True, encoding="utf-8",
                          errors="replace", timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return time.perf_counter() - started


def _kill_after(command: list[str], delay: float) -> bool:
    """Start `command`, `kill -9` its process group after `delay` s; whether it was still running then."""
    child = subprocess.Popen(command, cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)
    time.sleep(delay)
    running = child.poll() is None
    if running:
        os.killpg(child.pid, signal.SIGKILL)
    child.wait()
    return running


def _kill_when(command: list[str], ready, timeout: float = 600.0) -> bool:
    """Start `command`, `kill -9` its process group as soon as `ready()` holds (polled every 20 ms); whether it was
    still running then."""
    child = subprocess.Popen(command, cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)
    deadline = time.monotonic() + timeout
    while child.poll() is None and not ready() and time.monotonic() < deadline:
        time.sleep(0.02)
    running = child.poll() is None
    if running:
        os.killpg(child.pid, signal.SIGKILL)
    child.wait()
    return running


def _killed_by_hook(command: list[str], n: int) -> str:
    """Run `command` under kill_hooks.py, which SIGKILLs it halfway through writing its n-th checkpoint file."""
    hooked = [sys.executable, str(Path(__file__).with_name("kill_hooks.py")), *command[1:]]
    done = subprocess.run(hooked, cwd=ROOT, env={**_env(), "RADFUSE_KILL_AT_CHECKPOINT": str(n)},
                          capture_output=True, text=True, encoding="utf-8", errors="replace", timeout=900)
    assert done.returncode == -signal.SIGKILL, done.stdout[-2000:] + done.stderr[-2000:]
    return done.stdout.strip().splitlines()[-1]


def _load(path: Path) -> None:
    """Read a file the way its reader does (a half-written file raises)."""
    if path.suffix == ".parquet":
        pd.read_parquet(path)
    elif path.suffix == ".csv":
        pd.read_csv(path)
    elif path.suffix == ".json":
        json.loads(path.read_text(encoding="utf-8"))
    elif path.suffix in (".ckpt", ".pt"):
        torch.load(path, map_location="cpu", weights_only=False)
    elif path.suffix in (".yaml", ".yml"):
        yaml.safe_load(path.read_text(encoding="utf-8"))
    elif path.suffix == ".joblib":
        joblib.load(path)
    elif path.suffix == ".png":
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", path


def _check_folder(folder: Path) -> bool:
    """No half-written artefact: every temporary file is hidden (no reader takes it), and when the folder has a
    marker every file it lists exists, has the recorded hash and loads. Whether the folder has a marker."""
    if not folder.is_dir():
        return False
    for path in folder.rglob("*"):
        if path.is_file() and ".tmp" in path.name:
            assert path.name.startswith("."), f"{path}: a temporary file a reader could take"
    marker = artifacts.read_marker(folder)
    if marker is None:
        return False
    for name, digest in marker["files"].items():
        assert artifacts.file_sha256(folder / name) == digest, name
        _load(folder / name)
    return True


def _stamps(folder: Path, pattern: str) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.glob(pattern) if p.is_file()}


@pytest.mark.slow
def test_extract_and_fuse_killed_at_random_points_give_the_uninterrupted_outputs(tmp_path):
    manifest = make_cohort(tmp_path / "data", n_cases=12, mask2=True)
    frame = pd.read_csv(manifest)
    frame["label"] = [str(i % 2) for i in range(len(frame))]
    frame.to_csv(manifest, index=False)
    clean, broken = tmp_path / "clean", tmp_path / "broken"
    extract_args = COMMON + ["radiomics=fast", "extract.deep.source=null"]
    _finish(_command("extract.py", clean, manifest, extract_args))
    _finish(_command("fuse.py", clean, manifest, FUSE))

    rng = random.Random(7)
    trials = []
    for stage, args in (("extract.py", extract_args), ("fuse.py", FUSE)):
        for _ in range(3):
            delay = rng.uniform(2.0, 12.0)
            _kill_after(_command(stage, broken, manifest, args), delay)
            folder = broken / ("extract" if stage == "extract.py" else "fuse") / "default"
            marker = folder / "COMPLETE.json"
            trials.append((stage, round(delay, 1), marker.is_file()))
            if marker.is_file():  # the run had finished before the kill: the marker vouches for every file
                recorded = json.loads(marker.read_text(encoding="utf-8"))["files"]
                assert all((folder / name).is_file() for name in recorded)
        _finish(_command(stage, broken, manifest, args))

    for name in ("radiomics.parquet", "icc.parquet", "failures.csv", "grey_levels.csv"):
        pd.testing.assert_frame_equal(_read(broken / "extract" / "default" / name),
                                      _read(clean / "extract" / "default" / name))
    for name in ("predictions.parquet", "cv_results.csv"):
        a, b = _read(broken / "fuse" / "default" / name), _read(clean / "fuse" / "default" / name)
        pd.testing.assert_frame_equal(a.drop(columns=[c for c in a if "time" in c]),
                                      b.drop(columns=[c for c in b if "time" in c]))
    print("kill trials (stage, seconds before kill -9, complete when killed):", trials)


def _read(path: Path) -> pd.DataFrame:
    return pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)


# ------------------------------------------------------------------------------------------------ prepare
PREPARE = ["data.classes=[0,1]", "~data.clinical.t_score", "data.split.n_folds=3", "data.size=32"]


@pytest.mark.slow
def test_prepare_killed_at_random_points_gives_the_uninterrupted_split_and_crop_cache(tmp_path):
    manifest = make_tiny_cohort(tmp_path / "cohort", n_patients=24)
    clean, broken = tmp_path / "clean", tmp_path / "broken"

    def command(out: Path) -> list[str]:
        return [sys.executable, "-m", "radfuse.stages.prepare", f"data.manifest={manifest}", f"paths.out={out}",
                *PREPARE]

    seconds = _finish(command(clean))
    rng = random.Random(11)
    trials = []

    def cached() -> int:
        return len(list((broken / "cache").rglob("*.pt"))) if (broken / "cache").is_dir() else 0

    # one kill at a random time (imports, validation, split), two while the crop cache fills: as soon as it holds
    # a random number of entries (the cache fill takes a second or two of the run)
    targets = sorted(rng.sample(range(2, 23), 2))
    for point in ["time", *targets]:
        if point == "time":
            delay = rng.uniform(0.3, 0.7) * seconds
            running = _kill_after(command(broken), delay)
            point = f"{delay:.1f} s"
        else:
            running = _kill_when(command(broken), lambda n=point: cached() >= n)
            point = f"{point} cache entries"
        entries = sorted((broken / "cache").rglob("*.pt")) if (broken / "cache").is_dir() else []
        for entry in entries:  # every crop cache entry present is whole
            _load(entry)
        assert not [p for p in (broken / "cache").rglob("*.tmp") if not p.name.startswith(".")] if entries else True
        if (broken / "splits.json").is_file():
            assert (broken / "splits.json").read_bytes() == (clean / "splits.json").read_bytes()
        trials.append((point, "running" if running else "ended", len(entries)))
    before = _stamps(broken / "cache", "**/*.pt") if (broken / "cache").is_dir() else {}
    _finish(command(broken))
    after = _stamps(broken / "cache", "**/*.pt")
    reused = sum(after.get(name) == stamp for name, stamp in before.items())
    assert reused == len(before)  # every entry written before a kill is reused as it is

    assert (broken / "splits.json").read_bytes() == (clean / "splits.json").read_bytes()
    expected = _stamps(clean / "cache", "**/*.pt")
    assert set(after) == set(expected) and len(expected) == 24
    for name in expected:  # byte-identical crops (the entries hold no path of the output folder)
        assert (broken / "cache" / name).read_bytes() == (clean / "cache" / name).read_bytes(), name
    assert (broken / "prepare" / "provenance.json").read_bytes() == (clean / "prepare" / "provenance.json").read_bytes()
    print(f"prepare kill trials (kill -9 point, uninterrupted {seconds:.1f} s; running; cache entries then):", trials,
          f"reused {reused} of {len(expected)} entries")


# ------------------------------------------------------------------------------------------------ train
TRAIN = ["data.classes=[0,1]", "~data.clinical.t_score", "data.split.n_folds=3", "debug=tiny",
         "model.arch=shufflenet_v2_x0_5", "trainer.max_epochs=3", "run=k"]
TRAIN_FILES = ("best.ckpt", "last.ckpt", "config.yaml", "metrics.json", "provenance.json",
               "logs/version_0/metrics.csv", "logs/version_0/hparams.yaml")


def _train_outputs_equal(a: Path, b: Path) -> list[str]:
    """Compare two finished train runs; return the files that are not byte-identical (tensors equal asserted)."""
    assert sorted(artifacts.read_marker(a)["files"]) == sorted(artifacts.read_marker(b)["files"])
    differ = []
    for name in ("best.ckpt", "last.ckpt"):
        first, second = (torch.load(f / name, map_location="cpu", weights_only=True) for f in (a, b))
        assert first["epoch"] == second["epoch"] and first["global_step"] == second["global_step"]
        for key, tensor in first["state_dict"].items():
            assert torch.equal(tensor, second["state_dict"][key]), f"{name}: {key}"
        for one, two in zip(first["optimizer_states"][0]["state"].values(),
                            second["optimizer_states"][0]["state"].values()):
            assert all(torch.equal(one[k], two[k]) for k in one), name
        if (a / name).read_bytes() != (b / name).read_bytes():
            differ.append(name)
    first, second = (json.loads((f / "metrics.json").read_text()) for f in (a, b))
    first.pop("train_seconds"), second.pop("train_seconds")
    assert first == second
    assert (a / "logs/version_0/metrics.csv").read_bytes() == (b / "logs/version_0/metrics.csv").read_bytes()
    return differ


@pytest.mark.slow
def test_train_killed_at_random_points_and_while_writing_checkpoints_reruns_to_the_uninterrupted_run(tmp_path):
    manifest = make_tiny_cohort(tmp_path / "cohort", n_patients=16)
    clean, broken = tmp_path / "clean", tmp_path / "broken"

    def command(out: Path, *extra: str) -> list[str]:
        return _command("train.py", out, manifest, [*TRAIN, *extra])

    seconds = _finish(command(clean))
    clean_run, run_dir = clean / "train" / "k", broken / "train" / "k"
    assert _check_folder(clean_run) and set(TRAIN_FILES) <= set(artifacts.read_marker(clean_run)["files"])

    trials = []
    # the n-th checkpoint file written: per epoch last.ckpt, then best.ckpt when the validation AUC improved
    # (Lightning runs checkpoint callbacks last); here 1 = last.ckpt of epoch 0 (none yet), 2 = best.ckpt of epoch
    # 0 (none yet), 4 = best.ckpt of epoch 1 (over epoch 0's)
    for n in (1, 2, 4):
        where = _killed_by_hook(command(broken), n)
        assert not _check_folder(run_dir)  # no marker: no reader takes the folder
        for name in ("best.ckpt", "last.ckpt"):
            if (run_dir / name).is_file():
                _load(run_dir / name)  # the previous version, whole
        assert artifacts.temporary_files(run_dir), "the kill left no half-written temporary file"
        trials.append((f"checkpoint write {n}", where.rsplit("/", 1)[-1]))
    rng = random.Random(5)
    for _ in range(2):
        delay = rng.uniform(0.3, 0.95) * seconds
        running = _kill_after(command(broken), delay)
        complete = _check_folder(run_dir)  # a marker (written just before the process ends) vouches for its files
        trials.append((f"{delay:.1f} s", "running" if running else "ended", "complete" if complete else "no marker"))
    _finish(command(broken))  # rerun from scratch: the earlier attempts' checkpoints and logs are cleared
    assert _check_folder(run_dir) and not artifacts.temporary_files(run_dir)
    differ = _train_outputs_equal(run_dir, clean_run)
    assert differ == []

    # resuming (ckpt_path=last) reuses the epochs a killed run finished
    where = _killed_by_hook(command(broken), 3)  # halfway through last.ckpt of epoch 1: epoch 0's stays whole
    trials.append(("checkpoint write 3, then ckpt_path=last", where.rsplit("/", 1)[-1]))
    assert torch.load(run_dir / "last.ckpt", map_location="cpu", weights_only=True)["epoch"] == 0
    _finish(command(broken, "ckpt_path=last"))
    assert _check_folder(run_dir)
    resumed = json.loads((run_dir / "metrics.json").read_text())
    assert resumed["epochs_completed"] == 3 and resumed["last_epoch"] == 2
    first, second = (torch.load(f / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]
                     for f in (run_dir, clean_run))
    resumed_equal = all(torch.equal(t, second[k]) for k, t in first.items())
    print(f"train kill trials (uninterrupted run {seconds:.1f} s):", trials, "files not byte-identical after the "
          f"rerun:", differ, "resumed run's final weights equal the uninterrupted run's:", resumed_equal)


# ------------------------------------------------------------------------------------------------ score
@pytest.mark.slow
def test_score_killed_at_random_points_gives_the_uninterrupted_predictions(tmp_path):
    from tests.stages.score_study import held_out_manifest, make_study

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run_dir = make_study(tmp_path / "study_folder")
    finally:
        torch.set_num_threads(previous)
    splits = json.loads((tmp_path / "study_folder" / "study" / "splits.json").read_text())
    manifest = tmp_path / "new" / "manifest.csv"
    held_out_manifest(tmp_path / "study_folder" / "cohort" / "manifest.csv", manifest, splits=splits,
                      cohorts=("train", "internal", "external"))
    clean, broken = tmp_path / "clean", tmp_path / "broken"

    def command(out: Path) -> list[str]:
        return [sys.executable, "-m", "radfuse.score", str(manifest), "--study", str(run_dir), "--out", str(out)]

    seconds = _finish(command(clean))
    assert _check_folder(clean)
    rng = random.Random(3)
    trials = []

    def count(pattern: str) -> int:
        return sum(p.is_file() for p in broken.glob(pattern))

    # a random time, then points of the work: a random number of ROIs' radiomics cached, the first deep batch
    # cached, and right after predictions.csv is written (before predictions.parquet and the marker)
    def written_since(name: str, since: float) -> bool:
        path = broken / name
        return path.is_file() and path.stat().st_mtime >= since

    n_radiomics = rng.randint(3, 20)
    points = [("time", None),
              (f"{n_radiomics} ROIs' radiomics cached", lambda: count("cache/radiomics/**/*") >= n_radiomics),
              ("first deep batch cached", lambda: count("cache/deep/**/*.parquet") >= 1),
              ("predictions.csv written", lambda: written_since("predictions.csv", started))]
    for point, ready in points:
        started = time.time()
        if ready is None:
            delay = rng.uniform(0.3, 0.7) * seconds
            running = _kill_after(command(broken), delay)
            point = f"{delay:.1f} s"
        else:
            running = _kill_when(command(broken), ready)
        complete = _check_folder(broken)
        if not complete and (broken / "predictions.csv").is_file():  # from a rerun that died before its marker
            _load(broken / "predictions.csv")
        trials.append((point, "running" if running else "ended", "complete" if complete else "no marker"))
    before = _stamps(broken / "cache", "**/*") if (broken / "cache").is_dir() else {}
    _finish(command(broken))
    assert _check_folder(broken) and not artifacts.temporary_files(broken)
    after = _stamps(broken / "cache", "**/*")
    reused = sum(after.get(name) == stamp for name, stamp in before.items())
    assert reused == len(before)  # every cached ROI and deep batch finished before a kill is reused

    assert sorted(artifacts.read_marker(broken)["files"]) == sorted(artifacts.read_marker(clean)["files"])
    for name in ("predictions.csv", "predictions.parquet", "provenance.json", "extract/rad/radiomics.parquet",
                 "extract/deep/deep_crossfit.parquet"):
        assert (broken / name).read_bytes() == (clean / name).read_bytes(), name
    print(f"score kill trials (kill -9 point, uninterrupted {seconds:.1f} s; running; marker):", trials,
          f"cache files reused {reused} of {len(after)}")
