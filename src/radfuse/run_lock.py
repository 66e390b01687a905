"""One run per run folder: a lock file `<run folder>/.lock` naming its holder.

Two runs writing into one folder at once would mix or corrupt each other's outputs (caches, tables, checkpoints).
A run takes the lock before it writes and gives it back when it ends, crash or not:

    with run_lock(out_dir):
        ...  # write outputs

The lock is created atomically (`O_CREAT | O_EXCL`: of two runs that start together exactly one gets it) and holds
the holder's pid, host, process start time and command. A second run on the folder fails with `RunFolderLocked`,
naming the holder. A lock left by a crash (`kill -9`) is stale when its pid is not alive on this host, or is alive
but is another process (a reused pid, told apart by the process start time); it is taken over safely: under a short
takeover guard (`.lock.takeover`, itself O_EXCL), the stale lock is removed only if it is still the one that was
found stale, so two runs that find the same stale lock cannot both take the folder. A lock held on another host
cannot be checked and is never taken over: the message says which file to delete once that run is gone.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
import uuid
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

LOCK_NAME = ".lock"
GUARD_SUFFIX = ".takeover"
UNWRITTEN_GRACE_S = 10.0  # an empty lock file younger than this is being written by its holder right now
ATTEMPTS = 20


class RunFolderLocked(RuntimeError):
    """Another run holds the run folder."""


@dataclass(frozen=True)
class Holder:
    pid: int
    host: str
    started: str             # ISO time the lock was taken
    command: str
    process_start: str | None  # the holder's start time as the kernel counts it (Linux), to tell a reused pid
    token: str               # identifies this lock among locks of the same pid

    @classmethod
    def me(cls) -> "Holder":
        return cls(os.getpid(), socket.gethostname(), datetime.now(timezone.utc).isoformat(timespec="seconds"),
                   " ".join(sys.argv)[:500], _process_start(os.getpid()), uuid.uuid4().hex)

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host}, started {self.started} ({self.command or 'no command'})"


@contextmanager
def run_lock(folder: str | Path) -> Iterator[Holder]:
    """Hold `<folder>/.lock` for the duration of the block (the folder is created if needed)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    me = Holder.me()
    acquire(path, me)
    try:
        yield me
    finally:
        release(path, me)


def acquire(path: Path, me: Holder) -> None:
    for _ in range(ATTEMPTS):
        try:
            handle = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            found, text = read_holder(path)
            if text is None:
                continue  # released between our try and our read: try again
            if _is_live(found, path):
                raise RunFolderLocked(_locked_message(path, found)) from None
            _break_stale(path, text)
            continue
        with os.fdopen(handle, "w") as stream:
            json.dump(asdict(me), stream)
            stream.flush()
            os.fsync(stream.fileno())
        return
    raise RunFolderLocked(f"{path}: could not take the run lock after {ATTEMPTS} tries (other runs keep taking it); "
                          "run again, or use another run folder")


def release(path: Path, me: Holder) -> None:
    """Remove the lock if it is still ours (never another run's)."""
    found, _ = read_holder(path)
    if found is not None and found.token == me.token:
        path.unlink(missing_ok=True)


def read_holder(path: Path) -> tuple[Holder | None, str | None]:
    """(holder, raw text) of a lock file; holder None if it cannot be parsed, text None if there is no file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None, None
    try:
        return Holder(**json.loads(text)), text
    except (ValueError, TypeError):
        return None, text


def _is_live(holder: Holder | None, path: Path) -> bool:
    if holder is None:  # empty or damaged: its writer may be writing it right now
        try:
            return time.time() - path.stat().st_mtime < UNWRITTEN_GRACE_S
        except FileNotFoundError:
            return False
    if holder.host != socket.gethostname():
        return True  # cannot check another machine's processes: never take it over
    if not _pid_alive(holder.pid):
        return False
    now = _process_start(holder.pid)
    return holder.process_start is None or now is None or now == holder.process_start


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, another user's
    return True


def _process_start(pid: int) -> str | None:
    """Field 22 of /proc/<pid>/stat (start time in clock ticks since boot); None where there is no /proc."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8")
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _break_stale(path: Path, stale_text: str) -> None:
    """Remove the stale lock, if it is still the stale one, under the takeover guard."""
    guard = path.with_name(path.name + GUARD_SUFFIX)
    try:
        handle = os.open(guard, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        _clear_abandoned_guard(guard)
        time.sleep(0.05)
        return
    try:
        os.write(handle, str(os.getpid()).encode())
        os.close(handle)
        _, now = read_holder(path)
        if now == stale_text:
            path.unlink(missing_ok=True)
    finally:
        guard.unlink(missing_ok=True)


def _clear_abandoned_guard(guard: Path) -> None:
    """A guard is held for milliseconds; one older than the grace period was left by a crash."""
    try:
        if time.time() - guard.stat().st_mtime > UNWRITTEN_GRACE_S:
            guard.unlink(missing_ok=True)
    except FileNotFoundError:
        pass


def _locked_message(path: Path, holder: Holder | None) -> str:
    who = holder.describe() if holder else "a run that is writing its lock right now"
    remote = holder is not None and holder.host != socket.gethostname()
    gone = (f"; that run is on another machine, so radfuse cannot check it: if it is gone, delete {path}"
            if remote else "")
    return (f"run folder {path.parent} is in use by another run: {who}. Wait for it to finish, or give this run "
            f"another folder (paths.out / run=...){gone}")
