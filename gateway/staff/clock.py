"""Is the board's clock to be trusted for TOTP?

A Raspberry Pi before the Pi 5 has no battery-backed clock: after an offline reboot it may run
from the last time it saved, minutes to months wrong, and TOTP codes are then accepted for the
wrong time (or an attacker's recorded codes come back into their window). The rule, in order:

1. **Never** while the clock reads earlier than ``BUILD_FLOOR`` (this code's release) or more
   than ``BACKWARDS_SLACK_S`` earlier than the latest time the gateway has seen while trusted
   (``meta`` key ``clock:last-known``, written at every TOTP accepted and every few minutes).
2. **Trusted** when any of ``staff.clock_sync_files`` exists: by default
   ``/run/systemd/timesync/synchronized``, which systemd-timesyncd creates once it has
   synchronised since boot (add e.g. chrony's or an RTC marker file of your own if the board
   has them).
3. **Trusted** after a technician's override (``storegw staff trust-clock``, audited), which is
   stored with the kernel's boot id (``/proc/sys/kernel/random/boot_id``) and so ends at the
   next reboot. The override itself is refused while rule 1 fails: set the time first.
4. Otherwise **untrusted**: password + TOTP sign-in and TOTP-gated unmask are refused with a
   message saying this; PIN sign-in of floor staff is unaffected.

Everything here takes the paths and the time as arguments, so tests point it at temp files.
"""

from __future__ import annotations

import calendar
import json
import time
from dataclasses import dataclass
from pathlib import Path

from gateway.store.db import Connection

BUILD_FLOOR = "2026-11-01"  # no trusted clock reads earlier than this release; raise it at each release
BUILD_FLOOR_MS = calendar.timegm(time.strptime(BUILD_FLOOR, "%Y-%m-%d")) * 1000
BACKWARDS_SLACK_S = 300  # the clock may step back this much (NTP corrections) without distrust
BOOT_ID = "/proc/sys/kernel/random/boot_id"
LAST_KNOWN = "clock:last-known"
OVERRIDE = "clock:override"


@dataclass(frozen=True)
class ClockPolicy:
    """Where evidence of a synchronised clock is found (``[staff]`` config) and the boot id."""

    sync_files: tuple[str, ...] = ("/run/systemd/timesync/synchronized",)
    boot_id_path: str = BOOT_ID


@dataclass(frozen=True)
class ClockState:
    """The verdict and why, in words for a person."""

    trusted: bool
    why: str


def _boot_id(policy: ClockPolicy) -> str:
    try:
        return Path(policy.boot_id_path).read_text(encoding="ascii").strip()
    except OSError:
        return ""


def _meta(conn: Connection, key: str) -> str | None:
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return row[0] if row else None


def floor_problem(conn: Connection, now: int) -> str:
    """Rule 1: why the clock is certainly wrong, or ""."""
    if now < BUILD_FLOOR_MS:
        return f"the clock reads {_fmt(now)}, before this release ({BUILD_FLOOR})"
    last = _meta(conn, LAST_KNOWN)
    if last is not None and now < int(last) - BACKWARDS_SLACK_S * 1000:
        return f"the clock reads {_fmt(now)}, earlier than the last time this gateway saw ({_fmt(int(last))})"
    return ""


def assess(conn: Connection, policy: ClockPolicy, now: int | None = None) -> ClockState:
    """Apply the rule above."""
    now = int(time.time() * 1000) if now is None else now
    problem = floor_problem(conn, now)
    if problem:
        return ClockState(False, problem)
    for path in policy.sync_files:
        if Path(path).exists():
            return ClockState(True, f"synchronised ({path})")
    raw = _meta(conn, OVERRIDE)
    if raw:
        try:
            doc = json.loads(raw)
        except ValueError:
            doc = {}
        boot = _boot_id(policy)
        if boot and doc.get("boot_id") == boot:
            return ClockState(True, f"trusted by {doc.get('by', '?')} at {_fmt(int(doc.get('ms', 0)))} "
                                    "(storegw staff trust-clock; until reboot)")
    files = ", ".join(policy.sync_files) or "none configured"
    return ClockState(False, f"not known to be synchronised (no {files}) and not trusted by a technician since "
                             "boot: storegw staff trust-clock")


def remember(conn: Connection, now: int | None = None) -> None:
    """Record ``now`` as the latest trusted time seen (only forwards). Call inside a write."""
    now = int(time.time() * 1000) if now is None else now
    conn.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = "
                 "CAST(max(CAST(value AS INTEGER), CAST(excluded.value AS INTEGER)) AS TEXT)", (LAST_KNOWN, str(now)))


def trust(conn: Connection, policy: ClockPolicy, who: str, now: int | None = None) -> str:
    """Record a technician's override until the next reboot (inside a write; the caller audits).

    Refused (ValueError) while the clock is certainly wrong, or when the boot id is unreadable.
    """
    now = int(time.time() * 1000) if now is None else now
    problem = floor_problem(conn, now)
    if problem:
        raise ValueError(f"{problem}: set the time first (timedatectl set-time 'YYYY-MM-DD HH:MM:SS')")
    boot = _boot_id(policy)
    if not boot:
        raise ValueError(f"cannot read the boot id ({policy.boot_id_path}), so an override could outlive a reboot")
    conn.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                 (OVERRIDE, json.dumps({"boot_id": boot, "ms": now, "by": who})))
    remember(conn, now)
    return _fmt(now)


def _fmt(ms: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ms / 1000))
