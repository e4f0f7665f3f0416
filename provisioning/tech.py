"""The technician page's service (``/tech``): devices live, their last frames, tests, the broker's equipment, doctor.

``gateway.app`` builds one :class:`TechService` and hands it to the web app as ``gateway.tech``; the
page (``web/tech/views.py``) calls only the named methods below, so web never imports the hub, the
store or provisioning. What it keeps is in memory only and bounded: the last ``FRAMES`` events of each
device, their masked ``data`` and their ``raw`` bytes (``DeviceEvent.raw``). Raw bytes can hold
personal data (an ID card frame carries the name and number in UCS-2), so :meth:`raw_frame` is
called only by an audited route and the page shows them only on a technician's request.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from gateway.core.models import DeviceEvent, iso_ms, now_ms

FRAMES = 10  # last events kept per device
SCAN_TEST_S = 60.0  # how long a live scan test waits
_RATE_WINDOW = 60.0


class TechService:
    """What the technician page reads and does, over the running gateway's parts."""

    def __init__(self, cfg: Any, hub: Any, telemetry: Any, ingest: Any, alerts: Any, writer: Any,
                 services: dict[str, Any], doctor: Callable[[], list[Any]] | None = None) -> None:
        self.cfg = cfg
        self._hub = hub
        self._telemetry = telemetry
        self._ingest = ingest
        self._alerts = alerts
        self._writer = writer
        self._services = services
        self._doctor = doctor
        self._lock = threading.Lock()
        self._frames: dict[str, deque[DeviceEvent]] = {}
        self._seq: dict[str, int] = {}  # events seen per device (numbering the frames)
        self._samples: dict[str, deque[tuple[float, int]]] = {}
        self._scan_tests: dict[str, tuple[float, int]] = {}  # device -> (deadline, seq when armed)
        self._doctor_result: tuple[int, list[dict[str, Any]]] | None = None
        self._doctor_running = threading.Lock()
        self._since = now_ms()  # equipment known from before this start is "not heard yet" until it speaks
        hub.subscribe("*", self._on_event)

    # -- feeding (hub dispatch thread)
    def _on_event(self, event: DeviceEvent) -> None:
        with self._lock:
            self._frames.setdefault(event.device, deque(maxlen=FRAMES)).append(event)
            self._seq[event.device] = self._seq.get(event.device, 0) + 1

    # -- devices
    def _rate(self, device: str, count: int) -> float:
        """Events per minute from the hub's counter, sampled at each look (no thread of its own)."""
        now = time.monotonic()
        samples = self._samples.setdefault(device, deque(maxlen=120))
        if not samples or now - samples[-1][0] >= 1.0:
            samples.append((now, count))
        while len(samples) > 2 and now - samples[1][0] >= _RATE_WINDOW:
            samples.popleft()
        t0, c0 = samples[0]
        if now - t0 < 5.0:
            return float("nan")  # not enough history yet
        return round((count - c0) * 60.0 / (now - t0), 1)

    def devices(self) -> list[dict[str, Any]]:
        """Each configured device: kind, port, available (and why not), last event, events/min, frames."""
        ports = {d.id: d.port for d in self.cfg.devices}
        out = []
        with self._lock:
            for state in list(self._hub.devices.values()):
                rate = self._rate(state.id, state.events)
                frames = self._frames.get(state.id, ())
                out.append({"id": state.id, "kind": state.kind, "port": ports.get(state.id, ""),
                            "available": state.available, "reason": state.reason,
                            "last_event_at": iso_ms(state.last_event_ms) if state.last_event_ms else None,
                            "events": state.events, "per_min": None if rate != rate else rate,
                            "frames": len(frames), "scan_test": self._scan_state(state.id)})
        return out

    def frames(self, device: str) -> list[dict[str, Any]]:
        """The device's last events, newest first: time, kind, masked fields, raw length (never the bytes)."""
        with self._lock:
            frames = list(self._frames.get(device, ()))
            seq = self._seq.get(device, 0)
        out = []
        for i, ev in enumerate(reversed(frames)):
            out.append({"n": seq - i, "at": iso_ms(ev.ts_ms), "kind": ev.kind,
                        "data": {k: v for k, v in ev.data.items() if isinstance(v, str | int | float | bool)},
                        "raw_len": len(ev.raw)})
        return out

    def raw_frame(self, device: str, n: int, who: str, reason: str) -> dict[str, Any]:
        """Frame ``n`` of ``device`` as hex and printable text, after auditing who asked and why."""
        with self._lock:
            frames = list(self._frames.get(device, ()))
            seq = self._seq.get(device, 0)
        index = len(frames) - 1 - (seq - n)
        if not 0 <= index < len(frames):
            raise KeyError(f"frame {n} of {device} is no longer kept (the last {FRAMES} are)")
        ev = frames[index]
        self._audit(who, "tech-raw-view", f"device:{device}", reason, {"frame": n, "bytes": len(ev.raw)})
        return {"n": n, "at": iso_ms(ev.ts_ms), "kind": ev.kind, "hex": ev.raw.hex(" "),
                "text": "".join(chr(b) if 32 <= b < 127 else "." for b in ev.raw)}

    # -- tests
    def test_print(self, printer: str, who: str) -> str:
        """Queue the printer's self-test page through the print service; return the job id."""
        printing = self._services.get("printing")
        if printing is None:
            raise KeyError("no print service in this build")
        job = printing.test_page(printer)
        self._audit(who, "tech-test-print", f"device:{printer}", "", {"job": job})
        return job

    def arm_scan_test(self, device: str) -> None:
        """Start a live scan test: the next event of ``device`` within ``SCAN_TEST_S`` is shown."""
        if device not in self._hub.devices:
            raise KeyError(f"no device {device}")
        with self._lock:
            self._scan_tests[device] = (time.monotonic() + SCAN_TEST_S, self._seq.get(device, 0))

    def _scan_state(self, device: str) -> dict[str, Any] | None:
        test = self._scan_tests.get(device)
        if test is None:
            return None
        deadline, armed_at = test
        if self._seq.get(device, 0) > armed_at:
            ev = self._frames[device][-1]
            shown = {k: v for k, v in ev.data.items() if isinstance(v, str | int | float | bool)}
            return {"state": "received", "kind": ev.kind, "data": shown}
        left = deadline - time.monotonic()
        if left <= 0:
            return {"state": "nothing", "seconds": 0}
        return {"state": "waiting", "seconds": int(left)}

    # -- the broker's equipment
    def equipment(self) -> dict[str, Any]:
        """MQTT equipment heard through the local broker: last message and whether it said/went offline."""
        offline = {a.device for a in list(self._alerts.active.values()) if a.rule == "device-offline"}
        seen = dict(self._telemetry.offline.last_seen)
        rows = [{"id": dev, "last_seen_at": iso_ms(ts) if ts > self._since else None, "online": dev not in offline,
                 "silent_s": max(0, (now_ms() - ts) // 1000)} for dev, ts in sorted(seen.items())]
        return {"broker": f"{self.cfg.local_mqtt.host}:{self.cfg.local_mqtt.port}",
                "connected": bool(self._ingest.connected), "equipment": rows}

    # -- doctor
    def run_doctor(self) -> list[dict[str, Any]]:
        """Run doctor's checks now (one run at a time) and keep the result."""
        if self._doctor is None:
            return [{"check": "doctor", "level": "warn", "text": "doctor is not available in this build", "fix": ""}]
        with self._doctor_running:
            findings = [asdict(f) if not isinstance(f, dict) else f for f in self._doctor()]
        self._doctor_result = (now_ms(), findings)
        return findings

    def doctor_result(self) -> tuple[str | None, list[dict[str, Any]]]:
        """The last doctor run: (when, findings), or (None, [])."""
        if self._doctor_result is None:
            return None, []
        ts, findings = self._doctor_result
        return iso_ms(ts), findings

    # -- tables (the QR sticker sheet)
    def sticker_sheet(self) -> bytes | None:
        """An A4 SVG sheet of every table's QR sticker, or None when there are no tables."""
        from gateway.ordering.tables import sheet_svg

        ordering = self._services.get("ordering")
        if ordering is None or not ordering.tables:
            return None
        stickers = [(t.label or t.id, ordering.url_for(t.id)) for t in ordering.tables.values()]
        return sheet_svg(stickers, self.cfg.store.name)

    # -- audit
    def _audit(self, who: str, action: str, subject: str, why: str, detail: dict[str, Any]) -> None:
        from gateway.privacy import audit
        from gateway.staff.accounts import audit_who

        self._writer.call(lambda c: audit.append(c, audit_who(c, who), action, subject, why, detail))
