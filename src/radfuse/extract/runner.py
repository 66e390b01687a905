"""Run the radiomics tasks of a run, one task per scan: joblib processes locally (in-process for one worker), a
Dask cluster when asked; resumable via the per-ROI cache.

The main process only builds tasks (cheap: content hashes) and collects `RoiOutcome`s; workers write the
features themselves into the per-ROI cache, so nothing grows with the number of ROIs but a list of small
outcomes. ROIs already in the cache never leave the main process: a warm rerun is a file lookup per ROI.

Work is per scan, not per ROI (`scan_tasks`): a scan's ROIs go to one worker as one task, so the scan is read once
however many vertebrae it holds. Resampling and filters stay per ROI, because in PyRadiomics each of them depends
on the ROI's own crop: the resampling grid starts at the ROI's bounding box (and an integer scan is resampled into
its integer type, where a 1e-11 shift of a grid point flips truncated voxels by 1 HU); Square, SquareRoot,
Logarithm and Exponential scale by the maximum of the cropped image; LoG's recursive Gaussian reaches the crop's
border and Wavelet pads the crop to a multiple of 2^level; LBP3D and Gradient run on the resampled crop. Computing
any of them on the union of a scan's boxes would change values, so radfuse does not.
"""

from __future__ import annotations

import functools
import importlib.metadata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from tqdm.auto import tqdm

from radfuse.extract.params import params_digest
from radfuse.extract.radiomics import ExtractOptions, Roi, RoiOutcome, run_scan_task
from radfuse.extract.roi_cache import ContentHashes, RoiCache, roi_key


RoiSpec = Roi  # an ROI as the manifest gives it (key ""): the name callers know


@dataclass
class RunSummary:
    """Counts of one run plus the outcome of every ROI (small records), in completion order."""

    outcomes: list[RoiOutcome] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(o.status == status for o in self.outcomes)


def describe_failures(failures: list[tuple[str, str, str]], shown: int = 3) -> str:
    """'c02 (mask): reason; c05 (mask2): reason; and 4 more' for (case_id, reader, reason) triples, sorted."""
    ordered = sorted(failures)
    text = "; ".join(f"{case_id} ({reader}): {reason}" for case_id, reader, reason in ordered[:shown])
    return text + (f"; and {len(ordered) - shown} more" if len(ordered) > shown else "")


@functools.lru_cache(maxsize=1)
def pyradiomics_version() -> str:
    return importlib.metadata.version("pyradiomics-bhklab")


def scan_tasks(tasks: Iterable[Roi], workers: int = 1) -> list[list[Roi]]:
    """The tasks grouped by image path (one group per scan), scans and ROIs in order of first appearance.

    With fewer scans than workers the largest groups are halved until every worker has one (a single spine CT
    with 9 vertebrae still runs on 2 workers; its image is then read once per worker).
    """
    groups: dict[str, list[Roi]] = {}
    for task in tasks:
        groups.setdefault(task.image, []).append(task)
    scans = list(groups.values())
    while len(scans) < workers and max((len(s) for s in scans), default=0) > 1:
        largest = max(range(len(scans)), key=lambda i: len(scans[i]))
        scan = scans.pop(largest)
        scans[largest:largest] = [scan[:len(scan) // 2], scan[len(scan) // 2:]]
    return scans


def make_tasks(rois: Iterable[Roi], params: Mapping[str, Any], options: ExtractOptions = ExtractOptions(),
               hashes: ContentHashes | None = None) -> tuple[list[Roi], list[RoiOutcome]]:
    """Key every ROI by content; ROIs whose files cannot be read become failures right away."""
    hashes = hashes or ContentHashes()
    digest = params_digest(params, options.value_affecting())
    version = pyradiomics_version()
    tasks, failures = [], []
    for roi in rois:
        try:
            key = roi_key(hashes(roi.image), hashes(roi.mask), roi.label, digest, version)
        except OSError as error:
            failures.append(RoiOutcome(roi.case_id, "", roi.reader, "failed",
                                       f"cannot read input: {error}; fix the path in the manifest"))
            continue
        tasks.append(Roi(roi.case_id, roi.image, roi.mask, roi.label, roi.reader, key))
    return tasks, failures


def run_tasks(tasks: list[Roi], params: Mapping[str, Any], cache_root: str | Path, *, workers: int = 1,
              executor: str = "joblib", scheduler: Any = None, options: ExtractOptions = ExtractOptions(),
              progress: bool = True) -> Iterator[RoiOutcome]:
    """Yield one outcome per task as they finish (cached ones first), with a progress bar and ETA."""
    cache = RoiCache(cache_root)
    pending = []
    with tqdm(total=len(tasks), unit="ROI", desc="radiomics", disable=not progress, smoothing=0.1) as bar:
        for task in tasks:
            record = cache.get(task.key) if cache.has(task.key) else None
            if record is not None and (not options.retry_failed or "error" not in record):
                bar.update()
                yield RoiOutcome(task.case_id, task.key, task.reader, "failed" if "error" in record else "cached",
                                 record.get("error", ""))
            else:
                pending.append(task)
        run = {"joblib": _run_joblib, "dask": _run_dask}[executor]
        for outcomes in run(scan_tasks(pending, workers), dict(params), str(cache_root), workers, scheduler, options):
            for outcome in outcomes:
                bar.update()
                if outcome.status == "failed":
                    bar.write(f"radiomics: {outcome.case_id} ({outcome.reader}) failed: {outcome.reason}")
                yield outcome


def _run_joblib(scans: list[list[Roi]], params: dict, cache_root: str, workers: int, _scheduler: Any,
                options: ExtractOptions) -> Iterator[list[RoiOutcome]]:
    if not scans:
        return
    if workers == 1:  # in this process: no pool to start, nothing to pickle
        for scan in scans:
            yield run_scan_task(scan, params, cache_root, options)
        return
    from joblib import Parallel, delayed

    # one scan per dispatch: scans take seconds each, so batching only unbalances the workers
    parallel = Parallel(n_jobs=workers, batch_size=1, return_as="generator_unordered", pre_dispatch="2*n_jobs")
    yield from parallel(delayed(run_scan_task)(scan, params, cache_root, options) for scan in scans)


def _run_dask(scans: list[list[Roi]], params: dict, cache_root: str, _workers: int, scheduler: Any,
              options: ExtractOptions) -> Iterator[list[RoiOutcome]]:
    """Submit to a Dask cluster: `scheduler` is its address ("tcp://host:8786") or a `distributed.Client`.

    Workers must see `cache_root` and the images at the same paths (a shared file system).
    """
    from distributed import Client, as_completed

    if not scans:
        return
    if scheduler is None:
        raise ValueError("extract.executor=dask needs extract.scheduler=<address of a Dask scheduler>, e.g. "
                         "tcp://10.0.0.5:8786 (start one with `dask scheduler` and `dask worker <address>`)")
    client = scheduler if isinstance(scheduler, Client) else Client(scheduler)
    try:
        futures = client.map(run_scan_task, scans, params=params, cache_root=cache_root, options=options,
                             pure=False)
        for future in as_completed(futures):
            yield future.result()
            future.release()  # drop the result on the cluster as soon as it is counted
    finally:
        if client is not scheduler:
            client.close()
