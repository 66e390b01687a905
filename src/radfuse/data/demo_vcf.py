"""The `vcf_acuity` demo task: a one-centre CT cohort shaped for Wang 2025, acute vs chronic compression fracture.

Wang 2025 studied 218 patients from one hospital (171 acute, 47 chronic by MRI oedema), split at random into 175
training and 43 test patients, one fractured vertebra each; 30 training patients were outlined again by the same
radiologist a week later and by a second one (intra- and inter-observer ICC); age, sex and BMD were recorded. This
module plans such a cohort (scaled down: 109 patients by default) on the phantom of `radfuse.data.phantom`.

Each fracture has mild height loss whatever its age, so shape does not tell the classes apart. Acuity shows
through two independent noisy views (each N(+-0.9, 1) by class), so that neither alone separates the classes:
- a *marrow* view d: chronic fractures are sclerotic (denser marrow, a sclerotic band under the endplate, a
  thicker, denser cortex: sharper margins); acute ones oedematous (lower density, blurred, lower-contrast
  trabeculae). Bone density (BMD) varies far more between patients, so mean HU in the ROI overlaps.
- a *fresh-injury* view e: acute fractures have fracture lines and paravertebral swelling (denser fat and muscle
  within 6 mm of the body: seen only by a crop with a margin, as Wang's margin experiment suggests); old ones
  sometimes a gas cleft (intravertebral vacuum).
The clinical columns are drawn without regard to the class (Wang does not report them by class).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from radfuse.data import manifest as mf
from radfuse.data.demo import SITES, PatientPlan, RoiPlan, _anatomy, _largest_remainder, _relative_files, _vertebra
from radfuse.data.phantom import VertebraSpec, VolumeSpec

CLASSES = ("acute", "chronic")
ACUTE_SHARE = 171 / 218
INTERNAL_SHARE = 43 / 218  # Wang's test set
ICC_SHARE = 30 / 175  # of the training patients
MIN_ICC_PATIENTS = 3  # an ICC needs a few subjects even in a tiny cohort
DEFAULT_VCF_PATIENTS = 109  # half of Wang's 218, so six margin models train quickly on 2 cores
SITE = "A"  # one centre: the demo's site A protocol (0.8 mm pixels, 1 mm slices)
VIEW_SHIFT = 0.9  # each view is N(-0.9, 1) or N(+0.9, 1) by class
MASK_REPEAT = mf.MASK_REPEAT
CLINICAL_COLUMNS = ("age", "sex", "t_score")  # t_score: the BMD T-score (DXA), as in the ASTLOF demo
MANIFEST_COLUMNS = (mf.CASE_ID, mf.PATIENT_ID, mf.IMAGE, mf.MASK, mf.MASK_LABEL, mf.MASK2, MASK_REPEAT, mf.LABEL,
                    mf.SITE, mf.COHORT, *CLINICAL_COLUMNS)


def deal_labels(n_patients: int, seed: int) -> list[int]:
    """0 (acute) / 1 (chronic) for every patient, at Wang's shares as closely as whole numbers allow."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 1 << 22]))
    counts = _largest_remainder(np.array([ACUTE_SHARE, 1 - ACUTE_SHARE]) * n_patients)
    return [int(c) for c in rng.permutation(np.repeat([0, 1], counts))]


def sample_vcf_patient(seed: int, index: int, label: int, id_width: int = 4) -> PatientPlan:
    """One patient: clinical data (Wang's Table 1), the fractured vertebra between two intact ones."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, index, 5]))
    age_z = rng.standard_normal()
    age = int(np.clip(round(63.1 + 15.7 * age_z), 21, 97))
    t_true = -2.3 + 1.24 * (-0.4 * age_z + np.sqrt(1 - 0.4**2) * rng.standard_normal())  # older: lower BMD
    bmd = round(float(t_true + 0.25 * rng.standard_normal()), 2)  # DXA measures another site, with error
    sex = "F" if rng.random() < 119 / 218 else "M"
    anatomy = _anatomy(rng)
    target = acuity_vertebra(rng, 1, chronic=bool(label), t_true=t_true, anatomy=anatomy)
    column = (_vertebra(rng, 0, t_true, anatomy), target, _vertebra(rng, 0, t_true, anatomy))
    volume = VolumeSpec(site=SITES[SITE], vertebrae=column, disc_mm=anatomy["disc_mm"],
                        skin_y_mm=anatomy["skin_y_mm"], seed=(seed, index, 1))
    return PatientPlan(index=index, patient_id=f"P{index + 1:0{id_width}d}", site=SITE, age=age, sex=sex,
                       t_score=bmd, second_reader=False, rois=(RoiPlan(1, label, float(target.marrow_shift_hu)),),
                       volume=volume)


def acuity_vertebra(rng: np.random.Generator, label: int, chronic: bool, t_true: float,
                    anatomy: dict[str, float]) -> VertebraSpec:
    """The fractured vertebra: the marrow view d and the fresh-injury view e, independent given the class."""
    sign = 1.0 if chronic else -1.0
    d = sign * VIEW_SHIFT + rng.standard_normal()  # + sclerosis, - oedema
    e = -sign * VIEW_SHIFT + rng.standard_normal()  # + fracture lines and swelling
    deformity = str(rng.choice(["wedge", "biconcave"], p=[0.6, 0.4]))
    vertebra = _vertebra(
        rng, label, t_true, anatomy, deformity=deformity, height_loss=float(rng.uniform(0.08, 0.25)),
        marrow_shift_hu=float(30.0 * d), condensation_hu=float(70.0 / (1 + np.exp(-2.0 * (d - 0.5)))),
        fracture_lines=int(min(4, rng.poisson(max(0.0, 0.9 * (e + 0.5))))),
        gas_cleft=bool(chronic and e < -2.0), haematoma_hu=float(np.clip(30.0 * (e + 0.6), 0.0, 75.0)))
    oedema, sclerosis = float(np.clip(-d, 0.0, 2.5)), float(np.clip(d, 0.0, 2.5))
    return replace(vertebra, texture_sigma_mm=vertebra.texture_sigma_mm * (1 + 0.12 * oedema),
                   texture_sd_hu=vertebra.texture_sd_hu * (1 - 0.1 * oedema),
                   cortex_mm=vertebra.cortex_mm + 0.2 * sclerosis, cortical_hu=vertebra.cortical_hu + 60 * sclerosis)


def assign_vcf_cohorts(plans: list[PatientPlan], seed: int) -> dict[str, str]:
    """patient_id -> `train` / `internal` (Wang's random test set, stratified by class)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 1 << 23]))
    cohorts: dict[str, str] = {}
    for label in (0, 1):
        ids = list(rng.permutation([p.patient_id for p in plans if p.rois[0].label == label]))
        n_internal = int(round(INTERNAL_SHARE * len(ids)))
        cohorts.update({str(pid): "internal" if rank < n_internal else "train" for rank, pid in enumerate(ids)})
    return cohorts


def icc_subset(plans: list[PatientPlan], cohorts: dict[str, str], seed: int) -> set[str]:
    """Training patients outlined again by both readers: ICC_SHARE of them, at least MIN_ICC_PATIENTS."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 1 << 24]))
    train = [p.patient_id for p in plans if cohorts[p.patient_id] == "train"]
    n = min(len(train), max(MIN_ICC_PATIENTS, int(round(ICC_SHARE * len(train)))))
    return {str(pid) for pid in rng.choice(train, size=n, replace=False)} if n else set()


def sample_vcf_cohort(n_patients: int = DEFAULT_VCF_PATIENTS, seed: int = 0) -> tuple[list[PatientPlan], pd.DataFrame]:
    """All patient plans and their manifest rows (no images drawn)."""
    width = max(4, len(str(n_patients)))
    labels = deal_labels(n_patients, seed)
    plans = [sample_vcf_patient(seed, i, labels[i], width) for i in range(n_patients)]
    cohorts = assign_vcf_cohorts(plans, seed)
    reread = icc_subset(plans, cohorts, seed)
    plans = [replace(p, second_reader=True, repeat_reading=True) if p.patient_id in reread else p for p in plans]
    rows = [_manifest_row(p, cohorts[p.patient_id]) for p in plans]
    return plans, pd.DataFrame(rows, columns=list(MANIFEST_COLUMNS))


def _manifest_row(plan: PatientPlan, cohort: str) -> dict[str, object]:
    files, roi = _relative_files(plan), plan.rois[0]
    return {mf.CASE_ID: f"{plan.patient_id}_roi{roi.mask_label}", mf.PATIENT_ID: plan.patient_id,
            mf.IMAGE: files["image"], mf.MASK: files["mask"], mf.MASK_LABEL: roi.mask_label,
            mf.MASK2: files["mask2"] if plan.second_reader else "",
            MASK_REPEAT: files["mask_repeat"] if plan.repeat_reading else "", mf.LABEL: CLASSES[roi.label],
            mf.SITE: plan.site, mf.COHORT: cohort, "age": plan.age, "sex": plan.sex, "t_score": plan.t_score}
