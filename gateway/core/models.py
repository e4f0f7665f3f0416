"""Frozen value objects shared by every part of storegw; stdlib only."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

Metric = float | bool
# Equipment and staff-device ids (C2, C3): never "." or ".." (they are path segments in topics and
# files), and \Z, not $, so a trailing newline does not pass.
DEVICE_ID_RE = re.compile(r"\A(?!\.{1,2}\Z)[A-Za-z0-9_.-]{1,64}\Z")


def utcnow() -> dt.datetime:
    """Return the current time as an aware UTC datetime."""
    return dt.datetime.now(dt.UTC)


def now_ms() -> int:
    """Return the current wall-clock time in epoch milliseconds."""
    return int(utcnow().timestamp() * 1000)


def iso_ms(ts_ms: int) -> str:
    """Format epoch milliseconds as ISO-8601 UTC with a trailing Z."""
    d = dt.datetime.fromtimestamp(ts_ms / 1000, dt.UTC)
    return d.strftime("%Y-%m-%dT%H:%M:%S.") + f"{d.microsecond // 1000:03d}Z"


@dataclass(frozen=True, slots=True)
class Reading:
    """One telemetry message from one device: its metrics at one instant."""

    device: str
    ts_ms: int
    metrics: Mapping[str, Metric]
    digest: str  # hex digest of the payload; (device, ts_ms, digest) is the idempotency key
    # A reading without its own ts (stamped on receipt) that the broker marked as a redelivery
    # (MQTT DUP): it may be stored already under an earlier stamp (see Telemetry.seen_before).
    dup: bool = False
    # The payload had no ts: ts_ms is the receipt time (never inferred from ts_ms == receipt time:
    # a device's own ts can equal it to the millisecond, and its redelivery then got another digest).
    stamped: bool = False


@dataclass(frozen=True, slots=True)
class DeviceEvent:
    """Something a staff device reported (a scan, a card, an ID, a printer state).

    ``data`` holds only what may be shown or forwarded (masked); ``sensitive`` holds the
    unmasked fields for the one service allowed to see them and is never logged. ``raw`` is what
    a serial device sent up to this event (at most 4 KiB): kept in memory only, for the technician
    page's audited raw view; never logged, stored or forwarded.
    """

    device: str
    kind: str
    ts_ms: int
    data: Mapping[str, Any]
    sensitive: Mapping[str, Any] = field(default_factory=dict, repr=False)
    raw: bytes = field(default=b"", repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class Availability:
    """A device became reachable or unreachable."""

    device: str
    available: bool
    reason: str = ""
    ts_ms: int = 0


class EventSink(Protocol):
    """Where device drivers deliver what they observe; implementations never raise."""

    def event(self, event: DeviceEvent) -> None:
        """Accept a device event."""

    def availability(self, change: Availability) -> None:
        """Accept a change of a device's availability."""

    def reading(self, reading: Reading) -> None:
        """Accept a telemetry reading (Modbus equipment joins the MQTT telemetry path)."""
