"""Maintenance plans: when is the next service due, and is it due soon or overdue (no I/O, no clock).

A plan has up to three triggers, each an interval on its own axis: calendar (``every_s``), hours
running (``every_hours``) and cycles (``every_cycles``). With more than one, whichever comes first
makes the plan due. Each plan says explicitly how the next due point follows a service done:

- **floating**: from the reading at which the service was done (every 500 h, done at 700 h → next
  due at 1,200 h). Right for wear parts: the interval is what the part lives.
- **fixed**: on the grid ``start + k × interval`` whatever happened (done at 700 h → 1,000 h). A
  service closes the point that was due; done so late that it passed further grid points, the next
  due is the first grid point after the service (done at 1,100 h for the 500 h point → 1,500 h).
  Right for compliance (inspections on set dates).

Under both, a service done early (before its point) closes that point: fixed → the next grid
point; floating → from the early reading. A service recorded without a meter reading is taken as
done exactly at the point that was due. docs/equipment.md has the same rules as worked examples,
and tests/equipment/maintenance_vectors.json checks every one of them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

AXES = ("calendar", "hours", "cycles")
MODES = ("fixed", "floating")


@dataclass(frozen=True)
class Plan:
    """A maintenance plan: its triggers, mode and the baseline its first due point counts from."""

    task: str
    mode: str
    every_s: float | None = None
    every_hours: float | None = None
    every_cycles: float | None = None
    start_ms: int = 0
    start_hours: float = 0.0
    start_cycles: float = 0.0

    def axes(self) -> dict[str, tuple[float, float]]:
        """Axis → (interval, baseline) for each trigger the plan has (calendar in ms)."""
        out: dict[str, tuple[float, float]] = {}
        if self.every_s:
            out["calendar"] = (self.every_s * 1000.0, float(self.start_ms))
        if self.every_hours:
            out["hours"] = (self.every_hours, self.start_hours)
        if self.every_cycles:
            out["cycles"] = (self.every_cycles, self.start_cycles)
        return out


@dataclass(frozen=True)
class Done:
    """A service done: when, and the meters then (None: not known)."""

    ts_ms: int
    hours: float | None = None
    cycles: float | None = None

    def at(self, axis: str) -> float | None:
        """This service's reading on one axis."""
        return float(self.ts_ms) if axis == "calendar" else self.hours if axis == "hours" else self.cycles


def next_due(mode: str, interval: float, base: float, due: float, done_at: float | None) -> float:
    """The due point after a service done at ``done_at`` that closed the point ``due``."""
    if done_at is None:
        done_at = due  # no reading: taken as done on time
    if mode == "floating":
        return done_at + interval
    grid_after = base + (math.floor((done_at - base) / interval) + 1) * interval
    return max(due + interval, grid_after)


def due_points(plan: Plan, history: Iterable[Done]) -> dict[str, float]:
    """Axis → the next due point after replaying ``history`` (oldest first) from the baseline."""
    axes = plan.axes()
    due = {axis: base + interval for axis, (interval, base) in axes.items()}
    for done in sorted(history, key=lambda d: d.ts_ms):
        for axis, (interval, base) in axes.items():
            due[axis] = next_due(plan.mode, interval, base, due[axis], done.at(axis))
    return due


@dataclass(frozen=True)
class Status:
    """Where a plan stands now: ``ok``, ``due-soon`` or ``overdue``, and which axis decides."""

    state: str
    axis: str
    due: dict[str, float]
    remaining: dict[str, float]  # due point minus the current reading, per axis (negative: overdue)


def status(plan: Plan, history: Iterable[Done], now_ms: int, hours: float | None, cycles: float | None,
           soon_pct: float) -> Status:
    """The plan's state at ``now_ms`` with the given meters (an unknown meter never makes it due).

    Overdue: any axis has reached its due point. Due soon: any axis is within ``soon_pct`` % of its
    interval from its due point. The deciding axis is the one with the least remaining share.
    """
    due = due_points(plan, history)
    current = {"calendar": float(now_ms), "hours": hours, "cycles": cycles}
    remaining: dict[str, float] = {}
    share: dict[str, float] = {}
    for axis, (interval, _) in plan.axes().items():
        reading = current[axis]
        if reading is None:
            continue
        remaining[axis] = due[axis] - reading
        share[axis] = remaining[axis] / interval
    if not share:
        return Status("ok", "", due, remaining)
    axis = min(share, key=lambda a: (share[a], AXES.index(a)))
    if share[axis] <= 0:
        state = "overdue"
    elif share[axis] <= soon_pct / 100.0:
        state = "due-soon"
    else:
        state = "ok"
    return Status(state, axis, due, remaining)
