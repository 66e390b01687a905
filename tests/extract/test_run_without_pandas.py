"""A radiomics run without second readers imports no pandas, and writes the very files pandas wrote."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import radfuse
from radfuse.extract.grey_levels import SUMMARY_COLUMNS, summarise_grey_levels
from radfuse.extract.icc import ICC_COLUMNS
from radfuse.extract.radiomics_run import FAILURE_COLUMNS, _write_empty_parquet, _write_rows_csv
from tests.extract.synthetic import make_cohort


@pytest.mark.parametrize("rows", [[], [("original", 24, 32.0, 17.0, 18.15, 0.0),
                                       ("wavelet-LLH", 3, 4.5, 1.0, 1.1000000000000001, 1 / 3),
                                       ("log-sigma-1-0-mm-3D", 1, 1e-05, 2.5e-300, 7.0, 1.0)]])
def test_grey_level_csv_is_what_pandas_wrote(tmp_path, rows):
    header = ("image", *SUMMARY_COLUMNS)
    _write_rows_csv(tmp_path / "ours.csv", header, rows)
    frame = pd.DataFrame(rows, columns=list(header))
    frame["n_rois"] = frame["n_rois"].astype("int64") if rows else frame["n_rois"]
    frame.to_csv(tmp_path / "pandas.csv", index=False)
    assert (tmp_path / "ours.csv").read_bytes() == (tmp_path / "pandas.csv").read_bytes()


def test_failures_csv_is_what_pandas_wrote(tmp_path):
    rows = [("c01", "mask", "cannot read /data/a,b.nii.gz: gzip says \"bad\"; fix it"),
            ("c02", "mask2", "Label (2) not present in mask. Choose from [1 3]\nsecond line"),
            ("é03", "mask_repeat", "ROI zu klein für LoG σ=3")]
    _write_rows_csv(tmp_path / "ours.csv", FAILURE_COLUMNS, rows)
    pd.DataFrame(rows, columns=list(FAILURE_COLUMNS)).to_csv(tmp_path / "pandas.csv", index=False)
    assert (tmp_path / "ours.csv").read_bytes() == (tmp_path / "pandas.csv").read_bytes()


def test_empty_icc_table_reads_back_as_pandas_wrote_it(tmp_path):
    _write_empty_parquet(tmp_path / "ours.parquet", ICC_COLUMNS)
    pd.DataFrame(columns=list(ICC_COLUMNS)).to_parquet(tmp_path / "pandas.parquet", index=False)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "ours.parquet"),
                                  pd.read_parquet(tmp_path / "pandas.parquet"))


def test_summary_of_dicts_equals_summary_of_the_frame():
    records = [{"diagnostics_radfuse_grey_levels_original": str(n), "other": "x"} for n in (3, 8, 12, 20, 31)]
    records.append({"other": "y"})  # an ROI without the entry
    records.append({"diagnostics_radfuse_grey_levels_original": "n/a", "diagnostics_radfuse_grey_levels_log": "4"})
    ours = summarise_grey_levels(records)
    frame = summarise_grey_levels(pd.DataFrame(records))
    pd.testing.assert_frame_equal(ours.table, frame.table)
    assert list(ours.rows) == ["original", "log"] and ours.rows["original"]["n_rois"] == 5


def test_a_one_worker_run_imports_no_pandas(tmp_path):
    manifest = pd.read_csv(make_cohort(tmp_path / "cohort", n_cases=3, mask2=False))
    rois = [(str(tmp_path / "cohort" / r.image), str(tmp_path / "cohort" / r.mask), int(r.mask_label))
            for r in manifest.itertuples()]
    code = ("import sys\n"
            "from radfuse.extract.radiomics_run import extract_radiomics\n"
            "from radfuse.extract.runner import RoiSpec\n"
            f"rois = [RoiSpec(f'c{{i}}', *roi) for i, roi in enumerate({rois!r})]\n"
            "params = {'imageType': {'Original': {}}, 'featureClass': {'firstorder': [], 'glcm': []},\n"
            "          'setting': {'binWidth': 10, 'resampledPixelSpacing': [1, 1, 1],\n"
            "                      'interpolator': 'sitkBSpline'}}\n"
            f"result = extract_radiomics(rois, params, r'{tmp_path}/cache', r'{tmp_path}/out', progress=False)\n"
            "assert result.n_rows == 3 and not result.failure_rows, result\n"
            "assert 'pandas' not in sys.modules, 'pandas imported'\n")
    env = {**os.environ, "PYTHONPATH": str(Path(radfuse.__file__).parents[1]), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    out = tmp_path / "out"
    assert len(pd.read_parquet(out / "radiomics.parquet")) == 3
    assert list(pd.read_csv(out / "grey_levels.csv").columns) == ["image", *SUMMARY_COLUMNS]
    assert pd.read_parquet(out / "icc.parquet").empty


@pytest.mark.parametrize("values", [["a", None, "é,\"x\"", ""], [None, None], [], ["only"]])
def test_string_arrays_equal_pyarrows(values):
    import pyarrow as pa

    from radfuse.extract.tables import string_array

    ours = string_array(values)
    ours.validate(full=True)
    assert ours.equals(pa.array(values, pa.string())) and ours.null_count == values.count(None)


def test_float_arrays_equal_pyarrows_with_nan_as_a_value():
    import numpy as np
    import pyarrow as pa

    from radfuse.extract.tables import float_array

    values = np.array([[1.5, np.nan], [-0.0, 1e308]])[:, 1]  # a strided column, as the writer passes
    ours = float_array(values)
    ours.validate(full=True)
    theirs = pa.array(values, pa.float64())
    assert ours.null_count == theirs.null_count == 0
    assert np.array_equal(ours.to_numpy(), theirs.to_numpy(), equal_nan=True)
