"""Run a radfuse script with a kill point inside checkpoint writing, for the kill trials (test_kill_rerun.py).

`python tests/stages/kill_hooks.py SCRIPT [ARGS ...]` runs SCRIPT as `python SCRIPT ARGS ...` would, except that
with RADFUSE_KILL_AT_CHECKPOINT=N the process kills itself with SIGKILL (no cleanup, no finally) halfway through
writing the bytes of its Nth checkpoint file (a `torch.save` to a path or file naming a `.ckpt`): what a `kill -9` or a
power cut in the middle of writing `last.ckpt` or `best.ckpt` leaves behind. Test code only; radfuse has no hook.
"""

from __future__ import annotations

import io
import os
import runpy
import signal
import sys

import torch

_save = torch.save
_count = 0


def _save_then_die(obj, f, *args, **kwargs):
    global _count
    name = os.fspath(f) if isinstance(f, (str, os.PathLike)) else str(getattr(f, "name", ""))
    if ".ckpt" in name:
        _count += 1
        if _count == int(os.environ["RADFUSE_KILL_AT_CHECKPOINT"]):
            buffer = io.BytesIO()
            _save(obj, buffer, *args, **kwargs)
            data = buffer.getvalue()
            handle = open(f, "wb") if isinstance(f, (str, os.PathLike)) else f
            handle.write(data[: len(data) // 2])
            handle.flush()
            os.fsync(handle.fileno())
            print(f"[kill_hooks] SIGKILL halfway through writing {name}", flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
    return _save(obj, f, *args, **kwargs)


if __name__ == "__main__":
    torch.save = _save_then_die
    sys.argv = sys.argv[1:]
    runpy.run_path(sys.argv[0], run_name="__main__")
