"""Stream cached per-ROI results into the feature and diagnostics tables, chunk by chunk (memory stays flat).

The feature table holds the columns every successful ROI produced; an ROI lacking some of them (a LoG sigma
PyRadiomics skipped because the ROI is too small for it) is a failure, named with the missing columns, so the
matrix handed to modelling never has holes it did not ask for.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Iterable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from radfuse.artifacts import KEY_COLUMN, atomic_path
from radfuse.extract.params import feature_column
from radfuse.extract.roi_cache import RoiCache

CHUNK_ROWS = 256


def reference_columns(entries: list[tuple[str, str]], cache: RoiCache) -> list[str]:
    """Feature keys in PyRadiomics order: those of the ROIs with the most common (largest) feature set."""
    counts: Counter[tuple[str, ...]] = Counter()
    for _, key in entries:
        counts[tuple(cache.get(key)["features"])] += 1
    if not counts:
        return []
    return list(max(counts, key=lambda cols: (len(cols), counts[cols])))


def write_feature_tables(entries: list[tuple[str, str]], cache: RoiCache, features_path: str | Path,
                         diagnostics_path: str | Path) -> list[tuple[str, str]]:
    """Write `radiomics.parquet` and `radiomics_diagnostics.parquet` for (case_id, key) entries, in order.

    Returns (case_id, reason) for entries left out because their feature set is incomplete.
    """
    columns = reference_columns(entries, cache)
    incomplete, kept = [], []
    for case_id, key in entries:
        have = set(cache.get(key)["features"])
        lacking = [c for c in columns if c not in have]
        if lacking:
            incomplete.append((case_id, f"missing {len(lacking)} features, e.g. {lacking[:3]} (ROI too small "
                                        "for a filter setting)"))
        else:
            kept.append((case_id, key))
    _stream(kept, cache, features_path, "features", columns, np.float64)
    diagnostic_columns = _union((cache.get(k)["diagnostics"] for _, k in kept))
    _stream(kept, cache, diagnostics_path, "diagnostics", diagnostic_columns, None)
    return incomplete


def _union(dicts: Iterable[dict]) -> list[str]:
    seen: dict[str, None] = {}
    for d in dicts:
        seen.update(dict.fromkeys(d))
    return list(seen)


def _stream(entries: list[tuple[str, str]], cache: RoiCache, path: str | Path, part: str, columns: list[str],
            dtype: type | None) -> None:
    names = [feature_column(c) for c in columns] if part == "features" else columns
    value_type = pa.float64() if dtype is not None else pa.string()
    schema = pa.schema([(KEY_COLUMN, pa.string())] + [(n, value_type) for n in names])
    with atomic_path(path) as tmp:
        with pq.ParquetWriter(tmp, schema) as writer:
            for start in range(0, max(len(entries), 1), CHUNK_ROWS):
                chunk = entries[start:start + CHUNK_ROWS]
                rows = [cache.get(key)[part] for _, key in chunk]
                # column arrays straight to Arrow: pandas' per-column conversion dominated a warm rerun
                if dtype is not None:
                    matrix = np.array([[r.get(c, np.nan) for c in columns] for r in rows], dtype=float)
                    matrix = matrix.reshape(len(rows), len(columns))
                    arrays = [float_array(matrix[:, j]) for j in range(len(columns))]
                else:
                    arrays = [string_array([r.get(c) for r in rows]) for c in columns]
                ids = string_array([case_id for case_id, _ in chunk])
                writer.write_table(pa.Table.from_arrays([ids, *arrays], schema=schema))


def float_array(values: np.ndarray) -> pa.Array:
    """`pa.array(values, pa.float64())` (NaN kept as a value) from the buffer: `pa.array` imports pandas."""
    values = np.ascontiguousarray(values, dtype=np.float64)
    return pa.Array.from_buffers(pa.float64(), len(values), [None, pa.py_buffer(values)])


def string_array(values: list[str | None]) -> pa.Array:
    """`pa.array(values, pa.string())` (None as null) from offsets and UTF-8 bytes, without pandas."""
    encoded = [None if v is None else v.encode("utf-8") for v in values]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int32)
    np.cumsum([len(e) if e is not None else 0 for e in encoded], out=offsets[1:])
    valid = np.array([e is not None for e in encoded], dtype=bool)
    nulls = int(len(valid) - valid.sum())
    bitmap = pa.py_buffer(np.packbits(valid, bitorder="little")) if nulls else None
    data = pa.py_buffer(b"".join(e for e in encoded if e is not None))
    return pa.Array.from_buffers(pa.string(), len(encoded), [bitmap, pa.py_buffer(offsets), data], null_count=nulls)


def read_feature_matrix(entries: list[tuple[str, str]], cache: RoiCache, columns: list[str]) -> np.ndarray:
    """(n ROIs, n features) float array of the given feature keys, for ICC."""
    return np.array([[cache.get(key)["features"][c] for c in columns] for _, key in entries], dtype=float)
