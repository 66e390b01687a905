"""last.ckpt is the true last epoch, whatever the validation metric did (issue 11, defect 1).

The train stage's own callbacks (conf/callbacks/default.yaml, built by stages.train.build_callbacks) are fitted on
a toy module whose validation AUC falls every epoch: the best epoch is the first, the last epoch is the last. With
Lightning's `save_last=True` + `save_top_k=1`, last.ckpt was only rewritten when a new best was saved, so it held
epoch 0 here.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import lightning as L
import pytest
import torch
from hydra import compose, initialize_config_dir
from torch.utils.data import DataLoader, TensorDataset

from radfuse.models.checkpoints import AtomicCheckpointIO, checkpoint_epoch
from radfuse.stages.train import build_callbacks

CONF = str(Path(__file__).resolve().parents[2] / "conf")


class FallingAuc(L.LightningModule):
    """A linear model whose logged val/auc is 0.9, 0.8, 0.7 ... (best at epoch 0)."""

    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return torch.nn.functional.mse_loss(self.layer(x).squeeze(1), y)

    def validation_step(self, batch, batch_idx):
        self.log("val/auc", 0.9 - 0.1 * self.current_epoch, on_epoch=True)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _loader():
    x = torch.randn(8, 2)
    return DataLoader(TensorDataset(x, x.sum(1)), batch_size=4)


def _fit(run_dir: Path, max_epochs: int, ckpt_path: str | None = None) -> L.Trainer:
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        cfg = compose("train", overrides=["callbacks=default"])
    callbacks = [c for c in build_callbacks(cfg, run_dir) if not isinstance(c, L.pytorch.callbacks.LearningRateMonitor)]
    trainer = L.Trainer(max_epochs=max_epochs, callbacks=callbacks, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, accelerator="cpu", default_root_dir=str(run_dir))
    trainer.fit(FallingAuc(), _loader(), _loader(), ckpt_path=ckpt_path)
    return trainer


def test_last_checkpoint_holds_the_last_epoch_not_the_best(tmp_path):
    _fit(tmp_path, max_epochs=4)
    assert checkpoint_epoch(tmp_path / "best.ckpt") == 0
    assert checkpoint_epoch(tmp_path / "last.ckpt") == 3
    assert not list(tmp_path.glob(".*.tmp"))  # written through a temporary file, renamed


def test_resume_from_last_continues_after_the_last_epoch(tmp_path):
    _fit(tmp_path, max_epochs=3)
    trainer = _fit(tmp_path, max_epochs=5, ckpt_path=str(tmp_path / "last.ckpt"))
    assert trainer.global_step == 5 * 2  # 2 batches per epoch: epochs 3 and 4 were added, none repeated
    assert checkpoint_epoch(tmp_path / "last.ckpt") == 4


def _other_file_system_than(folder: Path) -> Path | None:
    for candidate in (Path("/dev/shm"), Path("/run/user")):
        if candidate.is_dir() and os.access(candidate, os.W_OK) and candidate.stat().st_dev != folder.stat().st_dev:
            return candidate
    return None


def test_a_checkpoint_write_killed_midway_leaves_the_previous_checkpoint_whole(tmp_path, monkeypatch):
    """With the system temporary folder on another file system, Lightning's own writer moves the finished file
    into place by copying it into the target: a kill during that copy left half a best.ckpt. The stage's writer
    (AtomicCheckpointIO) writes beside the target and renames, so the previous checkpoint stays whole."""
    other = _other_file_system_than(tmp_path)
    if other is None:
        pytest.skip("no second file system to put the temporary folder on")
    scratch = Path(tempfile.mkdtemp(dir=other))
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    target = tmp_path / "best.ckpt"
    writer = AtomicCheckpointIO()
    writer.save_checkpoint({"epoch": 0, "weights": torch.zeros(1000)}, target)

    def killed_during_copy(src, dst, *args, **kwargs):  # what a kill -9 halfway through shutil.move leaves
        data = Path(src).read_bytes()
        Path(dst).write_bytes(data[: len(data) // 2])
        raise KeyboardInterrupt("killed")

    def killed_before_rename(*args, **kwargs):
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(shutil, "move", killed_during_copy)
    monkeypatch.setattr(os, "replace", killed_before_rename)
    try:
        with pytest.raises(KeyboardInterrupt):
            writer.save_checkpoint({"epoch": 1, "weights": torch.ones(1000)}, target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    state = torch.load(target, weights_only=True)
    assert state["epoch"] == 0 and torch.equal(state["weights"], torch.zeros(1000))
    assert [p.name for p in tmp_path.iterdir()] == ["best.ckpt"]  # the temporary file is gone too


def test_the_train_stage_writes_checkpoints_atomically(tmp_path):
    from radfuse.stages.train import build_trainer

    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        cfg = compose("train", overrides=["trainer.enable_progress_bar=false"])
    trainer = build_trainer(cfg, tmp_path, loggers=[])
    assert isinstance(trainer.strategy.checkpoint_io, AtomicCheckpointIO)
