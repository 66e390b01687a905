"""The shell commands README.md and docs/*.md show, and the checks that they run as written.

Collected: every logical line of a ```bash / ```sh block (backslash continuations joined, `# comments` dropped) and
every inline code span of the prose that starts a command (`python ...`, `.venv/bin/python ...`, `make ...`,
`radfuse ...`). Checked without running anything heavy:
- Hydra entry points (train.py, extract.py, fuse.py, python -m radfuse.stages.prepare): composed with exactly the
  overrides written, after the study-preset expansion every entry script applies (radfuse.stages.study); `-m`
  sweeps are expanded into their jobs as Hydra's basic sweeper does (the config's `hydra.sweeper.params` first),
  and train sweeps pass train.py's same-weights check;
- argparse CLIs (radfuse.data.build, .validate, .demo, .init, .evaluate, .predict, .models.cam, `radfuse
  score|export|predict`): their own parser parses the arguments (the command itself does not run);
- `make` commands: the target and every `VAR=` exist in the Makefile; the recipes of the study targets are run by
  /bin/sh with a `python` that only records its arguments, and each recorded stage command is composed;
- `python -c CODE`: executed.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import json
import os
import re
import shlex
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONF = ROOT / "conf"
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHELL_FENCES = {"bash", "sh", "shell", "console"}
COMMAND_SPAN = re.compile(r"^(?:\.venv/bin/)?(?:python3?|make|radfuse)\s")
PYTHONS = {"python", "python3", ".venv/bin/python"}
HYDRA_SCRIPTS = {"train.py": "train", "extract.py": "extract", "fuse.py": "fuse"}
HYDRA_MODULES = {"radfuse.stages.prepare": "prepare"}
ARGPARSE_MODULES = {"radfuse.data.build", "radfuse.data.validate", "radfuse.data.demo", "radfuse.init",
                    "radfuse.evaluate", "radfuse.predict", "radfuse.score", "radfuse.export", "radfuse.models.cam"}
# A synopsis's placeholders, as a reader fills them in (after `[optional]` brackets are opened and the first of
# each `a|b` choice is taken): typed arguments need a value of their type.
PLACEHOLDERS = {"<source>": "folder", "N": "8", "S": "0", "P": "1"}


@dataclass(frozen=True)
class DocCommand:
    page: str          # relative to the repository root
    line: int          # where the command starts
    section: str       # the `## ` heading it is under
    text: str          # as written: continuations joined, whitespace collapsed, comment dropped
    variables: tuple = field(default=(), compare=False)  # shell variables set earlier in its block (NAME, value)

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"


def strip_comment(line: str) -> str:
    """The line without its `# comment` (a `#` after whitespace, outside quotes)."""
    quote = None
    for i, char in enumerate(line):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip()
    return line.rstrip()


def _assignments(line: str) -> list[tuple[str, str]] | None:
    """`OUT=/data/x; M=/data/m.csv` -> [(OUT, ...), (M, ...)]; None when the line is not only assignments."""
    parts = [p.strip() for p in line.split(";") if p.strip()]
    found = [re.fullmatch(r"([A-Z_][A-Z0-9_]*)=(\S*)", p) for p in parts]
    return [(m.group(1), m.group(2)) for m in found] if parts and all(found) else None


def collect(pages=PAGES) -> list[DocCommand]:
    commands = []
    for page in pages:
        rel = str(page.relative_to(ROOT))
        lines = page.read_text(encoding="utf-8").splitlines()
        section, fence, prose = "", None, []
        block: list[tuple[int, str]] = []
        for number, raw in enumerate(lines, 1):
            if raw.startswith("```"):
                if fence is None:
                    fence, block = raw[3:].strip(), []
                else:
                    if fence in SHELL_FENCES:
                        commands += _block_commands(rel, section, block)
                    fence = None
                prose.append((number, "", section))
                continue
            if fence is not None:
                block.append((number, raw))
                continue
            if raw.startswith("## "):
                section = raw[3:].strip()
            prose.append((number, raw, section))
        commands += _span_commands(rel, prose)
    return commands


def _block_commands(page: str, section: str, block: list[tuple[int, str]]) -> list[DocCommand]:
    commands, variables, start, pending = [], [], None, ""
    for number, raw in block:
        start = number if not pending else start
        if raw.rstrip().endswith("\\"):
            pending += raw.rstrip()[:-1] + " "
            continue
        text = " ".join(strip_comment(pending + raw).split())
        pending = ""
        if not text:
            continue
        assigned = _assignments(text)
        if assigned is not None:
            variables += assigned
            continue
        commands.append(DocCommand(page, start, section, text, tuple(variables)))
    return commands


def _span_commands(page: str, prose: list[tuple[int, str, str]]) -> list[DocCommand]:
    text = "\n".join(line for _, line, _ in prose)
    starts = [0]
    for _, line, _ in prose:
        starts.append(starts[-1] + len(line) + 1)
    commands = []
    for match in re.finditer(r"`([^`]+)`", text):
        span = " ".join(match.group(1).split())
        if COMMAND_SPAN.match(span):
            index = max(i for i, s in enumerate(starts) if s <= match.start())
            number, _, section = prose[index]
            commands.append(DocCommand(page, number, section, span))
    return commands


# ---------------------------------------------------------------------------------------------------- argv
def argv_of(command: DocCommand) -> list[str]:
    """The command's argv as the shell gives it: its block's variables substituted, quoting undone; a synopsis's
    `[optional]` parts opened, the first of each `a|b` taken, placeholders filled, `...` dropped."""
    text = command.text
    for name, value in command.variables:
        text = re.sub(rf"\$(?:{name}\b|\{{{name}\}})", value, text)
    text = re.sub(r"\[(-[^\[\]]*)\]", lambda m: re.sub(r"\b(\w+)(?:\|\w+)+", r"\1", m.group(1)), text)
    return [PLACEHOLDERS.get(token, token) for token in shlex.split(text) if token != "..."]


def _synopsis_only(arg: str) -> bool:
    """A synopsis's optional tail (`[key=value ...]`), not an argument."""
    return arg.startswith("[") or arg.endswith("]") or arg == "..."


def kind(argv: list[str]) -> tuple[str, str, list[str]] | None:
    """(kind, target, args): ("hydra", stage, args), ("argparse", module, args), ("make", "", args), ("python-c",
    code, []); None for a command no check knows."""
    program, args = argv[0], argv[1:]
    if program == "make":
        return "make", "", args
    if program == "radfuse":
        return "argparse", "radfuse.score:cli", args
    if program not in PYTHONS or not args:
        return None
    if args[0] in HYDRA_SCRIPTS:
        return "hydra", HYDRA_SCRIPTS[args[0]], args[1:]
    if args[0] == "-m" and len(args) > 1:
        if args[1] in HYDRA_MODULES:
            return "hydra", HYDRA_MODULES[args[1]], args[2:]
        if args[1] == "radfuse.data.validate" and "--config-dir" in args:  # the study's pre-flight: Hydra's way
            return "study-preflight", args[1], [a for a in args[2:] if not _synopsis_only(a)]
        if args[1] in ARGPARSE_MODULES:
            return "argparse", args[1], args[2:]
    if args[0] == "-c" and len(args) == 2:
        return "python-c", args[1], []
    return None


# ---------------------------------------------------------------------------------------------------- hydra
@dataclass
class HydraCall:
    stage: str
    multirun: bool
    config_dirs: list[Path]
    overrides: list[str]


def hydra_call(stage: str, args: list[str], study_dirs: dict[str, Path] | None = None) -> HydraCall:
    """Split an entry script's arguments into Hydra's flags and the overrides; `--config-dir NAME` is looked up in
    `study_dirs` (a folder a test wrote) when given."""
    multirun, dirs, overrides, i = False, [], [], 0
    while i < len(args):
        arg = args[i]
        if arg in ("-m", "--multirun"):
            multirun = True
        elif arg in ("--config-dir", "-cd"):
            i += 1
            dirs.append((study_dirs or {}).get(args[i], Path(args[i])))
        elif arg == "--cfg":
            i += 1  # prints the config instead of running: composing is all it does
        elif arg.startswith("-"):
            raise ValueError(f"{stage}: flag {arg} is not one the documented-commands check knows")
        else:
            overrides.append(arg)
        i += 1
    return HydraCall(stage, multirun, dirs, overrides)


def compose_jobs(call: HydraCall) -> list:
    """Every job's composed and resolved config (one for a single run, one per sweep job for `-m`), as the entry
    script composes it: preset groups appended (radfuse.stages.study.with_study_groups), a `--config-dir` on the
    search path, train sweeps through the same-weights check. Raises on anything Hydra would refuse."""
    from hydra import compose, initialize_config_dir
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf

    from radfuse.stages.study import with_study_groups
    from radfuse.stages.sweep_checks import check_sweep_overrides, pretrained_backbones

    overrides = with_study_groups(call.stage, call.overrides, CONF, call.config_dirs)
    if call.config_dirs:
        overrides.append("hydra.searchpath=[" + ",".join(f"file://{d}" for d in call.config_dirs) + "]")
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        jobs = [overrides]
        if call.multirun:
            parser = OverridesParser.create()
            fixed = [o.input_line for o in parser.parse_overrides(overrides) if not o.is_sweep_override()]
            first = compose(call.stage, overrides=fixed, return_hydra_config=True)
            params = OmegaConf.select(first, "hydra.sweeper.params", default=None)
            params = OmegaConf.to_container(params) if params is not None else {}
            swept = [f"{k}={v}" for k, v in params.items()] + overrides
            parsed = parser.parse_overrides(swept)
            jobs = [list(job) for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]
            if call.stage == "train":
                named = [o for o in call.overrides]
                named += [f"{k}={v}" for k, v in params.items() if not any(o.split("=")[0].lstrip("+~") == k
                                                                             for o in named)]
                check_sweep_overrides(named, pretrained_backbones(first) or _backbones_pretrained())
        configs = []
        for job in jobs:
            cfg = compose(call.stage, overrides=job, return_hydra_config=True)
            with contextlib.suppress(Exception):
                OmegaConf.set_struct(cfg, False)
            cfg.pop("hydra")
            OmegaConf.resolve(cfg)
            configs.append(cfg)
    return configs


def _backbones_pretrained() -> dict[str, bool]:
    from omegaconf import OmegaConf

    return {p.stem: bool(OmegaConf.select(OmegaConf.load(p), "backbone.pretrained"))
            for p in sorted((CONF / "backbone").glob("*.yaml"))}


# ---------------------------------------------------------------------------------------------------- argparse
class Parsed(Exception):
    """Raised by the patched parse_args once a CLI's own parser has parsed its arguments."""

    def __init__(self, namespace: argparse.Namespace):
        super().__init__(namespace)
        self.namespace = namespace


def parse_with_cli(module: str, args: list[str]) -> argparse.Namespace:
    """Hand `args` to the CLI's main(); its parser parses them and the command stops there (argparse's own exit 2
    with its message on a bad argument becomes a ValueError)."""
    name, _, function = module.partition(":")
    imported = importlib.import_module(name)
    if not hasattr(imported, function or "main"):
        imported = importlib.import_module(f"{name}.__main__")
    original = argparse.ArgumentParser.parse_args

    def parse_then_stop(self, args=None, namespace=None):
        raise Parsed(original(self, args, namespace))

    argparse.ArgumentParser.parse_args = parse_then_stop
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            returned = getattr(imported, function or "main")(list(args))
    except Parsed as parsed:
        return parsed.namespace
    except SystemExit as exit_:
        raise ValueError(f"{module} {shlex.join(args)}: exit {exit_.code}: {stderr.getvalue().strip()}") from None
    finally:
        argparse.ArgumentParser.parse_args = original
    raise ValueError(f"{module} {shlex.join(args)} returned {returned!r} without parsing: {stderr.getvalue()}")


# ---------------------------------------------------------------------------------------------------- make
@dataclass
class Makefile:
    variables: dict[str, str]     # name -> raw value (`?=`, `:=`, `=`)
    exported: list[str]
    recipes: dict[str, list[str]]  # target -> logical recipe lines (continuations kept, leading tab removed)
    defaults: list[str] = field(default_factory=list)  # set with `?=`: the environment's value wins, as in make

    @classmethod
    def read(cls, path: Path = ROOT / "Makefile") -> "Makefile":
        variables, exported, recipes, target, defaults = {}, [], {}, None, []
        lines = path.read_text(encoding="utf-8").splitlines()
        i = 0
        while i < len(lines):
            line = lines[i]
            if line.startswith("\t") and target is not None:
                logical = line[1:]
                while logical.endswith("\\") and i + 1 < len(lines):
                    i += 1
                    logical += "\n" + lines[i].removeprefix("\t")
                recipes[target].append(logical)
            elif m := re.match(r"^([A-Za-z_][A-Za-z0-9_]*)\s*(\?=|:=|=)\s*(.*)$", line):
                variables[m.group(1)] = m.group(3)
                if m.group(2) == "?=":
                    defaults.append(m.group(1))
                target = None
            elif m := re.match(r"^export\s+(\w+)", line):
                exported.append(m.group(1))
            elif m := re.match(r"^([A-Za-z0-9_.$()/-]+)\s*:(?!=)", line):
                target = m.group(1)
                recipes.setdefault(target, [])
            elif line and not line.startswith("#"):
                target = None
            i += 1
        return cls(variables, exported, recipes, defaults)

    def check_command(self, args: list[str]) -> list[str]:
        """The targets of `make ARGS`; raises for an unknown target or variable."""
        targets = []
        for arg in args:
            if arg in ("-n", "--dry-run"):
                continue
            name, eq, _ = arg.partition("=")
            if eq:
                if name not in self.variables:
                    raise ValueError(f"make {shlex.join(args)}: the Makefile has no variable {name} "
                                     f"(it has {sorted(self.variables)})")
            elif arg.startswith("-"):
                raise ValueError(f"make {shlex.join(args)}: flag {arg} is not one the check knows")
            elif arg not in self.recipes or arg.startswith("$"):
                raise ValueError(f"make {shlex.join(args)}: no target {arg} (targets: {sorted(self.recipes)})")
            else:
                targets.append(arg)
        return targets

    def expand(self, text: str, overrides: dict[str, str], env: dict[str, str] | None = None) -> str:
        """Make's `$(NAME)` expansion and `$$` -> `$`: a command-line value wins, then the environment's for a
        `?=` variable (or one the Makefile does not set), then the Makefile's."""
        env = os.environ if env is None else env

        def value(name: str) -> str:
            if name in overrides:
                raw = overrides[name]
            elif name in env and (name in self.defaults or name not in self.variables):
                raw = env[name]
            else:
                raw = self.variables.get(name, "")
            return self.expand(raw, overrides, env).replace("\0", "$")

        text = text.replace("$$", "\0")
        text = re.sub(r"\$\((\w+)\)", lambda m: value(m.group(1)), text)
        return text.replace("\0", "$")

    def run_recipe(self, target: str, overrides: dict[str, str], cwd: Path, env: dict[str, str],
                   timeout: float = 3600) -> list[subprocess.CompletedProcess]:
        """Run `target`'s recipe as make would (each line in its own /bin/sh, stop at the first failure), its
        prerequisites not made: `make target VAR=value ...` without make."""
        env = {**env, **{name: self.expand(f"$({name})", overrides, env) for name in self.exported}}
        results = []
        for line in self.recipes[target]:
            script = self.expand(line, overrides, env).lstrip("@-")
            result = subprocess.run(["/bin/sh", "-c", script], cwd=cwd, env=env, capture_output=True, text=True,
                                    encoding="utf-8", errors="replace", timeout=timeout)
            results.append(result)
            if result.returncode != 0:
                break
        return results


RECORDER = """#!/bin/sh
# stands in for python: records its arguments (one JSON list per line) and succeeds
exec {python} -c 'import json, sys; open(sys.argv[1], "a", encoding="utf-8").write(json.dumps(sys.argv[2:]) + "\\n")' \
  {record} "$@"
"""


def recorded_recipe(target: str, overrides: dict[str, str], folder: Path,
                    env: dict[str, str] | None = None) -> list[list[str]]:
    """The argv of every `$(BIN)/python ...` the recipe of `target` runs, with a recording stand-in for python."""
    import sys

    bin_dir, record = folder / "bin", folder / "argv.jsonl"
    bin_dir.mkdir(parents=True, exist_ok=True)
    stand_in = bin_dir / "python"
    stand_in.write_text(RECORDER.format(python=shlex.quote(sys.executable), record=shlex.quote(str(record))),
                        encoding="utf-8")
    stand_in.chmod(0o755)
    results = Makefile.read().run_recipe(target, {"BIN": str(bin_dir), **overrides}, ROOT,
                                         {**os.environ, **(env or {})})
    failed = [r for r in results if r.returncode != 0]
    if failed:
        raise ValueError(f"make {target}: recipe line failed: {failed[0].args[-1]}\n{failed[0].stderr[-2000:]}")
    if not record.is_file():
        return []
    return [json.loads(line) for line in record.read_text(encoding="utf-8").splitlines()]


SIZED_PYTHON = """#!{python}
# stands in for python in a recipe: runs it with the tiny sizes of the stage it runs appended (tests only)
import json, os, sys
args = sys.argv[1:]
stage = {{"train.py": "train", "extract.py": "extract", "fuse.py": "fuse"}}.get(args[0] if args else "")
if args[:2] == ["-m", "radfuse.stages.prepare"]:
    stage = "prepare"
extra = json.loads(os.environ["RADFUSE_TEST_SIZES"]).get(stage, []) if stage else []
os.execv(sys.executable, [sys.executable, *args, *extra])
"""


def sized_python(bin_dir: Path) -> Path:
    """A `python` for `$(BIN)` that appends `$RADFUSE_TEST_SIZES[stage]` (JSON: stage -> overrides) to each stage
    command: the recipe as written, at test size."""
    import sys

    bin_dir.mkdir(parents=True, exist_ok=True)
    path = bin_dir / "python"
    path.write_text(SIZED_PYTHON.format(python=sys.executable), encoding="utf-8")
    path.chmod(0o755)
    return path


def stage_env(**extra: str) -> dict[str, str]:
    """The environment the stage subprocesses of the slow tests run in: this checkout first on the path, one thread
    per process, no W&B."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)]), "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1", "WANDB_MODE": "disabled", **extra}


TRAIN_KEYS = ("experiment", "backbone", "model.arch", "data.mode", "data.channels")


def check_documented_layer(stage: str, args: list[str], configs: list) -> str | None:
    """An extract command's `extract.deep.layer` must be a layer of the CNN the same command line's study trains
    (`experiment=`, `backbone=`, `model.arch=`; or `extract.deep.weights.arch` for pretrained weights alone):
    ResNet's `layer3` on Wang's ShuffleNet is refused, as extract would. Returns the layer checked, if any."""
    from radfuse.extract.deep import PENULTIMATE, check_layer
    from radfuse.models import create_backbone

    if stage != "extract":
        return None
    cfg = configs[0]
    layer = cfg.extract.deep.layer
    if layer == PENULTIMATE or cfg.extract.deep.source is None:
        return None
    if cfg.extract.deep.source == "weights":
        arch = cfg.extract.deep.weights.arch
    else:
        named = [a for a in args if a.partition("=")[0].lstrip("+") in TRAIN_KEYS]
        arch = compose_jobs(HydraCall("train", False, [], named))[0].model.arch
    check_layer(create_backbone(arch, 3 if cfg.data.mode == "3d" else 2, int(cfg.data.channels), 2), layer)
    return layer
