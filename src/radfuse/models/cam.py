"""Grad-CAM (Selvaraju et al. 2017) for any radfuse backbone and named layer, 2D and 3D, plus overlay PNGs.

`grad_cam(model, images, layer)` returns one heat map per crop, at the crop's resolution, scaled to [0, 1].
`crossfit_cams` maps each case with the CNN(s) that scored it under the cross-fit rule (radfuse.data.splits'
`scoring_folds`), `single_cams` with one CNN; both give `radfuse.evaluate.gradcam.CamPanel`s for the report.
Command line (writes `<run>/cam/<case_id>_<layer>.png`, 3D crops as three mid-slices, and `<run>/cam/provenance.json`
with the sha256 of the checkpoint, the run's config.yaml, the manifest and splits.json it read; only from a finished
train run, whose COMPLETE.json vouches for the checkpoint):

    python -m radfuse.models.cam RUN_FOLDER --cases CASE [CASE ...] [--layer layer4] [--checkpoint best.ckpt]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from radfuse.artifacts import BEST_CHECKPOINT
from radfuse.data.splits import scoring_folds
from radfuse.evaluate.gradcam import CamPanel, cam_figure
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


def save_overlay(image: np.ndarray, heat: np.ndarray, path: str | Path, title: str = "") -> Path:
    """A grey crop (channel 0) with its heat map on top and a colour bar, as a PNG; 3D crops as three
    mid-slices."""
    from radfuse.artifacts import atomic_path

    with atomic_path(path) as tmp:
        cam_figure(image, heat, title).savefig(tmp, format="png", dpi=100, bbox_inches="tight")
    return Path(path)


def _centred_logits(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        logits = model(images)
    return logits - logits.mean(dim=1, keepdim=True)


def crossfit_cams(models: Mapping[int, nn.Module], batches: Iterable[Mapping], fold_of_case: Mapping[str, float],
                  names: Mapping[int, str], classes: Sequence[str], layer: str | None = None,
                  block: str | None = None) -> list[CamPanel]:
    """Grad-CAM of the CNN(s) that scored each case under the cross-fit rule (radfuse.extract.crossfit): a training
    case of fold k gets the map of fold CNN k (trained without fold k, whose out-of-fold score the model used);
    every other case the mean of the K fold CNNs' maps, as its deep score is the mean of theirs.

    models: fold k -> the CNN trained without fold k; fold_of_case: case_id -> CV fold, NaN (or absent) outside
    the training cohort; names: fold k -> how to name CNN k in a caption ("train run cv0, last.ckpt"). The class
    mapped is the one the scoring CNN(s) favour: the argmax of their (mean) centred logits, the deep block's score.
    """
    folds = sorted(int(k) for k in models)
    layer = layer or models[folds[0]].backbone.stage_names[-1]
    panels = []
    for batch in batches:
        images = batch["image"]
        logits = {k: _centred_logits(models[k], images) for k in folds}
        for i, case in enumerate(str(c) for c in batch["case_id"]):
            used = scoring_folds(fold_of_case.get(case), folds, case)
            target = torch.stack([logits[k][i] for k in used]).mean(0).argmax().view(1)
            heat = torch.stack([grad_cam(models[k], images[i:i + 1], layer, target)[0] for k in used]).mean(0)
            panels.append(CamPanel(case, images[i].numpy(), heat.numpy(), _scored_by(used, folds, names),
                                   str(classes[int(target)]), layer, block))
    return panels


def _scored_by(used: list[int], folds: list[int], names: Mapping[int, str]) -> str:
    if len(used) == 1 and len(folds) > 1:
        k = used[0]
        return (f"fold-{k} CNN ({names[k]}), trained without this case's CV fold: the CNN whose out-of-fold "
                "score the model used")
    listed = "; ".join(f"fold {k}: {names[k]}" for k in used)
    return (f"mean of the Grad-CAMs of the {len(used)} fold CNNs ({listed}), each scaled to [0, 1]: a case "
            "outside the training folds gets the mean of their scores")


def single_cams(model: nn.Module, batches: Iterable[Mapping], name: str, classes: Sequence[str],
                layer: str | None = None, block: str | None = None) -> list[CamPanel]:
    """Grad-CAM of one CNN for every case of `batches` (its predicted class); `name` says which CNN and why it."""
    layer = layer or model.backbone.stage_names[-1]
    panels = []
    for batch in batches:
        targets = _centred_logits(model, batch["image"]).argmax(dim=1)
        heat = grad_cam(model, batch["image"], layer, targets)
        for image, hot, case, target in zip(batch["image"].numpy(), heat.numpy(), batch["case_id"], targets):
            panels.append(CamPanel(str(case), image, hot, name, str(classes[int(target)]), layer, block))
    return panels


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


def cam_inputs(run_dir: Path, checkpoint: str) -> dict[str, Path]:
    """What overlays of a train run are made from, for provenance.json: the checkpoint, the run's config.yaml, and
    the manifest and splits.json its datamodule is reopened from."""
    from radfuse.artifacts import CONFIG_FILE
    from radfuse.data.train_run import reopen_train_run

    run = reopen_train_run(run_dir)
    return {"checkpoint": Path(run_dir) / checkpoint, "train_config": Path(run_dir) / CONFIG_FILE,
            "manifest": run.manifest_path(), "splits": run.splits_file()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Grad-CAM overlay PNGs for chosen cases of a training run")
    parser.add_argument("run_dir", type=Path, help="a run folder <out>/train/<run>")
    parser.add_argument("--cases", nargs="+", required=True, help="case_id values of the manifest")
    parser.add_argument("--layer", default=None, help="layer1-layer4 (ResNet), stage2-stage4/conv5 (ShuffleNet)")
    parser.add_argument("--checkpoint", default=BEST_CHECKPOINT)
    parser.add_argument("--out", type=Path, default=None, help="folder for the PNGs (default RUN_FOLDER/cam)")
    args = parser.parse_args(argv)
    from radfuse import artifacts

    out_dir = args.out or args.run_dir / "cam"
    try:
        artifacts.require_complete(args.run_dir, "train", files=(args.checkpoint,))
        inputs = cam_inputs(args.run_dir, args.checkpoint)
        written = overlays_for_run(args.run_dir, args.cases, args.layer, args.checkpoint, out_dir=out_dir)
    except (artifacts.RunIncomplete, FileNotFoundError, KeyError, ValueError) as err:
        print(f"[radfuse] error: {err}", file=sys.stderr)
        return 2
    artifacts.write_provenance(out_dir, inputs)
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
