"""The built-in demo cohort: synthetic lumbar CT with vertebral-fracture phantoms, masks and a manifest.

Every ROI has a latent severity s ~ N(0, 1); its class is s cut at the normal quantiles of 46 % and 91 %, the
ASTLOF class shares of Liu 2025 (0: 1-3 points, 1: 4 points, 2: 5-8 points). Classes are dealt out per site so
that every site holds them at those shares, and each severity is drawn within its class. The images see s only
through two independent noisy views, so no single kind of feature separates the classes and fusing them helps:

- a *shape* view g (height loss as wedge / biconcave / crush, posterior-wall retropulsion when severe), which a
  CNN on z-scored crops sees well;
- a *texture* view q (denser, impacted marrow, a sclerotic band under the endplate, fracture lines, a gas cleft
  when severe), mostly a matter of absolute HU and texture, which radiomics sees and a z-scored crop hides.

Bone density follows the patient's true T-score (shared by all their vertebrae); the recorded `t_score`, `age`
and `sex` depend on a patient frailty that also drives s. Sites A, B, C differ in pixel size, slice thickness,
reconstruction kernel, noise and HU calibration, and site C stores its images with a flipped direction matrix.
Cohorts: train / internal (8:2, stratified) and a small prospective set from sites A and B; site C is external.

`task="vcf_acuity"` makes another cohort instead, shaped for Wang 2025 (acute vs chronic compression fracture,
one centre, intra- and inter-observer masks): see `radfuse.data.demo_vcf`. The default task is unchanged.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from statistics import NormalDist

import numpy as np
import pandas as pd
import SimpleITK as sitk
from scipy import ndimage

from radfuse.artifacts import write_csv, write_json
from radfuse.data import manifest as mf
from radfuse.data.phantom import SiteProtocol, VertebraSpec, VolumeSpec, draw_volume

GENERATOR_VERSION = 1  # bump when the drawing changes, so `ensure_cohort` regenerates old cohorts
DEFAULT_PATIENTS = 266  # about 300 ROIs
MAX_PROCESSES = 2
CLASS_SHARES = (0.46, 0.45, 0.09)
SEVERITY_CUTS = tuple(NormalDist().inv_cdf(q) for q in np.cumsum(CLASS_SHARES)[:-1])
CLINICAL_COLUMNS = ("age", "sex", "t_score")
MANIFEST_COLUMNS = (mf.CASE_ID, mf.PATIENT_ID, mf.IMAGE, mf.MASK, mf.MASK_LABEL, mf.MASK2, mf.LABEL, mf.SITE,
                    mf.COHORT, *CLINICAL_COLUMNS)
MANIFEST_FILE = "manifest.csv"
INFO_FILE = "demo.json"
DEFAULT_TASK = "astlof"
TASKS = (DEFAULT_TASK, "vcf_acuity")

SITES = {
    "A": SiteProtocol("A", spacing_xy_mm=0.8, slice_mm=1.0, kernel_mm=0.35, noise_sd_hu=28.0, noise_corr_mm=0.45,
                      hu_scale=1.00, hu_offset=0.0),
    "B": SiteProtocol("B", spacing_xy_mm=0.9, slice_mm=1.5, kernel_mm=0.6, noise_sd_hu=18.0, noise_corr_mm=0.6,
                      hu_scale=0.95, hu_offset=20.0),
    "C": SiteProtocol("C", spacing_xy_mm=1.0, slice_mm=2.5, kernel_mm=0.9, noise_sd_hu=12.0, noise_corr_mm=0.8,
                      hu_scale=1.07, hu_offset=-30.0, flip_xy=True),
}
SITE_SHARES = {"A": 0.45, "B": 0.35, "C": 0.20}
EXTERNAL_SITES = ("C",)
MULTI_ROI_SHARE = 0.105  # Liu 2025: 102 of 981 patients had 2 or 3 fractured vertebrae
THREE_ROI_SHARE = 0.15  # of those, 15 had 3
SECOND_READER_SHARE = 0.25
INTERNAL_SHARE = 0.2
PROSPECTIVE_SHARE = 0.08
ROI_SEVERITY_LOADING = 0.75  # corr(ROI severity, patient frailty); the rest is per-vertebra
VIEW_LOADING = 0.8  # corr(shape view, severity) = corr(texture view, severity)


@dataclass(frozen=True)
class RoiPlan:
    mask_label: int
    label: int
    severity: float


@dataclass(frozen=True)
class PatientPlan:
    """Everything about one patient that is decided before drawing: clinical data, ROIs, anatomy, site."""

    index: int
    patient_id: str
    site: str
    age: int
    sex: str
    t_score: float
    second_reader: bool
    rois: tuple[RoiPlan, ...]
    volume: VolumeSpec
    repeat_reading: bool = False  # the same reader outlines the ROI again (intra-observer ICC)


# ---------------------------------------------------------------------------------------------- sampling
def severity_class(severity: np.ndarray | float) -> np.ndarray:
    """Class 0 / 1 / 2 of a latent severity: cuts at the N(0, 1) quantiles of 46 % and 91 %."""
    return np.searchsorted(np.asarray(SEVERITY_CUTS), severity, side="right")


def sample_patient(seed: int, index: int, single_label: int | None = None, id_width: int = 4) -> PatientPlan:
    """Draw one patient from its own random streams.

    A one-ROI patient gets the class `single_label` (the cohort deals classes out, so that every site holds
    them at the planned shares) and a severity drawn within that class; its frailty then follows from the
    severity. A patient with several ROIs draws frailty first and each ROI's severity from it. Both give the
    same joint law of (frailty, severity) as drawing everything freely.
    """
    site, n_rois = site_and_roi_count(seed, index)
    rng = np.random.default_rng(np.random.SeedSequence([seed, index, 3]))
    rho, rest = ROI_SEVERITY_LOADING, np.sqrt(1 - ROI_SEVERITY_LOADING**2)
    if n_rois == 1:
        if single_label is None:
            raise ValueError(f"patient {index} has one ROI: pass its class as single_label")
        severities = [_severity_in_class(rng, single_label)]
        frailty = rho * severities[0] + rest * rng.standard_normal()
    else:
        frailty = rng.standard_normal()
        severities = [rho * frailty + rest * rng.standard_normal() for _ in range(n_rois)]
    t_true = -2.82 - 0.55 * frailty + 0.55 * rng.standard_normal()  # Liu 2025: T-score -2.82 (SD 0.8)
    t_score = round(float(t_true + 0.25 * rng.standard_normal()), 2)  # DXA measures another site, with error
    age = int(np.clip(round(69.5 + 4.0 * frailty + 9.5 * rng.standard_normal()), 50, 95))
    sex = "F" if rng.random() < 1 / (1 + np.exp(-(0.85 + 0.3 * frailty))) else "M"  # about 70 % women
    anatomy = _anatomy(rng)
    rois = tuple(RoiPlan(k, int(severity_class(s)), float(s)) for k, s in enumerate(severities, start=1))
    targets = [_fractured_vertebra(rng, roi.mask_label, roi.severity, t_true, anatomy) for roi in rois]
    column = (_vertebra(rng, 0, t_true, anatomy), *targets, _vertebra(rng, 0, t_true, anatomy))
    volume = VolumeSpec(site=SITES[site], vertebrae=column, disc_mm=anatomy["disc_mm"],
                        skin_y_mm=anatomy["skin_y_mm"], seed=(seed, index, 1))
    return PatientPlan(index=index, patient_id=f"P{index + 1:0{id_width}d}", site=site, age=age, sex=sex,
                       t_score=t_score, second_reader=bool(rng.random() < SECOND_READER_SHARE), rois=rois,
                       volume=volume)


def site_and_roi_count(seed: int, index: int) -> tuple[str, int]:
    """The patient's site and number of ROIs (1, or 2-3 for about 10 % of patients)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, index, 0]))
    site = str(rng.choice(list(SITE_SHARES), p=list(SITE_SHARES.values())))
    multi = rng.random() < MULTI_ROI_SHARE
    return site, 1 + int(multi) * (1 + int(rng.random() < THREE_ROI_SHARE))


def _severity_in_class(rng: np.random.Generator, label: int) -> float:
    """A N(0, 1) draw conditioned on falling inside the class's interval (inverse CDF)."""
    normal = NormalDist()
    cuts = (0.0, *(normal.cdf(c) for c in SEVERITY_CUTS), 1.0)
    p = cuts[label] + rng.random() * (cuts[label + 1] - cuts[label])
    return normal.inv_cdf(float(np.clip(p, 1e-12, 1 - 1e-12)))


def deal_single_labels(frames: list[tuple[str, int]], multi_labels: dict[int, list[int]], seed: int) -> dict[int, int]:
    """Class of every one-ROI patient, dealt per site so that each site's ROIs hit CLASS_SHARES as closely as
    whole numbers allow (largest remainders), after counting the classes the multi-ROI patients drew."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 1 << 21]))
    dealt: dict[int, int] = {}
    for site in SITE_SHARES:
        members = [i for i, (s, _) in enumerate(frames) if s == site]
        singles = [i for i in members if frames[i][1] == 1]
        taken = np.bincount([c for i in members for c in multi_labels.get(i, [])], minlength=len(CLASS_SHARES))
        wanted = _largest_remainder(np.asarray(CLASS_SHARES) * sum(frames[i][1] for i in members))
        counts = _fit_counts(wanted - taken, len(singles))
        labels = rng.permutation(np.repeat(np.arange(len(CLASS_SHARES)), counts))
        dealt.update({i: int(c) for i, c in zip(singles, labels)})
    return dealt


def _largest_remainder(quotas: np.ndarray) -> np.ndarray:
    counts = np.floor(quotas).astype(int)
    order = np.argsort(-(quotas - counts), kind="stable")
    counts[order[: int(round(quotas.sum())) - counts.sum()]] += 1
    return counts


def _fit_counts(counts: np.ndarray, total: int) -> np.ndarray:
    """Non-negative counts summing to `total`, as close to `counts` as possible."""
    counts = np.clip(counts, 0, None)
    shares = np.asarray(CLASS_SHARES)
    while counts.sum() > total:
        counts[np.argmax(np.where(counts > 0, counts / shares, -1))] -= 1
    while counts.sum() < total:
        counts[np.argmin(counts / shares)] += 1
    return counts


def _anatomy(rng: np.random.Generator) -> dict[str, float]:
    size = rng.uniform(0.93, 1.07)
    half_depth = 11.0 * size
    spinous_tip = 2 * half_depth + 8.3  # back of the arch + spinous process, see phantom._draw_arch
    return {"size": size, "height_mm": 20.0 * rng.uniform(0.94, 1.06), "half_width_mm": 15.0 * size,
            "half_depth_mm": half_depth, "disc_mm": rng.uniform(5.2, 7.0),
            "skin_y_mm": spinous_tip + rng.uniform(2.5, 5.0)}


def _vertebra(rng: np.random.Generator, label: int, t_true: float, anatomy: dict[str, float],
              **lesions: float | int | bool | str) -> VertebraSpec:
    """A vertebra of this patient: bone quality from the true T-score (osteoporosis: thin cortex, coarse,
    vertically striated trabeculae), size jittered around the patient's anatomy."""
    jitter = rng.uniform(0.97, 1.03, size=3)
    return VertebraSpec(
        label=label, height_mm=anatomy["height_mm"] * jitter[0], half_width_mm=anatomy["half_width_mm"] * jitter[1],
        half_depth_mm=anatomy["half_depth_mm"] * jitter[2], y_shift_mm=rng.uniform(-0.8, 0.8),
        trabecular_hu=max(25.0, 175.0 + 35.0 * t_true + 8.0 * rng.standard_normal()),
        cortical_hu=850.0 + 50.0 * t_true, cortex_mm=float(np.clip(1.3 + 0.12 * t_true, 0.7, 1.6)),
        texture_sd_hu=30.0 + 6.0 * max(0.0, -t_true), texture_sigma_mm=0.6 + 0.05 * max(0.0, -t_true),
        texture_anisotropy=1.0 + 0.25 * float(np.clip(-t_true - 1.0, 0.0, 3.0)), **lesions)


def _fractured_vertebra(rng: np.random.Generator, label: int, severity: float, t_true: float,
                        anatomy: dict[str, float]) -> VertebraSpec:
    """A target vertebra: the shape view g and the texture view q are independent noisy copies of severity."""
    noise = np.sqrt(1 - VIEW_LOADING**2)
    g = VIEW_LOADING * severity + noise * rng.standard_normal()
    q = VIEW_LOADING * severity + noise * rng.standard_normal()
    p_crush = 0.1 + 0.3 / (1 + np.exp(-2 * (g - 1.2)))
    deformity = str(rng.choice(["wedge", "biconcave", "crush"], p=[0.6 - p_crush, 0.4, p_crush]))
    return _vertebra(
        rng, label, t_true, anatomy, deformity=deformity,
        height_loss=float(np.clip(0.05 + 0.11 * (g + 1.0), 0.0, 0.6)),
        retropulsion_mm=float(np.clip(1.2 * (g - 1.1), 0.0, 3.5)),
        marrow_shift_hu=float(np.clip(12.0 * (q + 1.0), 0.0, 60.0)),
        condensation_hu=float(90.0 / (1 + np.exp(-1.5 * q))),
        fracture_lines=int(min(4, rng.poisson(max(0.0, 0.8 * (q + 0.7))))),
        gas_cleft=bool(q > 1.5))


def assign_cohorts(plans: list[PatientPlan], seed: int) -> dict[str, str]:
    """patient_id -> cohort. External sites are `external`; the others are split per stratum (the patient's
    worst class): a prospective share first, then train / internal 8:2 of the rest."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 1 << 20]))
    cohorts = {p.patient_id: "external" for p in plans if p.site in EXTERNAL_SITES}
    strata: dict[int, list[str]] = {}
    for p in plans:
        if p.site not in EXTERNAL_SITES:
            strata.setdefault(max(r.label for r in p.rois), []).append(p.patient_id)
    for stratum in sorted(strata):
        ids = list(rng.permutation(strata[stratum]))
        n_prospective = int(round(PROSPECTIVE_SHARE * len(ids)))
        n_internal = int(round(INTERNAL_SHARE * (len(ids) - n_prospective)))
        for rank, pid in enumerate(ids):
            first_internal = rank >= n_prospective and rank < n_prospective + n_internal
            cohorts[str(pid)] = "prospective" if rank < n_prospective else ("internal" if first_internal else "train")
    return cohorts


def check_task(task: str) -> str:
    if task not in TASKS:
        raise ValueError(f"unknown demo task {task!r}; choose one of {list(TASKS)}")
    return task


def sample_cohort(n_patients: int = DEFAULT_PATIENTS, seed: int = 0,
                  task: str = DEFAULT_TASK) -> tuple[list[PatientPlan], pd.DataFrame]:
    """All patient plans and the manifest rows they will produce (no images drawn)."""
    if check_task(task) != DEFAULT_TASK:
        from radfuse.data.demo_vcf import sample_vcf_cohort

        return sample_vcf_cohort(n_patients, seed)
    width = max(4, len(str(n_patients)))
    frames = [site_and_roi_count(seed, i) for i in range(n_patients)]
    multi = {i: sample_patient(seed, i, id_width=width) for i, (_, n) in enumerate(frames) if n > 1}
    dealt = deal_single_labels(frames, {i: [r.label for r in p.rois] for i, p in multi.items()}, seed)
    plans = [multi[i] if i in multi else sample_patient(seed, i, dealt[i], width) for i in range(n_patients)]
    cohorts = assign_cohorts(plans, seed)
    rows = [_manifest_row(p, roi, cohorts[p.patient_id]) for p in plans for roi in p.rois]
    return plans, pd.DataFrame(rows, columns=list(MANIFEST_COLUMNS))


def _manifest_row(plan: PatientPlan, roi: RoiPlan, cohort: str) -> dict[str, object]:
    files = _relative_files(plan)
    return {mf.CASE_ID: f"{plan.patient_id}_roi{roi.mask_label}", mf.PATIENT_ID: plan.patient_id,
            mf.IMAGE: files["image"], mf.MASK: files["mask"], mf.MASK_LABEL: roi.mask_label,
            mf.MASK2: files["mask2"] if plan.second_reader else "", mf.LABEL: str(roi.label),
            mf.SITE: plan.site, mf.COHORT: cohort, "age": plan.age, "sex": plan.sex, "t_score": plan.t_score}


def _relative_files(plan: PatientPlan) -> dict[str, str]:
    name = f"{plan.patient_id}.nii.gz"
    return {"image": f"images/{name}", "mask": f"masks/{name}", "mask2": f"masks2/{name}",
            "mask_repeat": f"masks_repeat/{name}"}


# ---------------------------------------------------------------------------------------------- second reader
def second_reader_mask(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Another reader's outline: each label grown or shrunk in-plane in random smooth patches, by one voxel
    over most of the boundary and by two where the patch is strongest (readers draw slice by slice, so the
    boundary moves in-plane; no slice is added or dropped)."""
    out = labels.copy()
    field = ndimage.gaussian_filter(rng.standard_normal(labels.shape, dtype=np.float32), (0.7, 3.0, 3.0))
    field /= max(float(field.std()), 1e-6)
    for threshold in (0.25, 1.3):
        out = _move_boundary(out, field, threshold)
    return out


def repeat_reading_mask(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The same reader's outline a week later: one in-plane voxel moved in fewer, smaller patches than another
    reader's (`second_reader_mask`), so intra-observer agreement beats inter-observer agreement."""
    field = ndimage.gaussian_filter(rng.standard_normal(labels.shape, dtype=np.float32), (0.7, 3.0, 3.0))
    field /= max(float(field.std()), 1e-6)
    return _move_boundary(labels, field, 0.9)


def _move_boundary(labels: np.ndarray, field: np.ndarray, threshold: float) -> np.ndarray:
    """Grow every label by one in-plane voxel where field > threshold, shrink it where field < -threshold."""
    out = labels.copy()
    cross = ndimage.generate_binary_structure(2, 1)[None]  # in-plane 4-neighbourhood
    for label in np.unique(labels[labels > 0]):
        roi = labels == label
        grown = ndimage.binary_dilation(roi, cross) & (labels == 0)
        rim = roi & ~ndimage.binary_erosion(roi, cross)
        out[grown & (field > threshold)] = label
        out[rim & (field < -threshold)] = 0
    return out


# ---------------------------------------------------------------------------------------------- writing
def _write_image(image: sitk.Image, target: Path) -> None:
    """Write through a temporary name in the same folder (same suffix, so ITK picks the NIfTI writer)."""
    tmp = target.with_name(f".tmp-{os.getpid()}-{target.name}")
    sitk.WriteImage(image, str(tmp), useCompression=True)
    os.replace(tmp, target)


def write_patient(out_dir: str | Path, plan: PatientPlan) -> None:
    """Draw one patient's volume and write image, mask and (if planned) the second reader's mask."""
    out_dir = Path(out_dir)
    files = _relative_files(plan)
    image, labels = draw_volume(plan.volume)
    _write_image(image, out_dir / files["image"])
    _write_image(labels, out_dir / files["mask"])
    if plan.second_reader:
        rng = np.random.default_rng(np.random.SeedSequence([*plan.volume.seed[:2], 2]))
        second = sitk.GetImageFromArray(second_reader_mask(sitk.GetArrayFromImage(labels), rng))
        second.CopyInformation(labels)
        _write_image(second, out_dir / files["mask2"])
    if plan.repeat_reading:
        rng = np.random.default_rng(np.random.SeedSequence([*plan.volume.seed[:2], 4]))
        repeat = sitk.GetImageFromArray(repeat_reading_mask(sitk.GetArrayFromImage(labels), rng))
        repeat.CopyInformation(labels)
        _write_image(repeat, out_dir / files["mask_repeat"])


def _write_patient_args(args: tuple[str, PatientPlan]) -> None:
    write_patient(*args)


def make_cohort(out_dir: str | Path, n_patients: int = DEFAULT_PATIENTS, seed: int = 0,
                processes: int = MAX_PROCESSES, task: str = DEFAULT_TASK) -> Path:
    """Write the demo cohort under `out_dir` (images/, masks/, masks2/, masks_repeat/ for `vcf_acuity`,
    manifest.csv, demo.json); return the manifest path. The manifest is written last, so its presence means the
    cohort is complete."""
    out_dir = Path(out_dir)
    for sub in ("images", "masks", "masks2") + (("masks_repeat",) if check_task(task) != DEFAULT_TASK else ()):
        (out_dir / sub).mkdir(parents=True, exist_ok=True)
    plans, manifest = sample_cohort(n_patients, seed, task)
    jobs = [(str(out_dir), plan) for plan in plans]
    workers = max(1, min(processes, MAX_PROCESSES, len(jobs)))
    if workers == 1:
        for job in jobs:
            _write_patient_args(job)
    else:  # spawn: the caller may hold threads (torch) that a fork would copy in a locked state
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
            list(pool.map(_write_patient_args, jobs, chunksize=4))
    write_json(out_dir / INFO_FILE, _info(n_patients, seed, manifest, task))
    return write_csv(out_dir / MANIFEST_FILE, manifest)


def _info(n_patients: int, seed: int, manifest: pd.DataFrame, task: str = DEFAULT_TASK) -> dict[str, object]:
    info: dict[str, object] = {"generator_version": GENERATOR_VERSION, "n_patients": n_patients, "seed": seed,
                               "n_rois": len(manifest), "sites": {k: vars(v) for k, v in SITES.items()}}
    if task != DEFAULT_TASK:  # the default cohort's demo.json stays as it was
        info["task"] = task
        info["sites"] = {k: v for k, v in info["sites"].items() if k in set(manifest[mf.SITE])}
    return info


def ensure_cohort(out_dir: str | Path, n_patients: int = DEFAULT_PATIENTS, seed: int = 0,
                  processes: int = MAX_PROCESSES, task: str = DEFAULT_TASK) -> Path:
    """The manifest of a demo cohort in `out_dir`, generated on first use (or when made with other settings)."""
    out_dir = Path(out_dir)
    info_path, manifest_path = out_dir / INFO_FILE, out_dir / MANIFEST_FILE
    if manifest_path.is_file() and info_path.is_file():
        info = json.loads(info_path.read_text(encoding="utf-8"))
        wanted = {"generator_version": GENERATOR_VERSION, "n_patients": n_patients, "seed": seed}
        if all(info.get(k) == v for k, v in wanted.items()) and info.get("task", DEFAULT_TASK) == task:
            return manifest_path
    return make_cohort(out_dir, n_patients, seed, processes, task)


# ---------------------------------------------------------------------------------------------- CLI
def summary(manifest: pd.DataFrame) -> str:
    """Counts of ROIs per class, site and cohort, and of patients, multi-ROI patients and second readings."""
    lines = [f"{len(manifest)} ROIs from {manifest[mf.PATIENT_ID].nunique()} patients"]
    for column in (mf.LABEL, mf.SITE, mf.COHORT):
        counts = Counter(manifest[column].astype(str))
        lines.append(f"  {column:7s} " + "  ".join(f"{k}: {counts[k]}" for k in sorted(counts)))
    per_patient = manifest.groupby(mf.PATIENT_ID).size()
    lines.append(f"  patients with 2 / 3 ROIs: {(per_patient == 2).sum()} / {(per_patient == 3).sum()}")
    second = manifest[mf.MASK2].fillna("").astype(str).str.len() > 0
    lines.append(f"  ROIs with a second reader's mask: {int(second.sum())}")
    if "mask_repeat" in manifest.columns:
        repeat = manifest["mask_repeat"].fillna("").astype(str).str.len() > 0
        lines.append(f"  ROIs with a repeat reading by the first reader: {int(repeat.sum())}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m radfuse.data.demo", description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--patients", type=int, default=None,
                        help=f"default {DEFAULT_PATIENTS} (astlof) or 109 (vcf_acuity: half of Wang 2025's 218)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--processes", type=int, default=MAX_PROCESSES, help=f"at most {MAX_PROCESSES}")
    parser.add_argument("--task", choices=TASKS, default=DEFAULT_TASK,
                        help="astlof: 3-class multi-site cohort (Liu 2025); vcf_acuity: acute vs chronic (Wang 2025)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    if args.patients is None:
        from radfuse.data.demo_vcf import DEFAULT_VCF_PATIENTS

        args.patients = DEFAULT_PATIENTS if args.task == DEFAULT_TASK else DEFAULT_VCF_PATIENTS
    path = make_cohort(args.out_dir, args.patients, args.seed, args.processes, args.task)
    print(f"demo cohort written to {path}")
    print(summary(pd.read_csv(path, dtype=str, keep_default_na=False)))
    print(f"  time: {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
