"""The run-folder lock: one holder at a time, a clear message naming it, stale locks taken over exactly once."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import pytest

from radfuse.run_lock import LOCK_NAME, UNWRITTEN_GRACE_S, Holder, RunFolderLocked, read_holder, run_lock

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}"}

# A contender: waits until a shared start time, tries the lock, holds it a while, prints what happened.
CONTENDER = """
import sys, time
from radfuse.run_lock import RunFolderLocked, run_lock
folder, start, hold = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
time.sleep(max(0.0, start - time.time()))
try:
    with run_lock(folder):
        print("won", flush=True)
        time.sleep(hold)
except RunFolderLocked as err:
    print("locked:", err, flush=True)
"""


def _contenders(folder: Path, n: int, hold: float = 1.5) -> list[str]:
    start = time.time() + 1.5  # every process is up (imports done) before the start
    procs = [subprocess.Popen([sys.executable, "-c", CONTENDER, str(folder), str(start), str(hold)], env=ENV,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(n)]
    outs = [p.communicate(timeout=60) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in outs]
    return [out.strip() for out, _ in outs]


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _write_lock(folder: Path, **changes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    holder = replace(Holder.me(), **changes)
    (folder / LOCK_NAME).write_text(json.dumps(asdict(holder)))
    return folder / LOCK_NAME


def test_the_lock_names_its_holder_and_goes_when_the_run_ends(tmp_path):
    with run_lock(tmp_path / "run") as me:
        holder, _ = read_holder(tmp_path / "run" / LOCK_NAME)
        assert holder == me and holder.pid == os.getpid() and holder.host == socket.gethostname()
        assert holder.started and holder.command
    assert not (tmp_path / "run" / LOCK_NAME).exists()
    with pytest.raises(ZeroDivisionError):
        with run_lock(tmp_path / "run"):
            1 / 0
    assert not (tmp_path / "run" / LOCK_NAME).exists()  # given back on an error too


def test_a_second_run_fails_with_a_message_naming_the_holder(tmp_path):
    folder = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", CONTENDER, str(folder), "0", "30"], env=ENV,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "won"
        with pytest.raises(RunFolderLocked) as err:
            with run_lock(folder):
                pass
        assert f"pid {holder.pid} on {socket.gethostname()}" in str(err.value)
        assert str(folder) in str(err.value) and "another folder" in str(err.value)
    finally:
        holder.kill()
        holder.wait()
    # killed (-9): its lock is left behind, stale, and the next run takes it over
    assert (folder / LOCK_NAME).exists()
    with run_lock(folder) as me:
        assert read_holder(folder / LOCK_NAME)[0] == me


@pytest.mark.parametrize("stale", ["dead pid", "reused pid", "unwritten and old"])
def test_a_stale_lock_is_taken_over(tmp_path, stale):
    folder = tmp_path / "run"
    if stale == "dead pid":
        lock = _write_lock(folder, pid=_dead_pid())
    elif stale == "reused pid":  # our own pid, alive, but started at another time: not the run that took the lock
        lock = _write_lock(folder, process_start="1")
    else:
        folder.mkdir()
        lock = folder / LOCK_NAME
        lock.write_text("")
        old = time.time() - 2 * UNWRITTEN_GRACE_S
        os.utime(lock, (old, old))
    with run_lock(folder) as me:
        assert read_holder(lock)[0] == me
    assert not lock.exists()


def test_a_live_or_unverifiable_lock_is_never_taken(tmp_path):
    _write_lock(tmp_path / "young", pid=_dead_pid())
    (tmp_path / "young" / LOCK_NAME).write_text("")  # just created by a run that is writing it now
    _write_lock(tmp_path / "remote", host="another-host.example")
    with pytest.raises(RunFolderLocked, match="writing its lock"):
        with run_lock(tmp_path / "young"):
            pass
    with pytest.raises(RunFolderLocked, match="another machine.*delete"):
        with run_lock(tmp_path / "remote"):
            pass
    assert read_holder(tmp_path / "remote" / LOCK_NAME)[0].host == "another-host.example"


def test_two_runs_started_together_one_wins(tmp_path):
    outcomes = _contenders(tmp_path / "run", 2)
    assert sorted(o.split(":")[0] for o in outcomes) == ["locked", "won"], outcomes
    assert not (tmp_path / "run" / LOCK_NAME).exists()


def test_runs_racing_for_one_stale_lock_one_wins(tmp_path):
    _write_lock(tmp_path / "run", pid=_dead_pid())
    outcomes = _contenders(tmp_path / "run", 4)
    assert sorted(o.split(":")[0] for o in outcomes) == ["locked", "locked", "locked", "won"], outcomes
    assert not (tmp_path / "run" / LOCK_NAME).exists()


def test_a_takeover_removes_only_the_lock_it_found_stale(tmp_path):
    """Two runs find the same stale lock; the first takes the folder; the second's takeover must not remove the
    first's new lock (and nobody breaks a lock while another run holds the takeover guard)."""
    from radfuse.run_lock import GUARD_SUFFIX, _break_stale

    lock = _write_lock(tmp_path / "run", pid=_dead_pid())
    stale_text = lock.read_text()
    with run_lock(tmp_path / "run") as first:  # took the stale lock over
        _break_stale(lock, stale_text)           # the slower run, acting on what it read before
        assert read_holder(lock)[0] == first
    lock = _write_lock(tmp_path / "run", pid=_dead_pid())
    guard = lock.with_name(lock.name + GUARD_SUFFIX)
    guard.write_text("12345")  # another run is taking it over right now
    _break_stale(lock, lock.read_text())
    assert lock.exists() and guard.exists()


@pytest.mark.parametrize("script, stage", [("extract.py", "extract"), ("fuse.py", "fuse")])
def test_a_stage_run_on_a_folder_another_run_holds_stops_before_writing(tmp_path, script, stage):
    """Two runs on one output folder: the second stage run stops with exit code 2 naming the holder, and writes
    nothing (the lock is taken before the manifest is even read, so a bogus one is never reached)."""
    folder = tmp_path / "out" / stage / "default"
    holder = subprocess.Popen([sys.executable, "-c", CONTENDER, str(folder), "0", "120"], env=ENV,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "won"
        done = subprocess.run([sys.executable, script, f"paths.out={tmp_path / 'out'}",
                               f"data.manifest={tmp_path / 'no_manifest.csv'}"], cwd=ROOT, env=ENV,
                              capture_output=True, text=True, encoding="utf-8", errors="replace", timeout=300)
    finally:
        holder.kill()
        holder.wait()
    assert done.returncode == 2, done.stderr[-2000:]
    assert f"run folder {folder} is in use by another run: pid {holder.pid}" in done.stderr
    assert [p.name for p in folder.iterdir()] == [LOCK_NAME]  # the holder's (stale now), nothing of the second run
