"""One study preset for every stage: `experiment=<name>` means the same study to prepare, train, extract and fuse.

A preset (`conf/experiment/<name>.yaml`, package `_global_`) holds plain keys that every stage reads (`data.*`,
`model.*`, `extract.*`, fuse's `blocks.*`, ...) and, under `study.groups.<stage>`, the config-group choices of each
stage (`backbone=radimagenet` for train, `radiomics=liu2025` for extract, `deep_features=crossfit` for fuse).
Hydra's own experiment pattern (`override /backbone: ...` in the preset's defaults list) cannot serve several
primary configs: a stage without a `backbone` group refuses the whole file. So the group choices are data, and
`with_study_groups` turns them into ordinary command-line overrides before Hydra composes: every entry script and
every test composes through it, so `python fuse.py experiment=wang2025` and `compose("fuse", with_study_groups(
"fuse", ["experiment=wang2025"]))` give the same config. A group the user names on the command line wins.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

from omegaconf import OmegaConf

CONF_DIR = Path(__file__).resolve().parents[3] / "conf"
STAGES = ("prepare", "train", "extract", "fuse")


class StudyPresetError(ValueError):
    """An unknown preset name, or a preset whose `study.groups` is malformed."""


def preset_name(overrides: Sequence[str]) -> str | None:
    """The value of `experiment=` (or `+experiment=`) among the overrides; None when absent or null."""
    for item in overrides:
        key, sep, value = item.partition("=")
        if sep and key.lstrip("+") == "experiment":
            return None if value in ("", "null") else value
    return None


def study_groups(stage: str, name: str, conf_dir: Path = CONF_DIR) -> dict[str, str]:
    """The group choices preset `name` makes for `stage` (empty for a stage it says nothing about)."""
    if stage not in STAGES:
        raise StudyPresetError(f"unknown stage {stage!r}: one of {STAGES}")
    path = conf_dir / "experiment" / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in (conf_dir / "experiment").glob("*.yaml"))
        raise StudyPresetError(f"experiment={name}: there is no {path}; presets: {known}")
    groups = OmegaConf.select(OmegaConf.load(path), f"study.groups.{stage}", default=None)
    if groups is None:
        return {}
    groups = OmegaConf.to_container(groups, resolve=False)
    if not isinstance(groups, dict) or not all(isinstance(v, str) for v in groups.values()):
        raise StudyPresetError(f"{path}: study.groups.{stage} must map group names to option names")
    return groups


def with_study_groups(stage: str, overrides: Sequence[str], conf_dir: Path = CONF_DIR) -> list[str]:
    """`overrides` plus the preset's group choices for `stage`, except those the user already names."""
    overrides = list(overrides)
    name = preset_name(overrides)
    if name is None:
        return overrides
    named = {item.partition("=")[0].lstrip("+~").removeprefix("override ") for item in overrides if "=" in item}
    extra = [f"{group}={choice}" for group, choice in study_groups(stage, name, conf_dir).items()
             if group not in named]
    return overrides + extra


def expand_argv(stage: str, conf_dir: Path = CONF_DIR) -> None:
    """Apply `with_study_groups` to this process's command line (entry scripts call it before hydra.main): the
    preset's group choices are appended as overrides."""
    given = [a for a in sys.argv[1:] if not a.startswith("-")]
    try:
        sys.argv.extend(with_study_groups(stage, given, conf_dir)[len(given):])
    except StudyPresetError as error:
        print(f"[radfuse] error: {error}", file=sys.stderr, flush=True)
        sys.exit(2)
