"""One line per epoch on stdout, so a run without a progress bar (logs, CI, `make demo`) says how it is going."""

from __future__ import annotations

import time

import lightning as L


class EpochSummary(L.Callback):
    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = time.perf_counter()

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        metrics = trainer.callback_metrics
        shown = " ".join(f"{k}={float(metrics[k]):.3f}" for k in ("train/loss", "val/loss", "val/auc") if k in metrics)
        seconds = time.perf_counter() - getattr(self, "_start", time.perf_counter())
        print(f"[radfuse] epoch {trainer.current_epoch + 1}/{trainer.max_epochs} {shown} ({seconds:.1f} s)",
              flush=True)
