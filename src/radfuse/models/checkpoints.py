"""Checkpoints whose epoch no validation label chose: `last.ckpt` is the true last epoch, written every epoch.

Lightning 2.6's `ModelCheckpoint(save_last=True, save_top_k=1, monitor=...)` writes `last.ckpt` only in the steps
where it also saves a new best, so `last.ckpt` held the best epoch's weights: the epoch chosen with the
validation labels. For a fold CNN of a cross-fit those are the labels of the very cases it later scores, and
their out-of-fold scores were optimistic (demo: validation AUC 0.852 at the chosen epochs vs 0.808 at the final
ones). `LastEpochCheckpoint` writes `last.ckpt` at the end of every training epoch (after that epoch's
validation), whatever the monitor says, atomically (a temporary file in the run folder, then a rename), so
`ckpt_path=last` resumes where training stopped and a kill never leaves half a checkpoint.

`checkpoint_epoch` and `final_epoch_of_run` let a reader check the rule: a scoring checkpoint must hold the run's
final epoch (docs/train.md, "Which labels each choice sees").
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.plugins import TorchCheckpointIO
from lightning.pytorch.callbacks import ModelCheckpoint

from radfuse.artifacts import LAST_CHECKPOINT, METRICS_FILE


class RunFolderCheckpoint(ModelCheckpoint):
    """Lightning's ModelCheckpoint whose saved state names files, never paths: Lightning stores `dirpath` and
    absolute `best_model_path`, `kth_best_model_path`, `last_model_path` and `best_k_models` keys in every
    checkpoint, which would carry the user's folder layout into a shared checkpoint. They are saved as file names
    (relative to the run folder) and made absolute again against this run's `dirpath` on resume."""

    PATH_KEYS = ("best_model_path", "kth_best_model_path", "last_model_path")

    def state_dict(self) -> dict[str, Any]:
        state = dict(super().state_dict())
        state.pop("dirpath", None)
        for key in self.PATH_KEYS:
            if state.get(key):
                state[key] = Path(state[key]).name
        state["best_k_models"] = {Path(k).name: v for k, v in (state.get("best_k_models") or {}).items()}
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state = dict(state_dict)
        if self.dirpath is not None and "dirpath" not in state:
            here = Path(self.dirpath)
            state["dirpath"] = self.dirpath
            for key in self.PATH_KEYS:
                if state.get(key):
                    state[key] = str(here / state[key])
            state["best_k_models"] = {str(here / k): v for k, v in (state.get("best_k_models") or {}).items()}
        super().load_state_dict(state)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, atomic on any file system: the bytes go to a hidden temporary file beside
    the target (`.<name>.<random>.tmp`), which is then renamed onto it.

    Lightning's own writer (`_atomic_save`) stages the file in the system temporary folder and moves it into
    place; when that folder is on another file system (a /tmp on tmpfs, a scratch disk) the move is a copy into
    the target itself, and a run killed during it leaves half a `best.ckpt`. The train stage passes this writer
    to the Trainer (`plugins=[AtomicCheckpointIO()]`)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        from radfuse.artifacts import atomic_path

        # a file object, not the path: torch.save names the archive inside after the file it is given, and the
        # random temporary name would make two identical runs' checkpoints differ in bytes
        with atomic_path(path) as tmp, open(tmp, "wb") as handle:
            torch.save(checkpoint, handle)


class LastEpochCheckpoint(L.Callback):
    """Save `<dirpath>/<filename>` at the end of every training epoch (the stage sets `dirpath` to the run folder)."""

    def __init__(self, dirpath: str | os.PathLike | None = None, filename: str = LAST_CHECKPOINT) -> None:
        self.dirpath = dirpath
        self.filename = filename

    @property
    def path(self) -> Path:
        if self.dirpath is None:
            raise ValueError("LastEpochCheckpoint needs a dirpath (the train stage passes the run folder)")
        return Path(self.dirpath) / self.filename

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.fast_dev_run or trainer.sanity_checking:
            return
        path = self.path
        tmp = path.with_name(f".{path.name}.tmp")
        trainer.save_checkpoint(str(tmp))  # collective: every rank calls it, rank 0 writes
        if trainer.is_global_zero:
            os.replace(tmp, path)
        trainer.strategy.barrier("LastEpochCheckpoint")


def checkpoint_epoch(path: str | os.PathLike) -> int | None:
    """The (0-based) epoch a Lightning checkpoint was saved in, None when it does not say."""
    state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    epoch = state.get("epoch")
    return None if epoch is None else int(epoch)


def final_epoch_of_run(run_dir: str | os.PathLike) -> int | None:
    """The last (0-based) epoch a finished train run trained, from its metrics.json; None if it did not finish."""
    metrics = Path(run_dir) / METRICS_FILE
    if not metrics.is_file():
        return None
    completed = json.loads(metrics.read_text(encoding="utf-8")).get("epochs_completed")
    return None if completed is None else int(completed) - 1


def validation_choice(checkpoint: str | os.PathLike, early_stopping: bool) -> str | None:
    """Why the validation labels of a train run chose this checkpoint's weights, or None when they did not.

    They did when the checkpoint is not the run's final epoch (best.ckpt, or an epoch kept by a monitor), when the
    run has no finished metrics.json to tell its final epoch, or when early stopping on the validation metric ended
    the run (then even the final epoch was chosen by those labels).
    """
    path = Path(checkpoint)
    final = final_epoch_of_run(path.parent)
    if final is None:
        return (f"{path.parent} has no metrics.json, so the train run did not finish (or is not a radfuse run) and "
                "its final epoch is unknown")
    epoch = checkpoint_epoch(path)
    if epoch != final:
        return (f"{path.name} holds epoch {epoch} of a run that trained to epoch {final}: an epoch picked by the "
                "validation metric")
    if early_stopping:
        return "the run used early stopping on the validation metric, which chose its number of epochs"
    return None
