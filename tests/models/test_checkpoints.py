"""last.ckpt is the true last epoch, whatever the validation metric did (issue 11, defect 1).

The train stage's own callbacks (conf/callbacks/default.yaml, built by stages.train.build_callbacks) are fitted on
a toy module whose validation AUC falls every epoch: the best epoch is the first, the last epoch is the last. With
Lightning's `save_last=True` + `save_top_k=1`, last.ckpt was only rewritten when a new best was saved, so it held
epoch 0 here.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from hydra import compose, initialize_config_dir
from torch.utils.data import DataLoader, TensorDataset

from radfuse.models.checkpoints import checkpoint_epoch
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
