"""`python -m radfuse.data.build <source> SOURCE --out manifest.csv [--grades FILE]`: write a manifest from a folder
tree, TotalSegmentator output, a VerSe / BIDS tree, a PyRadiomics batch CSV, DICOM-SEG or RTSTRUCT, say what was
skipped and why (per case), and validate it. Exit 0: written and valid; 2: nothing written or the validator refused
it (every problem is printed; the manifest is kept so you can fix it)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from radfuse.data.build import common
from radfuse.data.build.common import BuildError
from radfuse.data.build.labels import LABEL_MAPS
from radfuse.data.manifest import LABEL
from radfuse.data.problems import errors

SOURCES = ("folder", "totalseg", "verse", "pyradiomics", "dicom-seg", "rtstruct")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m radfuse.data.build", description=__doc__.split("\n\n")[0])
    p.add_argument("source", choices=SOURCES, help="the kind of source")
    p.add_argument("path", type=Path, help="its folder (a PyRadiomics CSV: the file)")
    p.add_argument("--out", "-o", type=Path, required=True, help="the manifest.csv to write")
    p.add_argument("--grades", type=Path, help="CSV / XLSX with the class of each ROI (joined by patient and ROI)")
    p.add_argument("--grade-patient", default="patient_id", help="its patient column (default patient_id)")
    p.add_argument("--grade-roi", default="roi", help="its ROI-name column (default roi; absent = one grade per "
                                                      "patient)")
    p.add_argument("--grade-label", default="label", help="its class column (default label)")
    p.add_argument("--rois", nargs="*", help="keep only these ROI names / patterns (L1 L2, 'vertebrae_*', 'T*')")
    p.add_argument("--image", nargs="*", help="folder/totalseg: image patterns in a patient folder (a pattern ending "
                                              "in '/' is a DICOM series folder)")
    p.add_argument("--masks", nargs="*", help="folder/totalseg: mask patterns in a patient folder")
    p.add_argument("--label-names", choices=sorted(LABEL_MAPS), help="folder: names of the labels of masks whose "
                                                                     "header names none")
    p.add_argument("--mask-dir", type=Path, help="dicom-seg/rtstruct: where the NIfTI masks go (default: masks/ "
                                                 "beside the manifest)")
    p.add_argument("--new", action="store_true", help="new patients to score with a finished study (radfuse score): "
                                                     "no grades needed (--grades may hold their clinical "
                                                     "values only), an ROI without a label is fine")
    p.add_argument("--folds", type=int, default=1, help="validate with this many CV folds (default 1: not checked)")
    p.add_argument("--modality", default="ct", choices=("ct", "other"), help="validator modality (default ct)")
    return p


def collect(args: argparse.Namespace) -> common.Build:
    """The ROIs of the source, before grades."""
    from radfuse.data.build import folder, totalseg

    patterns = {"image_patterns": args.image} if args.image else {}
    if args.masks:
        patterns["mask_patterns"] = args.masks
    if args.source == "folder":
        names = LABEL_MAPS[args.label_names] if args.label_names else None
        return folder.build_folder(args.path, label_names=names, select=args.rois, **patterns)
    if args.source == "totalseg":
        return totalseg.build_totalseg(args.path, select=args.rois or totalseg.DEFAULT_SELECT, **patterns)
    if args.source == "verse":
        from radfuse.data.build.verse import build_verse

        return build_verse(args.path, select=args.rois)
    if args.source == "pyradiomics":
        from radfuse.data.build.pyradiomics_csv import build_pyradiomics_csv

        return build_pyradiomics_csv(args.path, need_grades=args.grades is None)
    mask_dir = args.mask_dir or args.out.resolve().parent / "masks"
    if args.source == "dicom-seg":
        from radfuse.data.build.dicom_seg import build_dicom_seg

        return build_dicom_seg(args.path, mask_dir, args.rois)
    from radfuse.data.build.rtstruct import build_rtstruct

    return build_rtstruct(args.path, mask_dir, args.rois)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        build = collect(args)
        if args.grades is not None:
            common.join_grades(build, args.grades, args.grade_patient, args.grade_roi or None, args.grade_label,
                               require_label=not args.new)
        frame = common.write_manifest(build, args.out)
    except BuildError as err:
        print(f"[radfuse] error: {err}", file=sys.stderr)
        return 2
    print(common.report(build, frame, args.out))
    problems = common.validate_written(args.out, n_folds=0 if args.new else args.folds, modality=args.modality)
    if args.new:  # cases to score: their class is what the study predicts
        problems = [p for p in problems if not (p.column == LABEL and p.message == "no label")]
    for problem in problems:
        print(problem, file=sys.stderr)
    failed = errors(problems)
    after = (f"python -m radfuse.score {args.out} --study RUN_DIR --out DIR" if args.new else
             f"python -m radfuse.init STUDY_DIR --manifest {args.out}")
    print(f"validated {args.out}: {len(failed)} error(s), {len(problems) - len(failed)} warning(s)"
          + ("" if failed else f": valid. Next: {after}"))
    return 2 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
