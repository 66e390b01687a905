"""Megvii's ShuffleNet V1 checkpoints (github.com/megvii-model/ShuffleNet-Series) onto radfuse's ShuffleNetV1.

Megvii's is the reference implementation and the only public ImageNet release of V1 (0.5x / 1.0x / 1.5x / 2.0x
with g = 3 or 8). Its layout: `first_conv.0/1`, `features.<i>.branch_main_1.{0,1,3,4}` (1x1 GConv, BN, depthwise
conv, BN), `features.<i>.branch_main_2.{0,1}` (1x1 GConv, BN), `classifier.0` (no bias), saved as
`{'state_dict': ...}` with DataParallel's `module.` prefix.

Renaming is not enough: Megvii shuffles after the depthwise conv with the permutation (C/g, g) -> (g, C/g), the
inverse of the paper's (g, C/g) -> (C/g, g) that radfuse applies before it. Where both send as many channels from
each group to each group, a within-group reordering of the bottleneck channels (first GConv's outputs, second
GConv's inputs) with a matching reordering of the depthwise conv gives exactly the same network. That holds for
every g = 3 release (0.5x, 1.0x, 2.0x; 1.5x has a 24-channel stem that radfuse's width rule does not make, so its
stem is a shape mismatch) but not for g = 8, whose checkpoints are refused with the reason.
"""

from __future__ import annotations

import numpy as np
import torch

from radfuse.models.shufflenet_v1 import STAGE_NAMES, STAGE_REPEATS
from radfuse.models.weight_formats import WeightsError

StateDict = dict[str, torch.Tensor]
MARKER = ".branch_main_1."
BN_KEYS = ("weight", "bias", "running_mean", "running_var")


def is_megvii_v1(state: StateDict) -> bool:
    return any(MARKER in key for key in state)


def _paper_order(channels: int, groups: int) -> np.ndarray:
    """Index form of radfuse's shuffle: out[j] = in[order[j]]."""
    return np.arange(channels).reshape(groups, channels // groups).T.ravel()


def _megvii_order(channels: int, groups: int) -> np.ndarray:
    return np.arange(channels).reshape(channels // groups, groups).T.ravel()


def bottleneck_reorder(channels: int, groups: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(q, r, t): radfuse's bottleneck channel c is Megvii's q[c] after GConv1, r[j] after the shuffle (depthwise
    conv and its BN), and radfuse's GConv2 input j is Megvii's GConv2 input t[j]; q and t stay within groups."""
    n = channels // groups
    paper_inv, megvii_inv = np.argsort(_paper_order(channels, groups)), np.argsort(_megvii_order(channels, groups))
    q = np.empty(channels, dtype=np.int64)
    for a in range(groups):  # bottleneck group a: pair the channels each shuffle sends to the same group k
        block = np.arange(a * n, (a + 1) * n)
        for k in range(groups):
            ours, theirs = block[paper_inv[block] // n == k], block[megvii_inv[block] // n == k]
            if len(ours) != len(theirs):
                raise WeightsError(
                    f"Megvii's channel shuffle of {channels} channels in {groups} groups sends a different number of "
                    f"channels between groups than the paper's (groups of {n} channels), so no reordering "
                    f"makes the same network: this checkpoint cannot be loaded exactly; use Megvii's g=3 release "
                    f"(arch shufflenet_v1_g3 / shufflenet_v1_g3_x0_5) or train from scratch")
            q[ours] = theirs
    r = q[_paper_order(channels, groups)]
    t = megvii_inv[r]
    return q, r, t


def _unit_names() -> list[str]:
    return [f"{stage}.{i}" for stage, repeats in zip(STAGE_NAMES, STAGE_REPEATS) for i in range(repeats)]


def _copy_bn(out: StateDict, state: StateDict, src: str, dst: str, index: np.ndarray | None = None) -> None:
    for key in BN_KEYS:
        if f"{src}.{key}" in state:
            value = state[f"{src}.{key}"]
            out[f"{dst}.{key}"] = value if index is None else value[torch.as_tensor(index)]
    if f"{src}.num_batches_tracked" in state:
        out[f"{dst}.num_batches_tracked"] = state[f"{src}.num_batches_tracked"]


def from_megvii_state(state: StateDict) -> StateDict:
    """Rename and reorder a (prefix-stripped) Megvii V1 state dict into radfuse's ShuffleNetV1 names."""
    out: StateDict = {}
    if "first_conv.0.weight" in state:
        out["conv1.0.weight"] = state["first_conv.0.weight"]
    _copy_bn(out, state, "first_conv.1", "conv1.1")
    if "classifier.0.weight" in state:
        out["fc.weight"] = state["classifier.0.weight"]
    for i, unit in enumerate(_unit_names()):
        src = f"features.{i}"
        if f"{src}.branch_main_1.0.weight" not in state:
            continue
        g1, dw, g2 = (state[f"{src}.branch_main_{k}"] for k in ("1.0.weight", "1.3.weight", "2.0.weight"))
        channels, n = g1.shape[0], g2.shape[1]
        q, r, t = bottleneck_reorder(channels, channels // n)
        out[f"{unit}.gconv1.weight"] = g1[torch.as_tensor(q)]
        _copy_bn(out, state, f"{src}.branch_main_1.1", f"{unit}.bn1", q)
        out[f"{unit}.dwconv.weight"] = dw[torch.as_tensor(r)]
        _copy_bn(out, state, f"{src}.branch_main_1.4", f"{unit}.bn2", r)
        out_per_group, groups = g2.shape[0] // (channels // n), channels // n
        columns = torch.as_tensor(t.reshape(groups, n) - (np.arange(groups) * n)[:, None])  # in-group inputs
        out[f"{unit}.gconv2.weight"] = torch.cat(
            [g2[k * out_per_group:(k + 1) * out_per_group][:, columns[k]] for k in range(groups)])
        _copy_bn(out, state, f"{src}.branch_main_2.1", f"{unit}.bn3")
    return out
