"""Parallel, resumable, failure-tolerant radiomics runs on a tiny synthetic cohort (fast.yaml)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest

from radfuse.data.manifest import read_manifest
from radfuse.extract import radiomics as radiomics_module
from radfuse.extract.params import load_params
from radfuse.extract.radiomics_run import extract_radiomics, rois_from_manifest
from tests.extract.synthetic import make_cohort

ROOT = Path(__file__).resolve().parents[2]
FAST = ROOT / "conf" / "radiomics" / "fast.yaml"


@pytest.fixture()
def counted(monkeypatch):
    """Count real PyRadiomics extractions made in this process."""
    calls = []
    original = radiomics_module.extract_roi

    def counting(*args, **kwargs):
        calls.append(args[0])
        return original(*args, **kwargs)

    monkeypatch.setattr(radiomics_module, "extract_roi", counting)
    return calls


def _run(manifest: Path, cache: Path, out: Path, **kwargs):
    rois = rois_from_manifest(read_manifest(manifest))
    return extract_radiomics(rois, load_params(FAST), cache, out, progress=False, **kwargs)


def test_interrupted_run_resumes_without_recomputing_finished_rois(tmp_path, counted):
    manifest = make_cohort(tmp_path / "data", n_cases=8, mask2=False)
    cache = tmp_path / "cache"
    script = textwrap.dedent(f"""
        import time, sys
        sys.path[:0] = [{str(ROOT / 'src')!r}, {str(ROOT)!r}]
        from radfuse.extract import radiomics as m
        original = m.extract_roi
        def slow(*a, **k):
            result = original(*a, **k)
            time.sleep(0.4)  # time for the test to kill us between two ROIs
            return result
        m.extract_roi = slow
        from tests.extract.test_radiomics_runner import _run
        from pathlib import Path
        _run(Path({str(manifest)!r}), Path({str(cache)!r}), Path({str(tmp_path / 'killed')!r}))
    """)
    child = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT)
    deadline = time.time() + 60
    while len(list(cache.glob("*/*.json"))) < 3 and time.time() < deadline and child.poll() is None:
        time.sleep(0.05)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    finished = len(list(cache.glob("*/*.json")))
    assert 3 <= finished < 8, "the child must be killed in the middle of the run"
    assert not (tmp_path / "killed" / "radiomics.parquet").exists()

    resumed = _run(manifest, cache, tmp_path / "out")
    assert len(counted) == 8 - finished  # only the unfinished ROIs were extracted
    assert resumed.summary.count("cached") == finished
    fresh = _run(manifest, tmp_path / "fresh-cache", tmp_path / "fresh")
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "out" / "radiomics.parquet"),
                                  pd.read_parquet(tmp_path / "fresh" / "radiomics.parquet"))
    assert fresh.n_rows == 8


def test_unchanged_rerun_does_no_work_and_changed_params_do(tmp_path, counted):
    manifest = make_cohort(tmp_path / "data", n_cases=3, mask2=False)
    _run(manifest, tmp_path / "cache", tmp_path / "out")
    assert len(counted) == 3
    again = _run(manifest, tmp_path / "cache", tmp_path / "out")
    assert len(counted) == 3 and again.summary.count("cached") == 3
    params = load_params(FAST)
    params["setting"]["binWidth"] = 10
    extract_radiomics(rois_from_manifest(read_manifest(manifest)), params, tmp_path / "cache", tmp_path / "o2",
                      progress=False)
    assert len(counted) == 6  # a new params hash is a new key


def test_failures_are_recorded_and_the_rest_extracted(tmp_path):
    manifest = make_cohort(tmp_path / "data", n_cases=5, mask2=False, empty_cases=(1,), missing_cases=(3,))
    result = _run(manifest, tmp_path / "cache", tmp_path / "out", workers=2)
    table = pd.read_parquet(tmp_path / "out" / "radiomics.parquet")
    failures = pd.read_csv(tmp_path / "out" / "failures.csv")
    assert list(table["case_id"]) == ["c00", "c02", "c04"]
    assert dict(zip(failures["case_id"], failures["reason"])).keys() == {"c01", "c03"}
    reasons = dict(zip(failures["case_id"], failures["reason"]))
    assert "No labels found" in reasons["c01"] and "cannot read input" in reasons["c03"]
    assert result.n_rows == 3
    assert table.notna().all().all()
    assert all(c == "case_id" or c.startswith("rad__original_") for c in table.columns)
    diagnostics = pd.read_parquet(tmp_path / "out" / "radiomics_diagnostics.parquet")
    assert list(diagnostics["case_id"]) == list(table["case_id"])
    assert not any(c.startswith("rad__") for c in diagnostics.columns)
    assert not any("diagnostics" in c for c in table.columns)


def test_dask_cluster_gives_the_joblib_table(tmp_path):
    distributed = pytest.importorskip("distributed")
    manifest = make_cohort(tmp_path / "data", n_cases=4)
    _run(manifest, tmp_path / "cache-joblib", tmp_path / "joblib", workers=2)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) \
            as cluster, distributed.Client(cluster) as client:
        _run(manifest, tmp_path / "cache-dask", tmp_path / "dask", executor="dask", scheduler=client)
    for name in ("radiomics.parquet", "icc.parquet"):
        pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "dask" / name),
                                      pd.read_parquet(tmp_path / "joblib" / name))


def test_icc_table_covers_every_feature_of_rois_with_mask2(tmp_path):
    manifest = make_cohort(tmp_path / "data", n_cases=6)
    _run(manifest, tmp_path / "cache", tmp_path / "out")
    icc = pd.read_parquet(tmp_path / "out" / "icc.parquet")
    table = pd.read_parquet(tmp_path / "out" / "radiomics.parquet")
    assert list(icc["feature"]) == [c for c in table.columns if c != "case_id"]
    assert (icc["n"] == 6).all()
    firstorder_mean = icc.set_index("feature").loc["rad__original_firstorder_Mean"]
    assert firstorder_mean["icc3_1_low"] <= firstorder_mean["icc3_1"] <= firstorder_mean["icc3_1_high"]


def test_changed_image_is_recomputed_and_unchanged_scans_are_not_reread(tmp_path, counted, monkeypatch):
    import SimpleITK as sitk

    from radfuse.extract import roi_cache

    manifest = make_cohort(tmp_path / "data", n_cases=3, mask2=False)
    _run(manifest, tmp_path / "cache", tmp_path / "out")
    hashed = []
    original_hash = roi_cache.file_sha256
    monkeypatch.setattr(roi_cache, "file_sha256", lambda p: hashed.append(p) or original_hash(p))
    _run(manifest, tmp_path / "cache", tmp_path / "out")
    assert hashed == [] and len(counted) == 3  # warm: no scan read, nothing extracted

    image_path = tmp_path / "data" / "c01_ct.nii.gz"
    image = sitk.ReadImage(str(image_path))
    sitk.WriteImage(image + 7, str(image_path))  # same size on disk is possible: the hash decides
    before = pd.read_parquet(tmp_path / "out" / "radiomics.parquet").set_index("case_id")
    _run(manifest, tmp_path / "cache", tmp_path / "out")
    after = pd.read_parquet(tmp_path / "out" / "radiomics.parquet").set_index("case_id")
    assert len(counted) == 4 and hashed == [str(image_path)]
    assert after.loc["c01", "rad__original_firstorder_Mean"] == pytest.approx(
        before.loc["c01", "rad__original_firstorder_Mean"] + 7)
    pd.testing.assert_series_equal(after.loc["c00"], before.loc["c00"])
