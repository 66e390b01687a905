"""What the manifest validator reports: one `Problem` per finding, naming the case, the row, the file and the fix.

A problem is an error (the run is refused) or a warning (a judgement: the run goes on and the user is told, e.g. a
missing clinical value that the pipeline imputes).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

ERROR, WARNING = "error", "warning"
WHOLE_TABLE = "*"  # case_id of a problem of the manifest as a whole (a missing column, a class too small)


@dataclass(frozen=True)
class Problem:
    case_id: str
    column: str
    file: str
    message: str
    fix: str
    row: int | None = None  # the manifest row as a spreadsheet shows it: the header is row 1, the first case row 2
    severity: str = ERROR

    def __str__(self) -> str:
        who = "manifest" if self.case_id == WHOLE_TABLE else f"case {printable(self.case_id)}"
        where = ([f"row {self.row}"] if self.row else []) + ([f"file: {self.file}"] if self.file else [])
        where_text = f" ({', '.join(where)})" if where else ""
        head = "warning: " if self.severity == WARNING else ""
        return f"{head}[{who}] {self.column}: {self.message}{where_text}. Fix: {self.fix}"

    @property
    def is_error(self) -> bool:
        return self.severity == ERROR


def printable(value: object) -> str:
    """A case id as text a terminal shows faithfully: empty ids say so, control characters are escaped."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or str(value) == "":
        return "<empty>"
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(value))


def case_text(value: object) -> str:
    """A manifest's case id as text ('' for an empty cell, which pandas reads as NaN)."""
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)


def errors(problems: list[Problem]) -> list[Problem]:
    return [p for p in problems if p.is_error]


class ManifestInvalid(ValueError):
    def __init__(self, problems: list[Problem], manifest: str = "manifest"):
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{manifest}: {len(problems)} problem(s):\n{lines}")
