"""EM4100 125 kHz card reader with ASCII serial output: a presented card becomes one ``card`` event.

The card id never leaves the driver in ``data``: events carry ``card_ref`` (HMAC, see
``devices.cardref``) and a masked printed number; the raw id is only in ``sensitive``. A tag held
on the reader repeats its frame; it is reported once, and again only after ``debounce`` of silence.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from devices.cardref import card_ref, gateway_secret
from devices.debounce import Debouncer
from devices.em4100.protocol import EM4100Error, EM4100Protocol, EM4100Read
from devices.transport import SerialDriver
from gateway.core.masking import mask_middle
from gateway.core.models import DeviceEvent, now_ms

FRAME_IDLE = 0.2  # a frame takes 15 ms at 9600 baud: bytes silent this long are a broken frame


class EM4100Driver(SerialDriver):
    """An RDM6300/ID-12 style EM4100 reader on a serial port."""

    def __init__(self, device_id: str, port: str, *, baudrate: int = 9600, debounce: float = 1.0,
                 secret: bytes | None = None) -> None:
        super().__init__(device_id, port, baudrate=baudrate, idle_timeout=FRAME_IDLE)
        self.debounce = debounce
        self._secret = secret if secret is not None else gateway_secret()
        self._protocol = EM4100Protocol()
        self._debouncer = Debouncer(debounce)

    @classmethod
    def from_options(cls, device_id: str, port: str, options: Mapping[str, Any]) -> EM4100Driver:
        """Build from validated ``[[devices]]`` options."""
        return cls(device_id, port, baudrate=options["baudrate"], debounce=options["debounce"])

    def connection_made(self) -> None:
        """Start from an empty buffer on every (re)open."""
        self._protocol = EM4100Protocol()

    def data_received(self, data: bytes, now: float) -> None:
        """Feed the protocol and report new cards."""
        for item in self._protocol.data_received(data):
            if isinstance(item, EM4100Error):
                self.protocol_error(item)
            else:
                self._card(item, now)

    def idle(self, now: float) -> None:
        """Drop a frame that stopped half way."""
        for err in self._protocol.flush():
            self.protocol_error(err)

    def _card(self, read: EM4100Read, now: float) -> None:
        card = read.card
        if not self._debouncer.accept(card.id40, now):  # sliding: a tag held in the field stays suppressed
            self.stats.suppressed += 1
            return
        data = {"card_ref": card_ref(self._secret, f"em4100:{card.data_hex}"), "source": "em4100",
                "card_masked": mask_middle(card.printed_10_digit, 0, 4)}
        sensitive = {"card_id": card.data_hex, "printed_10_digit": card.printed_10_digit,
                     "printed_8_digit": card.printed_8_digit}
        self.emit(DeviceEvent(self.device_id, "card", now_ms(), data, sensitive))
