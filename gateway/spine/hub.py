"""The device hub: where drivers report events, availability and readings.

Implements ``EventSink``. Calls arrive on driver threads and return at once: work is handed to
the writer (availability alerts, P/devices, readings) or to a dispatch thread (subscribers such
as ordering's scan-to-serve or guest registration). Event contents never reach logs or health.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass

from gateway.config import Config
from gateway.core.models import Availability, DeviceEvent, Reading, iso_ms, now_ms
from gateway.spine.alerts import AlertManager
from gateway.spine.telemetry import Telemetry
from gateway.store.db import Connection
from gateway.store.outbox import Lane, enqueue
from gateway.store.writer import Writer

_LOGGER = logging.getLogger(__name__)

Subscriber = Callable[[DeviceEvent], None]


@dataclass
class DeviceState:
    """What health and P/devices show of a configured device: ids and states, no contents."""

    id: str
    kind: str
    available: bool = False
    reason: str = ""
    last_event_ms: int | None = None
    events: int = 0

    def as_dict(self) -> dict[str, object]:
        """Return the public view of the device."""
        return {"id": self.id, "kind": self.kind, "available": self.available,
                "last_event_at": iso_ms(self.last_event_ms) if self.last_event_ms else None,
                "events": self.events}


class Hub:
    """Fan-in of every device; implements the EventSink protocol."""

    def __init__(self, cfg: Config, writer: Writer, alerts: AlertManager, telemetry: Telemetry) -> None:
        self.cfg = cfg
        self.writer = writer
        self.alerts = alerts
        self.telemetry = telemetry
        self.devices: dict[str, DeviceState] = {d.id: DeviceState(d.id, d.kind) for d in cfg.devices}
        self._subscribers: dict[str, list[Subscriber]] = {}
        self._queue: queue.Queue[DeviceEvent | None] = queue.Queue(maxsize=1000)
        self._thread: threading.Thread | None = None
        self.dropped = 0

    def subscribe(self, kind: str, fn: Subscriber) -> None:
        """Call ``fn(event)`` for every event of this kind ("*" for all), on the dispatch thread."""
        self._subscribers.setdefault(kind, []).append(fn)

    def start(self) -> None:
        """Start the dispatch thread and publish the initial inventory."""
        self._thread = threading.Thread(target=self._dispatch, name="storegw-hub", daemon=True)
        self._thread.start()
        if self.devices:
            self.writer.submit(self._publish_inventory)

    def stop(self) -> None:
        """Stop the dispatch thread."""
        if self._thread:
            self._queue.put(None)
            self._thread.join(5)

    # -- EventSink
    def event(self, event: DeviceEvent) -> None:
        """Count the event and hand it to subscribers."""
        state = self.devices.setdefault(event.device, DeviceState(event.device, "?"))
        state.events += 1
        state.last_event_ms = event.ts_ms or now_ms()
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            self.dropped += 1
            _LOGGER.warning("Device event queue full; dropped an event from %s", event.device)

    def availability(self, change: Availability) -> None:
        """Raise or clear the device's unavailable alert and refresh P/devices."""
        state = self.devices.setdefault(change.device, DeviceState(change.device, "?"))
        if state.available == change.available and state.reason == change.reason:
            return
        state.available = change.available
        state.reason = change.reason
        self.writer.submit(lambda conn: self._apply_availability(conn, change))

    def reading(self, reading: Reading) -> None:
        """Store a reading from serial equipment on the telemetry path."""
        state = self.devices.get(reading.device)
        if state is not None:
            state.events += 1
            state.last_event_ms = reading.ts_ms
        self.writer.submit(lambda conn: self.telemetry.write_batch(conn, [reading]))

    # -- internals
    def _apply_availability(self, conn: Connection, change: Availability) -> None:
        key = f"device:{change.device}"
        ts = change.ts_ms or now_ms()
        if change.available:
            self.alerts.clear(conn, key, ts_ms=ts)
        else:
            self.alerts.raise_(conn, key, kind="unavailable", rule="device-unavailable", device=change.device,
                               severity="major", ts_ms=ts, text=change.reason[:200])
        self._publish_inventory(conn)

    def _publish_inventory(self, conn: Connection) -> None:
        ts = now_ms()
        msg = {"id": f"{self.cfg.store.id}:devices:{ts}", "ts": iso_ms(ts),
               "devices": [d.as_dict() for d in self.devices.values()]}
        enqueue(conn, Lane.ALERTS, f"{self.cfg.prefix}/devices", msg["id"], "devices", msg, retain=True)

    def _dispatch(self) -> None:
        while True:
            event = self._queue.get()
            if event is None:
                return
            for fn in (*self._subscribers.get(event.kind, ()), *self._subscribers.get("*", ())):
                try:
                    fn(event)
                except Exception:
                    _LOGGER.exception("Subscriber for %s events failed", event.kind)
