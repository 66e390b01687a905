"""Work per scan (one image read per scan) and a warm rerun that computes no feature and writes no table."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from radfuse.data.manifest import read_manifest
from radfuse.extract.extractor import RadfuseExtractor
from radfuse.extract.params import load_params
from radfuse.extract.radiomics import Roi
from radfuse.extract.radiomics_run import TABLES, extract_radiomics, rois_from_manifest
from radfuse.extract.runner import RoiSpec, scan_tasks
from tests.extract.synthetic import make_cohort

ROOT = Path(__file__).resolve().parents[2]
FAST = ROOT / "conf" / "radiomics" / "fast.yaml"


@pytest.fixture()
def executions(monkeypatch):
    """Every PyRadiomics `execute` radfuse's extractor makes in this process (the only place features come from)."""
    calls = []
    original = RadfuseExtractor.execute

    def counting(self, *args, **kwargs):
        calls.append(args[0])
        return original(self, *args, **kwargs)

    monkeypatch.setattr(RadfuseExtractor, "execute", counting)
    return calls


@pytest.fixture()
def reads(monkeypatch):
    from radfuse.extract import scan_reader

    paths = []
    original = scan_reader.read_scan
    monkeypatch.setattr(scan_reader, "read_scan", lambda path: paths.append(str(path)) or original(path))
    return paths


def _signatures(folder: Path) -> dict[str, int]:
    return {name: (folder / name).stat().st_mtime_ns for name in TABLES}


def test_warm_rerun_computes_no_feature_and_writes_no_table(tmp_path, executions):
    rois = rois_from_manifest(read_manifest(make_cohort(tmp_path / "data", n_cases=4)))
    params = load_params(FAST)
    cold = extract_radiomics(rois, params, tmp_path / "cache", tmp_path / "out", progress=False)
    assert len(executions) == len(rois) == 8  # 4 cases, 4 second-reader masks
    written = _signatures(tmp_path / "out")

    warm = extract_radiomics(rois, params, tmp_path / "cache", tmp_path / "out", progress=False)
    assert len(executions) == 8 and warm.summary.count("cached") == 8
    assert _signatures(tmp_path / "out") == written  # nothing rewritten
    assert warm.n_rows == cold.n_rows == 4
    pd.testing.assert_frame_equal(warm.grey_levels.table, cold.grey_levels.table, check_dtype=False)
    pd.testing.assert_frame_equal(warm.failures, cold.failures, check_dtype=False)

    (tmp_path / "out" / "radiomics.parquet").unlink()  # a table gone: written again, from the cache
    extract_radiomics(rois, params, tmp_path / "cache", tmp_path / "out", progress=False)
    assert len(executions) == 8
    extract_radiomics(rois, params, tmp_path / "cache", tmp_path / "elsewhere", progress=False)
    assert len(executions) == 8
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "out" / "radiomics.parquet"),
                                  pd.read_parquet(tmp_path / "elsewhere" / "radiomics.parquet"))


def test_each_scan_is_read_once_even_when_its_rois_are_listed_apart(tmp_path, reads, executions):
    manifest = read_manifest(make_cohort(tmp_path / "data", n_cases=2))
    first, second = manifest.to_dict("records")
    # two ROIs on each scan (both readers' masks), listed scan A, scan B, scan A, scan B
    rois = [RoiSpec("a", first["image"], first["mask"], int(first["mask_label"])),
            RoiSpec("b", second["image"], second["mask"], int(second["mask_label"])),
            RoiSpec("a", first["image"], first["mask2"], int(first["mask_label"]), "mask2"),
            RoiSpec("b", second["image"], second["mask2"], int(second["mask_label"]), "mask2")]
    extract_radiomics(rois, load_params(FAST), tmp_path / "cache", tmp_path / "out", progress=False)
    assert len(executions) == 4
    assert sorted(reads) == sorted(str(r[c]) for r in (first, second) for c in ("image", "mask", "mask2"))


def test_scan_tasks_group_by_image_and_split_only_to_feed_every_worker():
    tasks = [Roi(f"r{i}", image, "m", i, key=f"k{i}") for i, image in enumerate("ABABCA")]
    assert [[t.case_id for t in scan] for scan in scan_tasks(tasks)] == [["r0", "r2", "r5"], ["r1", "r3"], ["r4"]]
    assert len(scan_tasks(tasks, workers=3)) == 3
    one_scan = [t for t in tasks if t.image == "A"]
    halves = scan_tasks(one_scan, workers=2)
    assert [[t.case_id for t in scan] for scan in halves] == [["r0"], ["r2", "r5"]]
    assert scan_tasks([], workers=2) == []
