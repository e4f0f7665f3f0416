"""Serial barcode/QR scanner: scans become ``table`` events (table QR URLs) or ``code`` events.

The scanner's only framing is its suffix (``terminator``) or, with ``terminator = "none"``, a gap of
``idle_timeout`` after the last byte. With a terminator, bytes left unterminated for ``idle_timeout``
are discarded and counted (a fragment must not be glued onto the next scan). A code scanned again
within ``debounce`` of its previous sighting is suppressed (a scanner in continuous mode repeats).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from devices.debounce import Debouncer
from devices.scanner.protocol import Scan, ScannerError, ScannerProtocol
from devices.transport import SerialDriver
from gateway.core.models import DeviceEvent, now_ms


class ScannerDriver(SerialDriver):
    """A barcode/QR scanner on a serial port (USB-CDC or RS-232)."""

    def __init__(self, device_id: str, port: str, *, baudrate: int = 9600, terminator: str = "CR",
                 idle_timeout: float = 0.1, debounce: float = 1.0, aim: str = "optional",
                 table_hosts: Iterable[str] = ()) -> None:
        super().__init__(device_id, port, baudrate=baudrate, idle_timeout=idle_timeout)
        self.terminator = terminator.upper()
        self.aim = aim
        self.table_hosts = tuple(table_hosts) or None  # None: a /t/TOKEN URL on any host is a table code
        self._debouncer = Debouncer(debounce)
        self._protocol = self._new_protocol()

    @classmethod
    def from_options(cls, device_id: str, port: str, options: Mapping[str, Any]) -> ScannerDriver:
        """Build from validated ``[[devices]]`` options."""
        return cls(device_id, port, baudrate=options["baudrate"], terminator=options["terminator"],
                   idle_timeout=options["idle_timeout"], debounce=options["debounce"], aim=options["aim"],
                   table_hosts=options["table_hosts"])

    def _new_protocol(self) -> ScannerProtocol:
        return ScannerProtocol(self.terminator, aim=self.aim, hosts=self.table_hosts)  # type: ignore[arg-type]

    def connection_made(self) -> None:
        """Start from an empty buffer on every (re)open."""
        self._protocol = self._new_protocol()

    def data_received(self, data: bytes, now: float) -> None:
        """Feed the protocol and report the scans it completed."""
        self._deliver(self._protocol.data_received(data), now)

    def idle(self, now: float) -> None:
        """End an unterminated message: a scan without terminator, a fragment with one."""
        items = self._protocol.flush()
        if self.terminator == "NONE":
            self._deliver(items, now)
        else:
            for _ in items:
                self.protocol_error(ScannerError("unterminated fragment discarded"))

    def _deliver(self, items: list[Scan | ScannerError], now: float) -> None:
        for item in items:
            if isinstance(item, ScannerError):
                self.protocol_error(item)
                continue
            key = f"t:{item.table_token}" if item.kind == "table" else f"c:{item.data}"
            if not self._debouncer.accept(key, now):
                self.stats.suppressed += 1
                continue
            if item.kind == "table":
                data: dict[str, Any] = {"token": item.table_token, "host": item.table_host}
            else:
                data = {"code": item.data, "symbology": item.symbology, "aim_id": item.aim_id}
            self.emit(DeviceEvent(self.device_id, item.kind, now_ms(), data))
