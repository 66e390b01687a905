"""The LightningModule: class weights, parameter groups, schedules, frozen warm-up, metrics, training."""

from __future__ import annotations

import math
from functools import partial

import lightning as L
import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score
from sklearn.utils.class_weight import compute_class_weight

from radfuse.models.module import RadfuseClassifier, balanced_class_weights, resolve_class_weights
from radfuse.models.schedules import WarmupConstant, WarmupCosine
from tests.models.tiny_data import TinyDataModule


def _trainer(tmp_path, **kwargs) -> L.Trainer:
    defaults = dict(logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                    default_root_dir=tmp_path, accelerator="cpu")
    return L.Trainer(**{**defaults, **kwargs})


def test_balanced_class_weights_match_sklearn():
    labels = np.array([0] * 10 + [1] * 5 + [2] * 3)
    expected = compute_class_weight("balanced", classes=np.arange(3), y=labels)
    np.testing.assert_allclose(balanced_class_weights([10, 5, 3]), expected)
    assert resolve_class_weights(None, [10, 5, 3], 3) == [1.0, 1.0, 1.0]
    with pytest.raises(ValueError, match="3 classes"):
        resolve_class_weights([1.0, 2.0], None, 3)


def test_warmup_cosine_closed_form():
    schedule = WarmupCosine(warmup_steps=10, min_lr_ratio=0.1)
    assert schedule(0, 110) == pytest.approx(0.1)           # first warm-up step: 1/10 of the rate
    assert schedule(9, 110) == pytest.approx(1.0)           # last warm-up step: full rate
    assert schedule(10, 110) == pytest.approx(1.0)          # cosine starts at its top
    assert schedule(60, 110) == pytest.approx(0.55)         # half way: min + (1 - min) / 2
    assert schedule(110, 110) == pytest.approx(0.1)         # the end: min_lr_ratio
    assert schedule(35, 110) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi / 4)))
    assert WarmupCosine(warmup_fraction=0.1)(4, 100) == pytest.approx(0.5)
    assert WarmupConstant(warmup_steps=4)(1, 100) == pytest.approx(0.5) and WarmupConstant()(50, 100) == 1.0


def test_parameter_groups_and_backbone_learning_rate():
    model = RadfuseClassifier("resnet18", 2, 1, 3, class_counts=[2, 2, 2], backbone_lr_mult=0.1,
                              optimizer=partial(torch.optim.SGD, lr=0.5))
    config = model.configure_optimizers()
    head, backbone = config["optimizer"].param_groups
    assert {id(p) for p in head["params"]} == {id(model.backbone.fc.weight), id(model.backbone.fc.bias)}
    n_params = len(list(model.backbone.parameters()))
    assert len(backbone["params"]) == n_params - 2
    assert head["lr"] == pytest.approx(0.5) and backbone["lr"] == pytest.approx(0.05)
    assert config["lr_scheduler"]["interval"] == "step"


def test_learning_rate_follows_the_schedule_per_step(tmp_path):
    data = TinyDataModule(n_train=24, n_val=6, batch_size=4)  # 6 steps per epoch
    seen = []

    class Record(L.Callback):
        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            seen.append([group["lr"] for group in trainer.optimizers[0].param_groups])

    model = RadfuseClassifier("shufflenet_v2_x0_5", 2, 1, 3, class_counts=data.class_counts,
                              optimizer=partial(torch.optim.SGD, lr=1.0), freeze_backbone_epochs=1,
                              scheduler=WarmupCosine(warmup_steps=3, min_lr_ratio=0.0))
    _trainer(tmp_path, max_epochs=2, limit_val_batches=0, callbacks=[Record()]).fit(model, data)
    total = 12
    expected_head = [WarmupCosine(warmup_steps=3)(s, total) for s in range(total)]
    np.testing.assert_allclose([lr[0] for lr in seen], expected_head, atol=1e-7)
    # frozen warm-up: the backbone's rate is 0 for the whole first epoch, then follows the schedule
    np.testing.assert_allclose([lr[1] for lr in seen], [0.0] * 6 + expected_head[6:], atol=1e-7)


def test_frozen_backbone_does_not_move_but_the_head_does(tmp_path):
    data = TinyDataModule(n_train=16, n_val=4, batch_size=8)
    model = RadfuseClassifier("resnet18", 2, 1, 3, class_counts=data.class_counts, freeze_backbone_epochs=1,
                              optimizer=partial(torch.optim.AdamW, lr=1e-2, weight_decay=0.1))
    before = {k: v.clone() for k, v in model.backbone.named_parameters()}
    _trainer(tmp_path, max_epochs=1, limit_val_batches=0).fit(model, data)
    after = dict(model.backbone.named_parameters())
    moved = {k for k in before if not torch.equal(before[k], after[k])}
    assert moved == {"fc.weight", "fc.bias"}


def test_validation_auc_is_sklearn_macro_one_vs_rest(tmp_path):
    data = TinyDataModule(n_train=24, n_val=18, batch_size=6)
    model = RadfuseClassifier("shufflenet_v2_x0_5", 2, 1, 3, class_counts=data.class_counts)
    trainer = _trainer(tmp_path, max_epochs=1)
    trainer.fit(model, data)
    model.eval()
    with torch.no_grad():
        probs = torch.cat([model(b["image"]).softmax(1) for b in data.val_dataloader()]).numpy()
    expected = roc_auc_score(data.val_set.labels.numpy(), probs, multi_class="ovr", average="macro")
    assert trainer.callback_metrics["val/auc"].item() == pytest.approx(expected, abs=1e-5)
    accuracy = (probs.argmax(1) == data.val_set.labels.numpy()).mean()
    assert trainer.callback_metrics["val/acc"].item() == pytest.approx(accuracy, abs=1e-6)


def test_class_weights_and_label_smoothing_enter_the_loss():
    model = RadfuseClassifier("shufflenet_v2_x0_5", 2, 1, 2, class_weights=[1.0, 3.0], label_smoothing=0.2)
    logits, labels = torch.tensor([[2.0, -1.0], [0.5, 0.3]]), torch.tensor([1, 0])
    # hand-written weighted, smoothed cross-entropy (PyTorch's definition): weights normalise the batch mean
    logp = logits.log_softmax(1)
    w = torch.tensor([1.0, 3.0])
    target = torch.full_like(logp, 0.2 / 2)
    target[torch.arange(2), labels] += 0.8
    per_sample = -(target * logp * w).sum(1)
    expected = per_sample.sum() / w[labels].sum()
    torch.testing.assert_close(model.loss(logits, labels, training=True), expected)
    plain = -(logp[torch.arange(2), labels] * w[labels]).sum() / w[labels].sum()  # no smoothing in validation
    torch.testing.assert_close(model.loss(logits, labels, training=False), plain)


@pytest.mark.parametrize("arch,spatial_dims", [("resnet18", 2), ("resnet18", 3), ("shufflenet_v2_x0_5", 2),
                                               ("shufflenet_v2_x0_5", 3)])
def test_fast_dev_run_trains(tmp_path, arch, spatial_dims):
    data = TinyDataModule(spatial_dims=spatial_dims, size=32 if spatial_dims == 2 else 16, n_train=8, n_val=4,
                          batch_size=4)
    model = RadfuseClassifier(arch, spatial_dims, 1, 3, class_counts=data.class_counts)
    before = model.backbone.fc.weight.clone()
    trainer = _trainer(tmp_path, fast_dev_run=True)
    trainer.fit(model, data)
    assert not torch.equal(before, model.backbone.fc.weight)
    assert torch.isfinite(trainer.callback_metrics["train/loss"])
