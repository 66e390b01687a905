"""conf/ is found the same way in a checkout and in an installed wheel (issue 17): the wheel ships it as
radfuse/conf, and `radfuse.stages.study.find_conf_dir` looks there first, then beside src/."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
from setuptools import find_packages

from radfuse.stages.study import CONF_DIR, find_conf_dir
from tests.data.cohort_factory import make_tiny_cohort

ROOT = Path(__file__).resolve().parents[2]


def test_a_checkout_finds_its_own_conf():
    assert find_conf_dir() == CONF_DIR == ROOT / "conf"


def test_the_wheel_lists_every_package():
    """pyproject.toml lists the packages (the conf/ mapping needs an explicit list): a new subpackage must be
    added there, or the wheel would lack it."""
    listed = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]["packages"]
    assert sorted(listed) == sorted([*find_packages(str(ROOT / "src")), "radfuse.conf"])


@pytest.mark.slow  # builds a wheel and runs prepare from it (a minute on a busy machine)
def test_prepare_runs_from_a_wheel_outside_the_checkout(tmp_path):
    source = tmp_path / "source"  # built from a copy: an in-tree build would leave build/ and egg-info behind
    for name in ("src", "conf"):
        shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index",
                    "-w", str(tmp_path / "dist"), str(source)], check=True, capture_output=True, timeout=600)
    wheel, = (tmp_path / "dist").glob("radfuse-*.whl")
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    assert (site / "radfuse" / "conf" / "prepare.yaml").is_file()
    shutil.rmtree(source)  # nothing of the checkout left to fall back on

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RADFUSE_", "PYTHON"))}
    env["PYTHONPATH"] = str(site)  # the unpacked wheel only; dependencies from the interpreter's site-packages
    where = subprocess.run([sys.executable, "-c", "import radfuse.stages.study as s; print(s.__file__, s.CONF_DIR)"],
                           cwd=elsewhere, env=env, capture_output=True, text=True, timeout=120)
    assert where.stdout.split() == [str(site / "radfuse" / "stages" / "study.py"), str(site / "radfuse" / "conf")]
    out, manifest = tmp_path / "out", make_tiny_cohort(tmp_path / "cohort", n_patients=12)
    done = subprocess.run([sys.executable, "-m", "radfuse.stages.prepare", f"paths.out={out}",
                           f"data.manifest={manifest}", "data.classes=[0,1]", "~data.clinical.t_score",
                           "data.split.n_folds=3", "data.size=32"],
                          cwd=elsewhere, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (out / "splits.json").is_file() and (out / "prepare" / "config.yaml").is_file()
    assert list(elsewhere.iterdir()) == []
