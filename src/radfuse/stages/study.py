"""One study preset for every stage: `experiment=<name>` means the same study to prepare, train, extract and fuse.

A preset (`conf/experiment/<name>.yaml`, package `_global_`) holds plain keys that every stage reads (`data.*`,
`model.*`, `extract.*`, fuse's `blocks.*`, ...) and, under `study.groups.<stage>`, the config-group choices of each
stage (`backbone=radimagenet` for train, `radiomics=liu2025` for extract, `deep_features=crossfit` for fuse).
Hydra's own experiment pattern (`override /backbone: ...` in the preset's defaults list) cannot serve several
primary configs: a stage without a `backbone` group refuses the whole file. So the group choices are data, and
`with_study_groups` turns them into ordinary command-line overrides before Hydra composes: every entry script and
every test composes through it, so `python fuse.py experiment=wang2025` and `compose("fuse", with_study_groups(
"fuse", ["experiment=wang2025"]))` give the same config. A group the user names on the command line wins.

A study of your own (`python -m radfuse.init STUDY_DIR`) is a preset outside conf/: `STUDY_DIR/experiment/study
.yaml`, found by Hydra through `--config-dir STUDY_DIR` (a test: a `hydra.searchpath=[file://STUDY_DIR]` override)
and here through the same flag. Its `study.overrides.<stage>` lists plain overrides, for what a merge cannot say.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

from omegaconf import OmegaConf


def find_conf_dir() -> Path:
    """radfuse's own config folder: `radfuse/conf` in an installed wheel (pyproject.toml ships conf/ there), else
    the checkout's `conf/` beside `src/` (an editable install, or PYTHONPATH=src)."""
    package = Path(__file__).resolve().parents[1]
    candidates = (package / "conf", package.parents[1] / "conf")
    for folder in candidates:
        if (folder / "prepare.yaml").is_file():
            return folder
    raise FileNotFoundError(f"radfuse's config folder is in neither {candidates[0]} (an installed wheel) nor "
                            f"{candidates[1]} (a checkout): reinstall radfuse (pip install <wheel>, or pip install -e "
                            "<repository>)")


CONF_DIR = find_conf_dir()
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


def preset_path(name: str, conf_dir: Path = CONF_DIR, search_dirs: Sequence[Path] = ()) -> Path:
    """`experiment/<name>.yaml` in the first of `search_dirs` (a study's `--config-dir`) that has it, else in
    `conf_dir`."""
    for folder in [*search_dirs, conf_dir]:
        path = Path(folder) / "experiment" / f"{name}.yaml"
        if path.is_file():
            return path
    known = sorted({p.stem for folder in [*search_dirs, conf_dir] for p in (Path(folder) / "experiment").glob("*.yaml")})
    where = ", ".join(str(Path(f) / "experiment") for f in [*search_dirs, conf_dir])
    raise StudyPresetError(f"experiment={name}: there is no {name}.yaml in {where}; presets: {known} (a study of "
                           "your own: --config-dir STUDY_DIR experiment=study, written by python -m radfuse.init)")


def study_groups(stage: str, name: str, conf_dir: Path = CONF_DIR, search_dirs: Sequence[Path] = ()) -> dict[str, str]:
    """The group choices preset `name` makes for `stage` (empty for a stage it says nothing about)."""
    if stage not in STAGES:
        raise StudyPresetError(f"unknown stage {stage!r}: one of {STAGES}")
    path = preset_path(name, conf_dir, search_dirs)
    groups = OmegaConf.select(OmegaConf.load(path), f"study.groups.{stage}", default=None)
    if groups is None:
        return {}
    groups = OmegaConf.to_container(groups, resolve=False)
    if not isinstance(groups, dict) or not all(isinstance(v, str) for v in groups.values()):
        raise StudyPresetError(f"{path}: study.groups.{stage} must map group names to option names")
    return groups


def study_overrides(stage: str, name: str, conf_dir: Path = CONF_DIR, search_dirs: Sequence[Path] = ()) -> list[str]:
    """Plain overrides preset `name` gives `stage` under `study.overrides.<stage>` (what a merge cannot say, such as
    a deletion: `~feature_sets.fused+clinical` for a study without clinical columns)."""
    path = preset_path(name, conf_dir, search_dirs)
    items = OmegaConf.select(OmegaConf.load(path), f"study.overrides.{stage}", default=None)
    if items is None:
        return []
    items = OmegaConf.to_container(items, resolve=False)
    if not isinstance(items, list) or not all(isinstance(v, str) and ("=" in v or v.startswith("~")) for v in items):
        raise StudyPresetError(f"{path}: study.overrides.{stage} must be a list of overrides (key=value, ~key)")
    return items


def _key(item: str) -> str:
    return item.partition("=")[0].lstrip("+~").removeprefix("override ")


def search_dirs_of(overrides: Sequence[str]) -> list[Path]:
    """The folders of a `hydra.searchpath=[file://...]` override (how a test adds a study's folder)."""
    dirs = []
    for item in overrides:
        key, _, value = item.partition("=")
        if key.lstrip("+") == "hydra.searchpath":
            dirs += [Path(v.strip(" '\"").removeprefix("file://")) for v in value.strip("[]").split(",")
                     if v.strip(" '\"").startswith("file://")]
    return dirs


def with_study_groups(stage: str, overrides: Sequence[str], conf_dir: Path = CONF_DIR,
                      search_dirs: Sequence[Path] = ()) -> list[str]:
    """`overrides` plus the preset's group choices and plain overrides for `stage`, except those the user already
    names. The preset is looked up in `search_dirs` (and a `hydra.searchpath` override's folders) first."""
    overrides = list(overrides)
    name = preset_name(overrides)
    if name is None:
        return overrides
    dirs = [*search_dirs, *search_dirs_of(overrides)]
    named = {_key(item) for item in overrides if "=" in item or item.startswith("~")}
    extra = [f"{group}={choice}" for group, choice in study_groups(stage, name, conf_dir, dirs).items()
             if group not in named]
    extra += [item for item in study_overrides(stage, name, conf_dir, dirs) if _key(item) not in named]
    return overrides + extra


def config_dirs(argv: Sequence[str]) -> list[Path]:
    """The folders of Hydra's `--config-dir DIR` / `-cd DIR` / `--config-dir=DIR` flags."""
    dirs = []
    for i, arg in enumerate(argv):
        if arg in ("--config-dir", "-cd") and i + 1 < len(argv):
            dirs.append(Path(argv[i + 1]))
        elif arg.startswith("--config-dir="):
            dirs.append(Path(arg.partition("=")[2]))
    return dirs


def expand_argv(stage: str, conf_dir: Path = CONF_DIR) -> None:
    """Apply `with_study_groups` to this process's command line (entry scripts call it before hydra.main): the
    preset's group choices are appended as overrides."""
    given = [a for a in sys.argv[1:] if not a.startswith("-")]
    try:
        extra = with_study_groups(stage, given, conf_dir, config_dirs(sys.argv[1:]))[len(given):]
        # right after `experiment=...`: appended after a trailing flag (`--cfg job`) they would not parse
        at = next((i + 1 for i, a in enumerate(sys.argv) if i and preset_name([a]) is not None), len(sys.argv))
        sys.argv[at:at] = extra
    except StudyPresetError as error:
        print(f"[radfuse] error: {error}", file=sys.stderr, flush=True)
        sys.exit(2)
