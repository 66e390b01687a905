"""Label names of segmentation files: TotalSegmentator's header label map, its class map, and the VerSe numbering.

Users name vertebrae (`L1`), segmentations number them, and each tool numbers differently: TotalSegmentator's
`total` task has L1 = 31, VerSe has L1 = 20. Recent TotalSegmentator versions write the label map into the NIfTI
header (an extension holding a CaretExtension XML `LabelTable`), so a file that carries one is read by name;
the class maps below are for files without it. The builders resolve names to numbers, so `mask_label` in a built
manifest is always the number stored in the file.
"""

from __future__ import annotations

import gzip
import re
import struct
import xml.etree.ElementTree as ET
from pathlib import Path

_VERTEBRAE = ([f"C{i}" for i in range(1, 8)] + [f"T{i}" for i in range(1, 13)] + [f"L{i}" for i in range(1, 6)])
# VerSe (Sekuboyina et al. 2021; Loeffler et al. 2020): 1-7 = C1-C7, 8-19 = T1-T12, 20-24 = L1-L5, 25 = L6
# (a transitional lumbar vertebra), 26 = sacrum, 28 = T13 (an extra thoracic vertebra).
VERSE_LABELS: dict[int, str] = {i + 1: name for i, name in enumerate(_VERTEBRAE)} | {25: "L6", 26: "sacrum",
                                                                                       28: "T13"}
# TotalSegmentator >= 2.0, task `total`: 25 = sacrum, 26 = vertebrae_S1, 27 = L5 ... 31 = L1, 32 = T12 ... 43 = T1,
# 44 = C7 ... 50 = C1 (the per-structure files are named vertebrae_<name>.nii.gz).
TOTALSEG_LABELS: dict[int, str] = {25: "sacrum", 26: "vertebrae_S1"} | {
    27 + i: f"vertebrae_{name}" for i, name in enumerate(reversed(_VERTEBRAE))}
LABEL_MAPS = {"verse": VERSE_LABELS, "totalseg": TOTALSEG_LABELS}


def roi_name(name: str) -> str:
    """The short ROI name: `vertebrae_L1` -> `L1`; other names are kept, blanks become '_'."""
    short = re.sub(r"^vertebra[e]?_", "", name.strip())
    return re.sub(r"\s+", "_", short)


def file_stem(path: str | Path) -> str:
    """`vertebrae_L1.nii.gz` -> `vertebrae_L1`."""
    stem = Path(path).name
    for suffix in (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd"):
        if stem.endswith(suffix):
            return stem[: -len(suffix)]
    return stem


def file_roi_name(path: str | Path) -> str:
    """ROI name of a per-structure file: `vertebrae_L1.nii.gz` -> `L1`."""
    return roi_name(file_stem(path))


def header_label_map(path: str | Path) -> dict[int, str]:
    """{label number: name} from a NIfTI file's header extension (TotalSegmentator, Slicer); {} when it has none."""
    path = Path(path)
    if not path.name.endswith((".nii", ".nii.gz")):
        return {}
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rb") as stream:
            head = stream.read(352)
            if len(head) < 352 or struct.unpack("<i", head[:4])[0] != 348 or head[348] == 0:
                return {}
            vox_offset = int(struct.unpack("<f", head[108:112])[0])
            extensions = stream.read(max(vox_offset - 352, 0))
    except (OSError, EOFError, struct.error):
        return {}  # an unreadable file is the validator's to report, with its message
    labels: dict[int, str] = {}
    position = 0
    while position + 8 <= len(extensions):
        size, _code = struct.unpack("<ii", extensions[position:position + 8])
        if size < 8:
            break
        labels.update(_label_table(extensions[position + 8:position + size]))
        position += size
    return labels


def _label_table(content: bytes) -> dict[int, str]:
    text = content.rstrip(b"\x00 \n").decode("utf-8", errors="replace")
    if "<LabelTable" not in text:
        return {}
    try:
        root = ET.fromstring(text.strip())
    except ET.ParseError:
        return {}
    out = {}
    for label in root.iter("Label"):
        key, name = label.get("Key"), (label.text or "").strip()
        if key is not None and key.lstrip("-").isdigit() and name and int(key) != 0:
            out[int(key)] = name
    return out
