"""Grad-CAM (Selvaraju et al. 2017) for any radfuse backbone and named layer, 2D and 3D, plus overlay PNGs.

`grad_cam(model, images, layer)` returns one heat map per crop, at the crop's resolution, scaled to [0, 1].
Command line (writes `<run>/cam/<case_id>_<layer>.png`; 3D crops as three mid-slices):

    python -m radfuse.models.cam RUN_FOLDER --cases CASE [CASE ...] [--layer layer4] [--checkpoint best.ckpt]
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from radfuse.artifacts import BEST_CHECKPOINT
from radfuse.models.base import FeatureBackbone, global_pool


def _parts(model: nn.Module) -> tuple[FeatureBackbone, nn.Module | None]:
    """(backbone, classifier wrapper or None): a RadfuseClassifier normalises inputs before its backbone."""
    if isinstance(model, FeatureBackbone):
        return model, None
    return model.backbone, model


def grad_cam(model: nn.Module, images: torch.Tensor, layer: str | None = None,
             target: torch.Tensor | None = None) -> torch.Tensor:
    """Heat maps [B, *spatial] in [0, 1] for class `target` (default: the predicted class) at `layer`.

    `layer` defaults to the last stage. Weights are the spatially averaged gradients of the class score with
    respect to the layer's map; the map is their ReLU'd weighted sum, upsampled to the input size.
    """
    backbone, wrapper = _parts(model)
    layer = layer or backbone.stage_names[-1]
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            x = images if wrapper is None else (images - wrapper.input_mean) / wrapper.input_std
            final, fmap = backbone.stage_maps(x, keep=layer, stop_early=False)
            logits = backbone.fc(global_pool(final))
            target = logits.argmax(dim=1) if target is None else target.to(logits.device)
            score = logits.gather(1, target.view(-1, 1)).sum()
            (grads,) = torch.autograd.grad(score, fmap)
    finally:
        model.train(was_training)
    weights = grads.flatten(2).mean(-1)  # [B, C]
    cam = F.relu(torch.einsum("bc,bc...->b...", weights, fmap.detach())).unsqueeze(1)
    mode = "bilinear" if cam.ndim == 4 else "trilinear"
    cam = F.interpolate(cam, size=images.shape[2:], mode=mode, align_corners=False).squeeze(1)
    peak = cam.flatten(1).amax(dim=1).clamp_min(1e-12)
    return cam / peak.view(-1, *([1] * (cam.ndim - 1)))


def mid_slices(volume: np.ndarray) -> list[np.ndarray]:
    """Three orthogonal mid-slices of a [D, H, W] volume."""
    d, h, w = volume.shape
    return [volume[d // 2], volume[:, h // 2], volume[:, :, w // 2]]


def save_overlay(image: np.ndarray, heat: np.ndarray, path: str | Path, title: str = "") -> Path:
    """A grey crop (channel 0) with its heat map on top; 3D crops as three mid-slices."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from radfuse.artifacts import atomic_path

    grey = image[0] if image.ndim in (3, 4) else image
    panels = mid_slices(grey) if grey.ndim == 3 else [grey]
    heats = mid_slices(heat) if heat.ndim == 3 else [heat]
    fig = Figure(figsize=(3 * len(panels), 3))  # object API: no backend switch, nothing left in pyplot
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(panels), squeeze=False)
    for ax, panel, hot in zip(axes[0], panels, heats):
        ax.imshow(panel, cmap="gray")
        ax.imshow(hot, cmap="jet", alpha=0.4, vmin=0, vmax=1)
        ax.axis("off")
    fig.suptitle(title, fontsize=9)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
    return Path(path)


def overlays_for_run(run_dir: Path, cases: Sequence[str], layer: str | None, checkpoint: str,
                     out_dir: Path | None = None,
                     names: Mapping[str, tuple[str, str]] | None = None) -> list[Path]:
    """Overlay PNGs `<case>_<layer>.png` in `out_dir` (default `<run_dir>/cam`); `names` maps a case to its
    (title, file stem) instead, e.g. so a shared report shows no case id."""
    from radfuse.data.train_run import reopen_train_run
    from radfuse.models.module import load_classifier

    model = load_classifier(str(run_dir / checkpoint))
    layer = layer or model.backbone.stage_names[-1]
    batches = reopen_train_run(run_dir).datamodule(list(cases)).predict_dataloader()
    written = []
    for batch in batches:
        heat = grad_cam(model, batch["image"], layer)
        for image, hot, case in zip(batch["image"].numpy(), heat.numpy(), batch["case_id"]):
            title, stem = names[str(case)] if names else (f"{case} {layer}", f"{case}_{layer}")
            written.append(save_overlay(image, hot, Path(out_dir or run_dir / "cam") / f"{stem}.png", title))
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Grad-CAM overlay PNGs for chosen cases of a training run")
    parser.add_argument("run_dir", type=Path, help="a run folder <out>/train/<run>")
    parser.add_argument("--cases", nargs="+", required=True, help="case_id values of the manifest")
    parser.add_argument("--layer", default=None, help="layer1-layer4 (ResNet), stage2-stage4/conv5 (ShuffleNet)")
    parser.add_argument("--checkpoint", default=BEST_CHECKPOINT)
    args = parser.parse_args(argv)
    for path in overlays_for_run(args.run_dir, args.cases, args.layer, args.checkpoint):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
