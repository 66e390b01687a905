"""Run one radiomics task per ROI: joblib processes locally, a Dask cluster when asked; resumable via the cache.

The main process only builds tasks (cheap: content hashes) and collects `RoiOutcome`s; workers write the
features themselves into the per-ROI cache, so nothing grows with the number of ROIs but a list of small
outcomes. ROIs already in the cache never leave the main process: a warm rerun is a directory lookup per ROI.
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from tqdm.auto import tqdm

from radfuse.extract.params import params_digest
from radfuse.extract.radiomics import ExtractOptions, RoiOutcome, RoiTask, run_roi_task
from radfuse.extract.roi_cache import ContentHashes, RoiCache, roi_key


@dataclass(frozen=True)
class RoiSpec:
    """One ROI to extract, as the manifest gives it (absolute paths)."""

    case_id: str
    image: str
    mask: str
    label: int | None = None  # None: the mask's only label
    reader: str = "mask"


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


def pyradiomics_version() -> str:
    return importlib.metadata.version("pyradiomics-bhklab")


def make_tasks(rois: Iterable[RoiSpec], params: Mapping[str, Any], options: ExtractOptions = ExtractOptions(),
               hashes: ContentHashes | None = None) -> tuple[list[RoiTask], list[RoiOutcome]]:
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
        tasks.append(RoiTask(roi.case_id, roi.image, roi.mask, roi.label, key, roi.reader))
    return tasks, failures


def run_tasks(tasks: list[RoiTask], params: Mapping[str, Any], cache_root: str | Path, *, workers: int = 1,
              executor: str = "joblib", scheduler: Any = None, options: ExtractOptions = ExtractOptions(),
              progress: bool = True) -> Iterator[RoiOutcome]:
    """Yield one outcome per task as they finish (cached ones first), with a progress bar and ETA."""
    cache = RoiCache(cache_root)
    pending = []
    with tqdm(total=len(tasks), unit="ROI", desc="radiomics", disable=not progress, smoothing=0.1) as bar:
        for task in tasks:
            if cache.has(task.key) and (not options.retry_failed or "error" not in cache.get(task.key)):
                bar.update()
                yield run_roi_task(task, params, str(cache_root))  # a cache read, no extraction
            else:
                pending.append(task)
        run = {"joblib": _run_joblib, "dask": _run_dask}[executor]
        for outcome in run(pending, dict(params), str(cache_root), workers, scheduler, options):
            bar.update()
            if outcome.status == "failed":
                bar.write(f"radiomics: {outcome.case_id} ({outcome.reader}) failed: {outcome.reason}")
            yield outcome


def _run_joblib(tasks: list[RoiTask], params: dict, cache_root: str, workers: int, _scheduler: Any,
                options: ExtractOptions) -> Iterator[RoiOutcome]:
    from joblib import Parallel, delayed

    if not tasks:
        return
    # one ROI per dispatch: ROIs take seconds each, so batching only unbalances the workers
    parallel = Parallel(n_jobs=workers, batch_size=1, return_as="generator_unordered", pre_dispatch="2*n_jobs")
    yield from parallel(delayed(run_roi_task)(t, params, cache_root, options) for t in tasks)


def _run_dask(tasks: list[RoiTask], params: dict, cache_root: str, _workers: int, scheduler: Any,
              options: ExtractOptions) -> Iterator[RoiOutcome]:
    """Submit to a Dask cluster: `scheduler` is its address ("tcp://host:8786") or a `distributed.Client`.

    Workers must see `cache_root` and the images at the same paths (a shared file system).
    """
    from distributed import Client, as_completed

    if not tasks:
        return
    if scheduler is None:
        raise ValueError("extract.executor=dask needs extract.scheduler=<address of a Dask scheduler>, e.g. "
                         "tcp://10.0.0.5:8786 (start one with `dask scheduler` and `dask worker <address>`)")
    client = scheduler if isinstance(scheduler, Client) else Client(scheduler)
    try:
        futures = client.map(run_roi_task, tasks, params=params, cache_root=cache_root, options=options,
                             pure=False)
        for future in as_completed(futures):
            yield future.result()
            future.release()  # drop the result on the cluster as soon as it is counted
    finally:
        if client is not scheduler:
            client.close()
