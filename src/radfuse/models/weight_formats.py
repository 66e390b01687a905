"""Read a weights file and turn any supported layout into a flat state dict with radfuse's parameter names.

Layouts: plain torchvision state dicts; wrapped ones (`state_dict` / `model` / ... keys, `module.` / `model.` /
`backbone.` prefixes); RadImageNet's PyTorch release (an `nn.Sequential` of torchvision ResNet-50 children, so
`backbone.0.*` = conv1, `backbone.1.*` = bn1, `backbone.4..7.*` = layer1..layer4); MedicalNet's 3D ResNets
(`module.` prefix, a `conv_seg` segmentation head instead of `fc`); Megvii's ShuffleNet V1 checkpoints
(`first_conv`, `features.<i>.branch_main_1/2`, renamed and reordered by `radfuse.models.megvii_format`);
radfuse's own Lightning checkpoints.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import torch

StateDict = dict[str, torch.Tensor]

WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "net", "network")
PREFIXES = ("module.", "model.", "backbone.", "encoder.")
# Index of each torchvision ResNet child in `nn.Sequential(*list(resnet.children())[:-1])` (RadImageNet).
RADIMAGENET_CHILDREN = {"0": "conv1", "1": "bn1", "4": "layer1", "5": "layer2", "6": "layer3", "7": "layer4"}
LIGHTNING_MARKER = "pytorch-lightning_version"
FORMATS = ("auto", "torchvision", "radimagenet", "medicalnet", "megvii_v1", "lightning")


class WeightsError(ValueError):
    """A weights file that cannot be read or does not fit the backbone."""


def read_weights_file(path: str | Path) -> Any:
    """`torch.load(weights_only=True)`: a weights file may come from anywhere, so never unpickle code."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist: set model.weights=PATH to a local file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - re-raised with the file and the fix
        raise WeightsError(
            f"cannot read {path} as a PyTorch weights file with weights_only=True ({error}); save a plain "
            f"state dict (torch.save(model.state_dict(), PATH)) and point model.weights at it"
        ) from error


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def unwrap(obj: Any) -> StateDict:
    """Descend through wrapper dicts until a dict of tensors is reached."""
    while isinstance(obj, dict) and not _is_state_dict(obj):
        inner = next((obj[k] for k in WRAPPER_KEYS if isinstance(obj.get(k), dict)), None)
        if inner is None:
            break
        obj = inner
    if not isinstance(obj, dict):
        raise WeightsError(f"expected a state dict, found {type(obj).__name__}")
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise WeightsError(f"no tensors found in the weights file (top-level keys: {sorted(obj)[:10]})")
    return tensors


def strip_prefixes(state: StateDict) -> StateDict:
    """Drop wrapper prefixes (`module.` from DataParallel, `model.`/`backbone.` from wrappers), repeatedly."""
    changed = True
    while changed:
        changed = False
        for prefix in PREFIXES:
            if sum(k.startswith(prefix) for k in state) * 2 >= len(state):  # most keys carry it
                state = {k.removeprefix(prefix): v for k, v in state.items()}
                changed = True
    return state


def from_torchvision(obj: Any) -> StateDict:
    return strip_prefixes(unwrap(obj))


def from_radimagenet(obj: Any) -> StateDict:
    state = strip_prefixes(unwrap(obj))
    renamed = {}
    for key, value in state.items():
        head, _, rest = key.partition(".")
        renamed[f"{RADIMAGENET_CHILDREN.get(head, head)}.{rest}" if rest else key] = value
    return renamed


def from_medicalnet(obj: Any) -> StateDict:
    return {k: v for k, v in strip_prefixes(unwrap(obj)).items() if not k.startswith("conv_seg.")}


def from_megvii_v1(obj: Any) -> StateDict:
    from radfuse.models.megvii_format import from_megvii_state

    return from_megvii_state(strip_prefixes(unwrap(obj)))


def from_lightning(obj: Any) -> StateDict:
    state = unwrap(obj["state_dict"] if isinstance(obj, dict) and "state_dict" in obj else obj)
    # radfuse's LightningModule holds the network as `self.backbone`; other attributes (loss weights) are not weights
    return {k.removeprefix("backbone."): v for k, v in state.items() if k.startswith("backbone.")}


CONVERTERS: dict[str, Callable[[Any], StateDict]] = {
    "torchvision": from_torchvision,
    "radimagenet": from_radimagenet,
    "medicalnet": from_medicalnet,
    "megvii_v1": from_megvii_v1,
    "lightning": from_lightning,
}


def detect_format(obj: Any) -> str:
    """Guess the layout of a loaded weights object."""
    if isinstance(obj, dict) and LIGHTNING_MARKER in obj:
        return "lightning"
    state = strip_prefixes(unwrap(obj))
    if any(".branch_main_1." in k for k in state):
        return "megvii_v1"
    if any(k.partition(".")[0].isdigit() for k in state):
        return "radimagenet"
    conv1 = state.get("conv1.weight")
    if any(k.startswith("conv_seg.") for k in state) or (conv1 is not None and conv1.ndim == 5):
        return "medicalnet"
    return "torchvision"


def to_state_dict(obj: Any, weights_format: str = "auto") -> tuple[StateDict, str]:
    """Convert a loaded weights object to radfuse's names; returns (state dict, the format used)."""
    if weights_format not in FORMATS:
        raise WeightsError(f"unknown weights_format {weights_format!r}; choose one of {list(FORMATS)}")
    fmt = detect_format(obj) if weights_format == "auto" else weights_format
    return CONVERTERS[fmt](obj), fmt
