"""The README's "Your own data" walk-through, run as written: its bash block, line by line, through bash, from a
folder holding a DICOM series per patient (written from the real spine CT, ../shared/data/spine-ct), the
TotalSegmentator label map beside it and a grades CSV, to a report and a scored new patient.

The only changes to the lines: `.venv/bin/python` is this interpreter and the entry scripts (train.py, extract.py,
fuse.py) are the repository's; the quick-pass overrides that the README offers a user (epochs, one classifier,
fewer bootstrap resamples) are added to the commands it names. Nothing else is overridden: the study needs none.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from tests.data.build.spine_cases import LUMBAR, write_case, write_dicom_series

ROOT = Path(__file__).resolve().parents[2]
SECTION = "## Your own data"
QUICK = {"train.py": ["trainer.max_epochs=1"], "fuse.py": ["use_classifiers=[lr]", "report.n_resamples=100"]}
SCRIPTS = ("train.py", "extract.py", "fuse.py")
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)]), "OMP_NUM_THREADS": "1",
       "WANDB_MODE": "disabled"}


def readme_section() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index(SECTION):]
    return section[: section.index("\n## ", len(SECTION))]


def readme_commands() -> list[str]:
    """The command lines of the section's bash block (continuations joined, comments dropped)."""
    block = re.search(r"```bash\n(.*?)```", readme_section(), flags=re.S).group(1)
    lines = [re.sub(r"\s+#\s.*$", "", line).strip() for line in block.replace("\\\n", " ").splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def as_run_here(line: str) -> str:
    """This interpreter for `.venv/bin/python`, the repository's entry scripts, and the README's quick pass."""
    words = line.split(" ")
    assert words[0] == ".venv/bin/python", line
    words[0] = sys.executable
    extra = []
    for i, word in enumerate(words[1:3], start=1):
        if word in SCRIPTS:
            words[i] = str(ROOT / word)
            extra = QUICK.get(word, [])
    return " ".join(words + extra)


def _patient(spine_ct: Path, folder: Path, patient: str, seed: int) -> None:
    """A DICOM series of a crop of the real CT (each patient its own crop and noise) and the label map beside it."""
    case = write_case(spine_ct, folder, shift=seed % 3, files=("ct", "vertebrae"))
    ct = sitk.ReadImage(str(case["ct"]))
    noise = np.random.default_rng(seed).normal(0, 10, sitk.GetArrayViewFromImage(ct).shape).round()
    noisy = sitk.GetImageFromArray((sitk.GetArrayFromImage(ct) + noise).astype(np.int16))
    noisy.CopyInformation(ct)
    write_dicom_series(noisy, folder / "dicom", patient)
    case["ct"].unlink()  # the DICOM series is the image


@pytest.fixture
def user_files(spine_ct, tmp_path) -> Path:
    grades = []
    for p in range(10):  # 10 patients, 5 vertebrae each; L1 of five of them graded 1
        _patient(spine_ct, tmp_path / "study" / f"P{p:02d}", f"P{p:02d}", p)
        grades += [{"patient_id": f"P{p:02d}", "roi": name, "label": int(p < 5 and name == "L1"), "age": 60 + p}
                   for name in LUMBAR]
    pd.DataFrame(grades).to_csv(tmp_path / "grades.csv", index=False)
    _patient(spine_ct, tmp_path / "new" / "P99", "P99", 99)
    pd.DataFrame([{"patient_id": "P99", "age": 66}]).to_csv(tmp_path / "new.csv", index=False)
    return tmp_path


def test_the_readme_offers_the_quick_pass_the_test_uses():
    section = readme_section()
    for script, overrides in QUICK.items():
        assert all(o in section for o in overrides), script
    assert any(script in line for line in readme_commands() for script in SCRIPTS)


@pytest.mark.slow
def test_readme_walk_through_from_dicom_folders_to_a_scored_new_patient(user_files):
    printed, out, before_score = {}, user_files / "my_study" / "outputs", None
    for line in readme_commands():
        if "radfuse.score" in line:
            before_score = _snapshot(out)
        result = subprocess.run(["bash", "-c", as_run_here(line)], cwd=user_files, env=ENV, capture_output=True,
                                text=True, encoding="utf-8", errors="replace", timeout=3000)
        assert result.returncode == 0, f"{line}\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
        assert "Traceback" not in result.stderr, f"{line}\n{result.stderr[-5000:]}"
        printed[line] = result.stdout + result.stderr
    by_start = {line.split(" --")[0]: out for line, out in printed.items()}

    manifest = pd.read_csv(user_files / "built" / "manifest.csv")
    assert len(manifest) == 50 and set(manifest.mask_label) == set(LUMBAR.values())
    assert all(image.endswith("dicom") for image in manifest.image)
    # radfuse.init prints the commands of the README, with the folds it chose
    init = by_start[".venv/bin/python -m radfuse.init my_study"]
    assert "data.fold=0,1,2,3 'run=cv${data.fold}'" in init
    assert "radfuse.data.validate --config-dir" in init
    assert "valid, and the study can run" in by_start[".venv/bin/python -m radfuse.data.validate"]

    assert (out / "train" / "main" / "best.ckpt").is_file()  # chosen on the automatic internal cohort
    assert all((out / "train" / f"cv{k}" / "last.ckpt").is_file() for k in range(4))
    assert (out / "extract" / "main" / "deep_crossfit.parquet").is_file()
    assert (out / "fuse" / "main" / "report.html").is_file()

    scored = pd.read_csv(user_files / "scored" / "predictions.csv")
    assert set(scored.case_id) == {f"P99_{name}" for name in LUMBAR}
    assert set(scored.feature_set) == {"rad", "deep", "fused", "fused+clinical"}
    np.testing.assert_allclose(scored.prob__0 + scored.prob__1, 1.0, atol=1e-9)
    assert before_score is not None and _snapshot(out) == before_score  # scoring writes nothing into the study


def _snapshot(folder: Path) -> list:
    return sorted((str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in folder.rglob("*") if p.is_file())
