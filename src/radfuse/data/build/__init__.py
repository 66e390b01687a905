"""Manifest builders: `python -m radfuse.data.build <source> SOURCE --out manifest.csv [--grades grades.csv]`.

One module per kind of source (folder, totalseg, verse, pyradiomics_csv, dicom_seg, rtstruct) finds the ROIs;
`common` joins the grades, writes the manifest and runs the validator on it (docs/build.md).
"""

from radfuse.data.build.common import Build, BuildError, Roi, Skipped, join_grades, write_manifest  # noqa: F401
