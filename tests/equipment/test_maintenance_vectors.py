"""The maintenance vectors (tests/equipment/maintenance_vectors.json): calendar, meter, whichever
first, fixed and floating give the due points docs/equipment.md documents."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from gateway.config import parse_duration
from gateway.equipment.maintenance import Done, Plan, status

VECTORS = json.loads((Path(__file__).parent / "maintenance_vectors.json").read_text())["cases"]


def day_ms(text: str) -> int:
    return int(dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC).timestamp() * 1000)


def plan_of(doc: dict) -> Plan:
    return Plan(task="service", mode=doc["mode"],
                every_s=parse_duration(doc["every"], "every") if "every" in doc else None,
                every_hours=doc.get("every_hours"), every_cycles=doc.get("every_cycles"),
                start_ms=day_ms(doc["start"]), start_hours=doc.get("start_hours", 0.0),
                start_cycles=doc.get("start_cycles", 0.0))


@pytest.mark.parametrize("case", VECTORS, ids=[c["id"] for c in VECTORS])
def test_vector(case):
    history = [Done(day_ms(h["at"]), h.get("hours"), h.get("cycles")) for h in case["history"]]
    now = case["now"]
    got = status(plan_of(case["plan"]), history, day_ms(now["at"]), now.get("hours"), now.get("cycles"),
                 case.get("due_soon_pct", 10))
    want = case["expected"]
    if "due_date" in want:
        assert got.due["calendar"] == day_ms(want["due_date"]), case["id"]
    for axis in ("hours", "cycles"):
        if f"due_{axis}" in want:
            assert got.due[axis] == pytest.approx(want[f"due_{axis}"]), case["id"]
    assert got.state == want["state"], case["id"]
    if "axis" in want:
        assert got.axis == want["axis"], case["id"]


def test_the_textbook_pair_is_in_the_vectors():
    by_id = {c["id"]: c for c in VECTORS}
    assert by_id["meter-floating-late"]["expected"]["due_hours"] == 1200
    assert by_id["meter-fixed-late"]["expected"]["due_hours"] == 1000
