"""Per-ROI on-disk result cache: a killed run resumes where it stopped, an unchanged rerun does no work.

One JSON file per ROI result (features, diagnostics, or the failure reason), written atomically, named by a key
that hashes everything the values depend on: image content, mask content, label, params (+ radfuse options that
change values) and the PyRadiomics version. Floats round-trip exactly through JSON (shortest repr).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from radfuse.artifacts import file_sha256, write_text


def roi_key(image_hash: str, mask_hash: str, label: int | None, params_hash: str, pyradiomics_version: str) -> str:
    blob = json.dumps([image_hash, mask_hash, None if label is None else int(label), params_hash, pyradiomics_version])
    return hashlib.sha256(blob.encode()).hexdigest()


class ContentHashes:
    """Content hash per file, computed once per run (a scan shared by many ROIs is read once).

    With `index`, hashes are also remembered across runs under the file's (size, mtime): a warm rerun over
    thousands of CT scans then reads none of them. A file rewritten in place gets a new mtime and is rehashed.
    """

    def __init__(self, index: str | Path | None = None) -> None:
        self.index = Path(index) if index is not None else None
        self._known: dict[str, str] = {}
        self._stored: dict[str, list] = {}
        self._changed = False
        if self.index is not None and self.index.is_file():
            with contextlib.suppress(ValueError):
                self._stored = json.loads(self.index.read_text(encoding="utf-8"))

    def __call__(self, path: str | Path) -> str:
        path = str(path)
        if path not in self._known:
            stat = os.stat(path)
            stored = self._stored.get(path)
            if stored is not None and stored[:2] == [stat.st_size, stat.st_mtime_ns]:
                self._known[path] = stored[2]
            else:
                self._known[path] = file_sha256(path)
                if not Path(path).is_dir():  # a folder's mtime misses files rewritten in place: always hash
                    self._stored[path] = [stat.st_size, stat.st_mtime_ns, self._known[path]]
                    self._changed = True
        return self._known[path]

    def save(self) -> None:
        """Write the index if a file was hashed (a warm rerun writes nothing)."""
        if self.index is not None and self._changed:
            write_text(self.index, json.dumps(self._stored))


class RoiCache:
    """`<root>/<key[:2]>/<key>.json` holding {"features": {...}, "diagnostics": {...}} or {"error": reason}."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def has(self, key: str) -> bool:
        return self.path(key).is_file()

    def get(self, key: str) -> dict[str, Any]:
        return json.loads(self.path(key).read_text(encoding="utf-8"))

    def put(self, key: str, record: dict[str, Any]) -> None:
        write_text(self.path(key), json.dumps(record))
