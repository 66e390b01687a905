import json
import os
import subprocess
import sys
from pathlib import Path

from hydra import compose, initialize_config_dir

from radfuse.stages import prepare
from tests.data.cohort_factory import make_tiny_cohort

CONF = str(Path(__file__).resolve().parents[2] / "conf")


def _cfg(manifest, out, *extra):
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return compose("prepare", overrides=[f"data.manifest={manifest}", f"paths.out={out}", "data.classes=[0,1]",
                                             "~data.clinical.t_score", "data.split.n_folds=3", "data.size=32", *extra])


def test_prepare_validates_splits_and_fills_the_cache(tmp_path, capsys):
    manifest = make_tiny_cohort(tmp_path / "cohort", n_patients=12)
    prepare.run(_cfg(manifest, tmp_path / "out"))
    out = capsys.readouterr().out
    assert "12 ROIs, 12 patients, valid" in out and "crop cache" in out
    splits = json.loads((tmp_path / "out" / "splits.json").read_text())
    assert set(splits["cohorts"].values()) == {"train", "internal", "external"}
    assert len(list((tmp_path / "out" / "cache").rglob("*.pt"))) == 12


def test_stage_refuses_an_invalid_manifest_with_a_clear_message(tmp_path):
    manifest = make_tiny_cohort(tmp_path / "cohort", n_patients=12)
    text = manifest.read_text().replace("p003_ct.nii.gz", "missing_ct.nii.gz")
    manifest.write_text(text)
    result = subprocess.run([sys.executable, "-m", "radfuse.stages.prepare", f"data.manifest={manifest}",
                             f"paths.out={tmp_path / 'out'}", "data.classes=[0,1]", "~data.clinical.t_score",
                             "data.split.n_folds=3"], capture_output=True, text=True, encoding="utf-8", errors="replace", cwd=CONF + "/..",
                            env={**os.environ, "PYTHONPATH": "src"})
    assert result.returncode == 2
    assert "[case c003] image: image unreadable" in result.stderr and "Fix:" in result.stderr
    assert not (tmp_path / "out" / "splits.json").exists()
