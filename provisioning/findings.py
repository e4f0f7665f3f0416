"""What every `storegw doctor` check returns: a Finding (kept apart so check modules need not import doctor)."""

from __future__ import annotations

from dataclasses import dataclass

OK, WARN, FAIL = "ok", "warn", "FAIL"


@dataclass
class Finding:
    """One check's outcome."""

    check: str
    level: str
    text: str
    fix: str = ""
