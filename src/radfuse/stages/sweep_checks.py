"""Hydra callback of train.py: a sweep must not start two backbones from one weights file.

Each pretrained backbone (`conf/backbone/*.yaml`) names its own file (`backbone.weights`, which `model.weights`
defaults to), so `-m backbone=imagenet,radimagenet` gives each job its own weights. A single `model.weights=` on
the command line overrides that for every job (scratch included): with two or more backbones in the sweep they
would all start from that one file, so the sweep is refused before any job runs. Each job also records the weights
file it resolved to in its sweep folder, and a job is refused when another pretrained backbone of the same sweep
already used that file (e.g. two backbones' files linked to one download).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

BACKBONE_GROUP = "backbone"
WEIGHTS_KEY = "model.weights"
RECORD_FILE = "backbone_weights.json"


class SameWeightsRefused(ValueError):
    """Two pretrained backbones of one sweep would start from the same weights file."""


def swept_values(overrides: list[str], key: str) -> list[str] | None:
    """The values `key` takes in a list of command-line overrides (one value, or each of a sweep); None if absent."""
    for override in OverridesParser.create().parse_overrides(overrides):
        if override.key_or_group == key:
            if override.is_sweep_override():
                return [str(v) for v in override.sweep_string_iterator()]
            return [str(override.value())]
    return None


def check_sweep_overrides(overrides: list[str], pretrained: dict[str, bool]) -> None:
    """Refuse one `model.weights` for a sweep over two or more backbones (one of them pretrained): a command-line
    value applies to every job, so each would start from that file, even `scratch`."""
    backbones = sorted(set(swept_values(overrides, BACKBONE_GROUP) or []))
    weights = swept_values(overrides, WEIGHTS_KEY)
    trained = [b for b in backbones if pretrained.get(b, b != "scratch")]
    if len(backbones) >= 2 and trained and weights is not None and len(set(weights)) == 1:
        raise SameWeightsRefused(
            f"this sweep trains the backbones {backbones} and sets one {WEIGHTS_KEY}={weights[0]} for all of them, "
            f"so every job would start from that same file (a command-line {WEIGHTS_KEY} overrides each backbone's "
            f"own, scratch included). Drop {WEIGHTS_KEY}=: each pretrained backbone then reads "
            "its own file, backbone.weights (default ${RADFUSE_WEIGHTS_DIR:-weights}/<backbone>_<arch>.<ext>, "
            "e.g. weights/imagenet_resnet50.pth, weights/radimagenet_resnet50.pt; README, 'Pretrained weights'), "
            "or run one train.py per backbone with its own model.weights.")


def record_job_weights(record: Path, backbone: str, weights: str) -> None:
    """Add this job's (backbone, resolved weights file) to the sweep's record; refuse a file another backbone used."""
    resolved = str(Path(weights).resolve())
    used = json.loads(record.read_text(encoding="utf-8")) if record.is_file() else {}
    others = sorted(b for b, path in used.items() if path == resolved and b != backbone)
    if others:
        raise SameWeightsRefused(
            f"backbone={backbone} would start from {resolved}, the file backbone(s) {others} of this sweep started "
            "from: give each pretrained backbone its own weights file (backbone.weights, README 'Pretrained weights')")
    used[backbone] = resolved
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps(used, indent=2, sort_keys=True), encoding="utf-8")


def pretrained_backbones(config: DictConfig) -> dict[str, bool]:
    """backbone option -> its `backbone.pretrained`, read from the `backbone` group of the config sources."""
    found: dict[str, bool] = {}
    for source in OmegaConf.select(config, "hydra.runtime.config_sources", default=[]) or []:
        if source.get("schema") != "file":
            continue
        for path in sorted((Path(source.path) / BACKBONE_GROUP).glob("*.yaml")):
            found.setdefault(path.stem, bool(OmegaConf.select(OmegaConf.load(path), "backbone.pretrained")))
    return found


class SameWeightsCheck(Callback):
    """Registered in conf/train.yaml (hydra.callbacks); errors end the run with exit status 2 and the message."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        overrides = list(OmegaConf.select(config, "hydra.overrides.task", default=[]) or [])
        params = OmegaConf.select(config, "hydra.sweeper.params", default=None) or {}
        overrides += [f"{k}={v}" for k, v in params.items() if not any(o.split("=")[0].lstrip("+~") == k
                                                                         for o in overrides)]
        _exit_on_refusal(check_sweep_overrides, overrides, pretrained_backbones(config))

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        hydra = OmegaConf.select(config, "hydra")
        if hydra is None or hydra.mode != RunMode.MULTIRUN or not config.get("backbone"):
            return
        weights = OmegaConf.select(config, WEIGHTS_KEY)
        if not config.backbone.get("pretrained") or not weights:
            return
        _exit_on_refusal(record_job_weights, Path(hydra.sweep.dir) / RECORD_FILE, str(config.backbone.name),
                         str(weights))


def _exit_on_refusal(check, *args) -> None:
    try:
        check(*args)
    except SameWeightsRefused as err:
        print(f"[radfuse] error: {err}", file=sys.stderr, flush=True)
        sys.exit(2)
