"""Passport / ID document reader (ICAO 9303 MRZ over serial): a read document becomes an ``mrz`` event.

``data`` carries what the front desk may see: format, document code, issuing state, nationality,
expiry and masked names and numbers. ``sensitive`` carries every decoded field for the one service
allowed to use them (guest registration). A document left on the reader is reported once per
``debounce``; zones failing their check digits are counted, never reported.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from devices.debounce import Debouncer
from devices.mrz.protocol import Mrz, MrzError, MrzProtocol
from devices.transport import SerialDriver
from gateway.core.masking import mask_document_number, mask_name
from gateway.core.models import DeviceEvent, now_ms

_PUBLIC = ("document_code", "issuing_state", "nationality", "expiry_date")
_NAMES = ("surname", "given_names")


class MrzDriver(SerialDriver):
    """An MRZ (OCR-B) document reader that sends the zone's lines as ASCII."""

    def __init__(self, device_id: str, port: str, *, baudrate: int = 9600, idle_timeout: float = 0.3,
                 debounce: float = 3.0) -> None:
        super().__init__(device_id, port, baudrate=baudrate, idle_timeout=idle_timeout)
        self.debounce = debounce
        self._protocol = MrzProtocol()
        self._debouncer = Debouncer(debounce)

    @classmethod
    def from_options(cls, device_id: str, port: str, options: Mapping[str, Any]) -> MrzDriver:
        """Build from validated ``[[devices]]`` options."""
        return cls(device_id, port, baudrate=options["baudrate"], idle_timeout=options["idle_timeout"],
                   debounce=options["debounce"])

    def connection_made(self) -> None:
        """Start from an empty buffer on every (re)open."""
        self._protocol = MrzProtocol()

    def data_received(self, data: bytes, now: float) -> None:
        """Feed the protocol and report the documents it completed."""
        self._deliver(self._protocol.data_received(data), now)

    def idle(self, now: float) -> None:
        """Finish a zone whose last line had no line end; drop an incomplete one."""
        self._deliver(self._protocol.flush(), now)

    def _deliver(self, items: list[Mrz | MrzError], now: float) -> None:
        for item in items:
            if isinstance(item, MrzError):
                self.protocol_error(item)
            else:
                self._document(item, now)

    def _document(self, mrz: Mrz, now: float) -> None:
        values = mrz.values
        key = hashlib.sha256("|".join((values.get("issuing_state", ""),
                                       values.get("document_number", ""))).encode()).hexdigest()
        if not self._debouncer.accept(key, now):
            self.stats.suppressed += 1
            return
        data: dict[str, Any] = {"format": mrz.format}
        data.update({k: values[k] for k in _PUBLIC if k in values})
        data["document_number_masked"] = mask_document_number(values.get("document_number", ""))
        data.update({f"{k}_masked": mask_name(values[k]) for k in _NAMES if values.get(k)})
        sensitive = {"format": mrz.format, **{k: v for k, v in values.items() if not k.endswith("_check")}}
        self.emit(DeviceEvent(self.device_id, "mrz", now_ms(), data, sensitive))
