"""The LightningModule: a registry backbone fine-tuned with cross-entropy, two learning rates and metrics.

Parameter groups: the head (`fc`) at the optimiser's rate, the backbone at `backbone_lr_mult` times it. The
learning rate follows a per-step schedule (linear warm-up, cosine annealing); during the first
`freeze_backbone_epochs` epochs the backbone's rate is zero (a frozen warm-up that stays DDP-safe because no
parameter changes `requires_grad`). Metrics: loss, accuracy and macro one-vs-rest AUC on train and val;
torchmetrics syncs them across DDP ranks.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import lightning as L
import torch
import torch.nn.functional as F
from torch.optim.lr_scheduler import LambdaLR
from torchmetrics.classification import MulticlassAccuracy, MulticlassAUROC

from radfuse.models.registry import create_backbone
from radfuse.models.schedules import WarmupConstant

Schedule = Callable[[int, int], float]
MONITOR = "val/auc"


def balanced_class_weights(counts: Sequence[int]) -> list[float]:
    """n / (k * n_c), sklearn's `class_weight="balanced"`; an absent class gets weight 0 rather than inf."""
    total, k = float(sum(counts)), len(counts)
    return [total / (k * c) if c > 0 else 0.0 for c in counts]


def resolve_class_weights(class_weights: str | Sequence[float] | None, class_counts: Sequence[int] | None,
                          num_classes: int) -> list[float]:
    if class_weights is None or class_weights == "none":
        return [1.0] * num_classes
    if class_weights == "balanced":
        if class_counts is None:
            raise ValueError("class_weights='balanced' needs the training split's class_counts")
        return balanced_class_weights(class_counts)
    weights = [float(w) for w in class_weights]
    if len(weights) != num_classes:
        raise ValueError(f"class_weights has {len(weights)} values but there are {num_classes} classes")
    return weights


class RadfuseClassifier(L.LightningModule):
    """Fine-tunes `create_backbone(arch, ...)`; hyper-parameters (no paths) are saved in every checkpoint."""

    def __init__(  # noqa: PLR0913 - one keyword per config key
        self,
        arch: str = "resnet50",
        spatial_dims: int = 2,
        in_channels: int = 3,
        num_classes: int = 3,
        classes: list[str] | None = None,
        optimizer: Callable[..., torch.optim.Optimizer] | None = None,
        scheduler: Schedule | None = None,
        class_weights: str | list[float] | None = "balanced",
        class_counts: list[int] | None = None,
        label_smoothing: float = 0.0,
        backbone_lr_mult: float = 1.0,
        freeze_backbone_epochs: int = 0,
        input_mean: list[float] | None = None,
        input_std: list[float] | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["optimizer", "scheduler"])
        self.backbone = create_backbone(arch, spatial_dims, in_channels, num_classes)
        self.optimizer_factory = optimizer or (lambda params: torch.optim.Adam(params, lr=1e-3))
        self.schedule = scheduler or WarmupConstant()
        weights = resolve_class_weights(class_weights, class_counts, num_classes)
        self.register_buffer("class_weights", torch.tensor(weights, dtype=torch.float32))
        shape = (1, -1) + (1,) * spatial_dims
        mean = torch.tensor(input_mean or [0.0] * in_channels).view(shape)
        std = torch.tensor(input_std or [1.0] * in_channels).view(shape)
        self.register_buffer("input_mean", mean, persistent=False)
        self.register_buffer("input_std", std, persistent=False)
        self.metrics = torch.nn.ModuleDict({
            f"{split}_{name}": metric
            for split in ("train", "val")
            for name, metric in (("acc", MulticlassAccuracy(num_classes, average="micro")),
                                 ("auc", MulticlassAUROC(num_classes, average="macro")))
        })

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone((x - self.input_mean) / self.input_std)

    def loss(self, logits: torch.Tensor, labels: torch.Tensor, training: bool) -> torch.Tensor:
        """Class-weighted cross-entropy; label smoothing on training batches only (validation loss stays true)."""
        smoothing = self.hparams.label_smoothing if training else 0.0
        return F.cross_entropy(logits, labels, weight=self.class_weights, label_smoothing=smoothing)

    def _step(self, batch: dict[str, Any], split: str) -> torch.Tensor:
        images, labels = batch["image"], batch["label"]
        logits = self(images)
        loss = self.loss(logits, labels, training=split == "train")
        probs = logits.detach().float().softmax(dim=1)
        on_step = split == "train"
        self.log(f"{split}/loss", loss, on_step=on_step, on_epoch=True, prog_bar=True,
                 batch_size=len(labels), sync_dist=True)
        for name in ("acc", "auc"):
            metric = self.metrics[f"{split}_{name}"]
            metric.update(probs, labels)
            self.log(f"{split}/{name}", metric, on_step=False, on_epoch=True, prog_bar=name == "auc")
        return loss

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        return self._step(batch, "val")

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        return self(batch["image"]).softmax(dim=1)

    def parameter_groups(self) -> list[dict[str, Any]]:
        head = self.backbone.head_parameter_names()
        named = list(self.backbone.named_parameters())
        return [
            {"name": "head", "params": [p for n, p in named if n in head]},
            {"name": "backbone", "params": [p for n, p in named if n not in head]},
        ]

    def _total_steps(self) -> int:
        total = self.trainer.estimated_stepping_batches if self._trainer is not None else 1
        return int(total) if math.isfinite(total) and total > 0 else 1

    def configure_optimizers(self) -> dict[str, Any]:
        optimizer = self.optimizer_factory(self.parameter_groups())
        optimizer.param_groups[1]["lr"] *= self.hparams.backbone_lr_mult
        total = self._total_steps()
        max_epochs = self.trainer.max_epochs if self._trainer is not None else None
        steps_per_epoch = total // max_epochs if max_epochs and max_epochs > 0 else total
        frozen_steps = self.hparams.freeze_backbone_epochs * steps_per_epoch

        def head_factor(step: int) -> float:
            return self.schedule(step, total)

        def backbone_factor(step: int) -> float:
            return 0.0 if step < frozen_steps else self.schedule(step, total)

        scheduler = LambdaLR(optimizer, [head_factor, backbone_factor])
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def load_classifier(checkpoint: str, map_location: str = "cpu") -> RadfuseClassifier:
    """Rebuild a trained classifier (backbone included) from a radfuse checkpoint."""
    return RadfuseClassifier.load_from_checkpoint(checkpoint, map_location=map_location, weights_only=True)
