"""Every kind of bad input the validator knows, in one table.

Each case adds one broken row (or breaks one thing) in a valid ten-patient cohort and asserts what a user gets from
`python -m radfuse.data.validate`: the exit code, one message line naming the case (or the row), the file and the
fix, and nothing written next to the manifest. The same manifest must be refused (or accepted) by `ensure_valid`,
the check every stage runs first. docs/validate.md shows the messages these cases produce
(`python -m tests.data.test_bad_inputs` prints them).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from radfuse.data.manifest import read_manifest
from radfuse.data.validate import ManifestInvalid, ensure_valid, main
from tests.data.cohort_factory import make_tiny_cohort, write_volume

ROOT = Path(__file__).resolve().parents[2]
SHAPE = (16, 24, 24)  # z, y, x as box_case writes them
BOX = (slice(4, 12), slice(6, 18), slice(6, 18))  # the ROI of every base mask


class Study:
    """A copy of the valid base cohort's rows, plus files for one broken case in the case's own folder."""

    def __init__(self, base: Path, folder: Path):
        self.folder = folder
        self.files = folder / "files"
        self.files.mkdir(parents=True)
        self.rows = pd.read_csv(base / "manifest.csv", dtype=str, keep_default_na=False).to_dict("records")
        for row in self.rows:
            row["image"], row["mask"] = str(base / row["image"]), str(base / row["mask"])
        self.drop: list[str] = []

    def add(self, case_id: str, patient_id: str = "p000", **changes) -> dict:
        """A new row like c000's: by default a second ROI of patient p000 on p000's image."""
        row = {**self.rows[0], "case_id": case_id, "patient_id": patient_id, "cohort": "", **changes}
        self.rows.append(row)
        return row

    def volume(self, name: str, array: np.ndarray, **geometry) -> str:
        return str(write_volume(self.files / name, array, **geometry))

    def raw(self, name: str, data: bytes) -> str:
        (self.files / name).write_bytes(data)
        return str(self.files / name)

    def image_array(self, i: int = 0) -> np.ndarray:
        return sitk.GetArrayFromImage(sitk.ReadImage(self.rows[i]["image"]))

    def write(self) -> Path:
        manifest = self.folder / "manifest.csv"
        pd.DataFrame(self.rows).drop(columns=self.drop).to_csv(manifest, index=False)
        return manifest


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable[[Study], None]
    code: int                      # exit code of the validator: 0 accepted (maybe with warnings), 2 refused
    says: str                      # text of the message
    fix: str                       # a word of the fix
    case: str | None = "[case bad]"  # the text naming the case (or the row) in the same line
    file: str | None = None        # the file named in the same line
    args: tuple[str, ...] = ()     # extra CLI arguments
    kwargs: dict = field(default_factory=dict)  # the same for ensure_valid


def _mask(value=1, dtype=np.uint8, region=BOX) -> np.ndarray:
    array = np.zeros(SHAPE, dtype)
    array[region] = value
    return array


def _truncated(path: str, keep: float) -> bytes:
    data = Path(path).read_bytes()
    return data[:int(len(data) * keep)]


def _nii_bytes(study: Study, i: int = 0) -> bytes:
    path = study.files / f"whole{i}.nii"
    sitk.WriteImage(sitk.ReadImage(study.rows[i]["image"]), str(path))
    data = path.read_bytes()
    path.unlink()
    return data


def _bad_crc(study: Study) -> bytes:
    data = bytearray(Path(study.rows[0]["image"]).read_bytes())
    data[-8] ^= 0xFF  # the gzip trailer's CRC32
    return bytes(data)


def _image_with(study: Study, name: str, change: Callable[[np.ndarray], np.ndarray]) -> str:
    return study.volume(name, change(study.image_array(0)))


def _nan_in_roi(array: np.ndarray) -> np.ndarray:
    out = array.astype(np.float32)
    out[8, 10, 10:13] = np.nan
    return out


def _set(column: str, value: str, rows=range(10)):
    def build(study: Study) -> None:
        for i in rows:
            study.rows[i][column] = value
    return build


def _row(case_id: str, patient_id: str = "p000", **changes):
    return lambda study: study.add(case_id, patient_id, **changes)


def _with_file(case_id: str, column: str, make: Callable[[Study], str], **changes):
    def build(study: Study) -> None:
        study.add(case_id, **{column: make(study)}, **changes)
    return build


def _two_cohorts(study: Study) -> None:
    study.add("bad_cohort_a", cohort="internal")
    study.add("bad_cohort_b", cohort="external")


def _several_labels(value: int = 3):
    array = _mask(value)
    array[0:2, 0:2, 0:2] = 7
    return array


def _one_class_external(study: Study) -> None:
    study.rows[9]["label"] = "0"  # the base cohort's external cohort is c008 (0) and c009 (1)


def _drop_label_column(study: Study) -> None:
    study.drop = ["label"]


def _copy_image(study: Study) -> str:
    return study.raw("copy_ct.nii.gz", Path(study.rows[0]["image"]).read_bytes())


CASES = [
    # -------------------------------------------------------------------------------------------- files
    Case("missing image", _row("bad", image="/nowhere/ct.nii.gz"), 2, "does not exist", "fix the path",
         file="ct.nii.gz"),
    Case("unreadable image", _with_file("bad", "image", lambda s: s.raw("junk_ct.nii.gz", b"garbage")), 2,
         "image unreadable", "re-export", file="junk_ct.nii.gz"),
    Case("missing mask", _row("bad", mask="/nowhere/mask.nii.gz"), 2, "does not exist", "fix the path",
         file="mask.nii.gz"),
    Case("unreadable mask", _with_file("bad", "mask", lambda s: s.raw("junk_mask.nii.gz", b"garbage")), 2,
         "mask unreadable", "re-export", file="junk_mask.nii.gz"),
    Case("truncated .nii.gz image", _with_file(
        "bad", "image", lambda s: s.raw("cut_ct.nii.gz", _truncated(s.rows[0]["image"], 0.6))), 2,
         "truncated", "re-export", file="cut_ct.nii.gz"),
    Case("truncated .nii image", _with_file(
        "bad", "image", lambda s: s.raw("cut_ct.nii", _nii_bytes(s)[:-5000])), 2,
         "truncated", "re-export", file="cut_ct.nii"),
    Case("truncated .nii.gz mask", _with_file(
        "bad", "mask", lambda s: s.raw("cut_mask.nii.gz", _truncated(s.rows[0]["mask"], 0.7))), 2,
         "truncated", "re-export", file="cut_mask.nii.gz"),
    Case("gzip CRC error", _with_file("bad", "image", lambda s: s.raw("crc_ct.nii.gz", _bad_crc(s))), 2,
         "corrupt", "re-export", file="crc_ct.nii.gz"),
    Case("missing mask2", _row("bad", mask2="/nowhere/mask2.nii.gz"), 2, "does not exist", "fix the path",
         file="mask2.nii.gz"),
    # -------------------------------------------------------------------------------------------- geometry, ROI
    Case("geometry mismatch", _with_file("bad", "mask", lambda s: s.volume("shift_mask.nii.gz", _mask(),
                                                                         origin=(0.5, 0.0, 0.0))), 2,
         "geometry mismatch", "resampl", file="shift_mask.nii.gz"),
    Case("empty ROI", _with_file("bad", "mask", lambda s: s.volume("empty_mask.nii.gz", _mask(0))), 2,
         "empty ROI", "segment", file="empty_mask.nii.gz"),
    Case("mask_label absent from the mask", _with_file(
        "bad", "mask", lambda s: s.volume("multi_mask.nii.gz", _several_labels()), mask_label="4"), 2,
         "absent from the mask", "set mask_label", file="multi_mask.nii.gz"),
    Case("several labels, no mask_label", _with_file(
        "bad", "mask", lambda s: s.volume("multi_mask.nii.gz", _several_labels())), 2,
         "several labels", "set mask_label", file="multi_mask.nii.gz"),
    Case("mask_label not an integer", _row("bad", mask_label="L1"), 2, "not an integer", "integer label",
         file="manifest.csv"),
    Case("fractional float mask", _with_file(
        "bad", "mask", lambda s: s.volume("soft_mask.nii.gz", _mask(np.float32(0.5), np.float32))), 2,
         "fractional", "threshold", file="soft_mask.nii.gz"),
    Case("one-voxel ROI", _with_file(
        "bad", "mask", lambda s: s.volume("dot_mask.nii.gz", _mask(region=(8, 10, 10)))), 2,
         "1 voxel", "larger", file="dot_mask.nii.gz"),
    Case("few-voxel ROI", _with_file(
        "bad", "mask", lambda s: s.volume("few_mask.nii.gz", _mask(region=(8, 10, slice(10, 15))))), 2,
         "5 voxel", "larger", file="few_mask.nii.gz"),
    Case("ROI cut by the edge of the scan (warning)", _with_file(
        "bad", "mask", lambda s: s.volume("edge_mask.nii.gz", _mask(region=(slice(0, 6), slice(6, 18),
                                                                            slice(6, 18))))), 0,
         "touches the inferior face of the scan", "complete", file="edge_mask.nii.gz"),
    # -------------------------------------------------------------------------------------------- intensities
    Case("NaN voxels in the ROI", _with_file(
        "bad", "image", lambda s: _image_with(s, "nan_ct.nii.gz", _nan_in_roi)), 2,
         "NaN", "re-export", file="nan_ct.nii.gz"),
    Case("uint16 image without HU rescale", _with_file(
        "bad", "image", lambda s: _image_with(s, "raw_ct.nii.gz", lambda a: (a + 1024).astype(np.uint16))), 2,
         "not in HU", "modality", file="raw_ct.nii.gz"),
    Case("uint16 image over 0-65535", _with_file(
        "bad", "image", lambda s: s.volume("full_ct.nii.gz", np.random.default_rng(0).integers(
            0, 65536, SHAPE).astype(np.uint16))), 2, "not in HU", "modality", file="full_ct.nii.gz"),
    Case("ROI far outside CT's HU range", _with_file(
        "bad", "image", lambda s: _image_with(s, "scaled_ct.nii.gz", lambda a: a.astype(np.float32) * 20)), 2,
         "outside CT's HU range", "modality", file="scaled_ct.nii.gz"),
    # -------------------------------------------------------------------------------------------- identity
    Case("duplicate case_id", _row("c000"), 2, "more than once", "unique", case="[case c000]",
         file="manifest.csv"),
    Case("empty case_id", _row(""), 2, "empty case_id", "give every row", case="row 12",
         file="manifest.csv"),
    Case("empty patient_id", _row("bad", ""), 2, "empty patient_id", "give every row", file="manifest.csv"),
    Case("case_id with /", _row("bad/evil"), 2, "path character", "rename", case="[case bad/evil]",
         file="manifest.csv"),
    Case("case_id with \\", _row("bad\\evil"), 2, "path character", "rename", case="[case bad\\evil]",
         file="manifest.csv"),
    Case("case_id ..", _row(".."), 2, "path character", "rename", case="[case ..]", file="manifest.csv"),
    Case("case_id with a leading dot", _row(".bad"), 2, "path character", "rename", case="[case .bad]",
         file="manifest.csv"),
    Case("case_id with a control character", _row("bad\x07bell"), 2, "path character", "rename",
         case="[case bad\\x07bell]", file="manifest.csv"),
    Case("one image under two patients", _row("bad", "bad_patient"), 2, "also the image of patient", "leak",
         file="p000_ct.nii.gz"),
    Case("a copy of an image under another patient",
         _with_file("bad", "image", _copy_image, patient_id="bad_patient"), 2, "same content as", "leak",
         file="copy_ct.nii.gz"),
    Case("patient in two cohorts", _two_cohorts, 2, "is in cohorts", "one cohort", case="[case bad_cohort_a]",
         file="manifest.csv"),
    Case("unknown cohort", _row("bad", cohort="test"), 2, "unknown cohort", "use one of", file="manifest.csv"),
    Case("manifest without a label column", _drop_label_column, 2, "lacks required column", "a manifest needs",
         case=None, file="manifest.csv"),
    # -------------------------------------------------------------------------------------------- labels, folds
    Case("label outside the declared classes", _row("bad", label="3"), 2, "not a configured class", "use one of",
         file="manifest.csv"),
    Case("no label", _row("bad", label=""), 2, "no label", "give every ROI", file="manifest.csv"),
    Case("too few patients per class for the folds", lambda s: None, 2, "fewer than 6 CV folds",
         "lower the number of folds", case="c000", file="manifest.csv", args=("--folds", "6"),
         kwargs={"n_folds": 6}),
    Case("one-class external cohort (warning)", _one_class_external, 0, "cohort 'external' holds one class",
         "AUC", case="c009", file="manifest.csv"),
    # -------------------------------------------------------------------------------------------- clinical
    Case("declared clinical column missing", lambda s: None, 2, "declared clinical column is missing",
         "add a bmi column", case=None, file="manifest.csv", args=("--clinical", "bmi:numeric"),
         kwargs={"clinical": {"bmi": "numeric"}}),
    Case("typo in a numeric clinical value", _row("bad", age="6O"), 2, "'6O' is not a number", "write a number",
         file="manifest.csv"),
    Case("decimal comma in a numeric clinical value", _row("bad", age="12,5"), 2, "'12,5' is not a number",
         "decimal point", file="manifest.csv"),
    Case("numeric value 'n/a' (warning)", _row("bad", age="n/a"), 0, "missing", "imputed", file="manifest.csv"),
    Case("numeric value 'unknown' (warning)", _row("bad", age="unknown"), 0, "missing ('unknown')", "imputed",
         file="manifest.csv"),
    Case("numeric value blank (warning)", _row("bad", age=""), 0, "missing", "imputed", file="manifest.csv"),
    Case("numeric value '-' (warning)", _row("bad", age="-"), 0, "missing ('-')", "imputed", file="manifest.csv"),
    Case("categorical value blank (warning)", _row("bad", sex=""), 0, "missing", "most frequent",
         file="manifest.csv"),
    Case("every value of a clinical column missing", _set("age", "n/a"), 2, "every value of age is missing",
         "fill", case=None, file="manifest.csv"),
]

CLINICAL_ARGS = ("--clinical", "age:numeric", "sex:categorical")


def _snapshot(*folders: Path) -> list:
    return sorted((str(p), p.stat().st_mtime_ns, p.stat().st_size) for f in folders for p in f.rglob("*"))


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("base")
    make_tiny_cohort(folder, n_patients=10)
    return folder


def _cli_args(manifest: Path, case: Case) -> list[str]:
    args = [str(manifest), "--classes", "0", "1", "--folds", "2"]
    return args + ([] if "--clinical" in case.args else list(CLINICAL_ARGS)) + list(case.args)


def _validator_kwargs(case: Case) -> dict:
    return {"classes": ["0", "1"], "clinical": {"age": "numeric", "sex": "categorical"}, "n_folds": 2,
            **case.kwargs}


def _line(lines: list[str], case: Case) -> str:
    """The line that says it (the one naming the case, where several do)."""
    found = [line for line in lines if case.says in line]
    found = [line for line in found if case.case and case.case in line] or found
    assert found, f"{case.name}: no line says {case.says!r}:\n" + "\n".join(lines)
    return found[0]


def test_the_table_holds_thirty_kinds_of_bad_input():
    assert len({c.name for c in CASES}) == len(CASES) >= 30


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input(case: Case, base, tmp_path, capsys):
    study = Study(base, tmp_path / "study")
    case.build(study)
    manifest = study.write()
    before = _snapshot(study.folder, base)
    code = main(_cli_args(manifest, case))
    err = capsys.readouterr().err
    assert code == case.code, err
    line = _line(err.splitlines(), case)
    if case.case is not None:
        assert case.case in line, line
    if case.file:
        assert case.file in line, line
    assert case.fix in line, line
    if case.code == 0:
        assert "warning" in line, line
    assert _snapshot(study.folder, base) == before  # nothing written next to the manifest (or the images)
    _assert_the_stage_check_agrees(case, manifest)


def _assert_the_stage_check_agrees(case: Case, manifest: Path) -> None:
    """Every stage runs `ensure_valid` (radfuse.stages.common.load_cohort) on the manifest it reads."""
    if case.case is None and case.code == 2 and "required column" in case.says:
        return  # read_manifest refuses it before validation (ManifestError; stages exit 2 on it too)
    frame = read_manifest(manifest)
    if case.code == 2:
        with pytest.raises(ManifestInvalid, match=re.escape(case.says)):
            ensure_valid(frame, **_validator_kwargs(case))
    else:
        ensure_valid(frame, **_validator_kwargs(case))


def test_every_broken_row_of_one_manifest_is_reported(base, tmp_path, capsys):
    """All one-row cases in one manifest: each reported with its own case id and row, none masked by another."""
    study = Study(base, tmp_path / "study")
    expected = {}
    for case in CASES:
        if case.case != "[case bad]" or case.args:
            continue
        before = len(study.rows)
        case.build(study)
        assert len(study.rows) == before + 1, case.name
        case_id = study.rows[-1]["case_id"] = f"bad_{len(expected):02d}"
        expected[case_id] = (case, len(study.rows) + 1)  # the row a spreadsheet shows (the header is row 1)
    assert main(_cli_args(study.write(), CASES[0])) == 2
    lines = capsys.readouterr().err.splitlines()
    for case_id, (case, row) in expected.items():
        mine = [line for line in lines if f"[case {case_id}]" in line and case.says in line]
        assert mine and f"row {row}" in mine[0], (case.name, mine)


def test_non_ct_data_passes_with_the_modality_override(base, tmp_path, capsys):
    study = Study(base, tmp_path / "study")
    CASES[[c.name for c in CASES].index("uint16 image without HU rescale")].build(study)
    manifest = study.write()
    assert main([str(manifest), "--folds", "2", "--modality", "other"]) == 0
    ensure_valid(read_manifest(manifest), n_folds=2, modality="other")
    nan = Study(base, tmp_path / "nan")
    CASES[[c.name for c in CASES].index("NaN voxels in the ROI")].build(nan)
    assert main([str(nan.write()), "--folds", "2", "--modality", "other"]) == 2  # NaN is never data


def test_cli_in_a_real_process_exits_2_on_a_truncated_image(base, tmp_path):
    study = Study(base, tmp_path / "study")
    CASES[[c.name for c in CASES].index("truncated .nii.gz image")].build(study)
    manifest = study.write()
    result = subprocess.run([sys.executable, "-m", "radfuse.data.validate", str(manifest), "--folds", "2"],
                            capture_output=True, text=True, cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}"})
    assert result.returncode == 2, result.stderr
    assert "[case bad]" in result.stderr and "truncated" in result.stderr and "cut_ct.nii.gz" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_stages_read_the_modality_key_and_coerce_missing_clinical_values(base, tmp_path):
    from hydra import compose, initialize_config_dir

    from radfuse.stages.common import load_cohort

    study = Study(base, tmp_path / "study")
    CASES[[c.name for c in CASES].index("uint16 image without HU rescale")].build(study)
    study.rows[1]["age"] = "unknown"
    manifest = study.write()

    def cfg(*extra):
        with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
            return compose("prepare", overrides=[f"data.manifest={manifest}", f"paths.out={tmp_path / 'out'}",
                                                 "data.classes=[0,1]", "~data.clinical.t_score",
                                                 "data.split.n_folds=2", "data.split.internal_fraction=0.5",
                                                 *extra])

    with pytest.raises(ManifestInvalid, match="not in HU"):
        load_cohort(cfg())
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    cohort = load_cohort(cfg("data.modality=other"))
    assert pd.api.types.is_numeric_dtype(cohort.frame["age"]) and pd.isna(cohort.frame.loc[1, "age"])


def test_real_ct_passes_the_plausibility_checks(spine_ct, pyradiomics_reference, tmp_path, capsys):
    """The HU, NaN, ROI-size and integrity checks accept real scans: TotalSegmentator's spine CT (8 vertebrae, one
    of 76 voxels at the edge) and PyRadiomics' lung1 (an NRRD with padding far below -1024 HU)."""
    rows = [{"case_id": f"spine_{label}", "patient_id": "spine", "image": str(spine_ct / "ct.nii.gz"),
             "mask": str(spine_ct / "vertebrae.nii.gz"), "mask_label": label, "label": "0"} for label in range(26, 34)]
    rows.append({"case_id": "lung1", "patient_id": "lung1", "image": str(pyradiomics_reference / "lung1_image.nrrd"),
                 "mask": str(pyradiomics_reference / "lung1_label.nrrd"), "mask_label": 1, "label": "1"})
    manifest = tmp_path / "manifest.csv"
    pd.DataFrame(rows).to_csv(manifest, index=False)
    assert main([str(manifest), "--folds", "1"]) == 0, capsys.readouterr().err


def example_messages(folder: Path) -> list[str]:
    """Each case's message line, for docs/validate.md (`python -m tests.data.test_bad_inputs`)."""
    import contextlib
    import io

    make_tiny_cohort(folder / "base", n_patients=10)
    out = []
    for k, case in enumerate(CASES):
        study = Study(folder / "base", folder / f"case{k:02d}")
        case.build(study)
        buffer = io.StringIO()
        with contextlib.redirect_stderr(buffer), contextlib.redirect_stdout(io.StringIO()):
            code = main(_cli_args(study.write(), case))
        line = _line(buffer.getvalue().splitlines(), case)
        out.append(f"{case.name}\t{code}\t{line.replace(str(folder), '...')}")
    return out


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        print("\n".join(example_messages(Path(tmp))))
