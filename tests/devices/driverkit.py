"""Shared helpers for the driver tests: a collecting sink, bounded waits, validated device configs."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from realparts import wait_for as _wait_for

from devices import registry
from gateway.config import DeviceConfig, validate_options
from gateway.core.models import Availability, DeviceEvent, Reading


class Sink:
    """An EventSink that keeps everything it is given."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.events: list[DeviceEvent] = []
        self.changes: list[Availability] = []
        self.readings: list[Reading] = []

    def event(self, event: DeviceEvent) -> None:
        with self.lock:
            self.events.append(event)

    def availability(self, change: Availability) -> None:
        with self.lock:
            self.changes.append(change)

    def reading(self, reading: Reading) -> None:
        with self.lock:
            self.readings.append(reading)

    def states(self) -> list[bool]:
        with self.lock:
            return [c.available for c in self.changes]

    def of_kind(self, kind: str) -> list[DeviceEvent]:
        with self.lock:
            return [e for e in self.events if e.kind == kind]


def wait_for(pred: Callable[[], Any], timeout: float = 5.0, what: str = "condition") -> Any:
    """Bounded wait with the driver tests' short default (see realparts.wait_for)."""
    return _wait_for(pred, timeout, what, interval=0.02)


def device_config(kind: str, port: str, device_id: str = "dev-1", **options: Any) -> DeviceConfig:
    """Return a DeviceConfig whose options went through the family's validation (as at config load)."""
    spec = registry.spec(kind)
    assert spec is not None
    opts = validate_options("devices[0]", options, spec.options)
    return DeviceConfig(device_id, kind, port, opts)


def build_driver(kind: str, port: str, device_id: str = "dev-1", **options: Any) -> Any:
    """Build a driver through its family's SPEC factory (the way the gateway does)."""
    spec = registry.spec(kind)
    assert spec is not None
    return spec.factory(device_config(kind, port, device_id, **options))
