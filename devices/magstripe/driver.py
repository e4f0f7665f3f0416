"""Magnetic stripe reader: membership stripes become ``card`` events, payment cards are refused.

A membership/loyalty stripe gives ``card`` with ``card_ref`` (HMAC, see ``devices.cardref``); its
number is only in ``sensitive``. A payment card (PCI DSS: never log, keep or publish track data)
gives a ``payment_card`` event whose data is only the masked PAN (first 6 / last 4) and whose
``sensitive`` is empty; nothing about it is logged, and the swipe is dropped at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from devices.cardref import card_ref, gateway_secret
from devices.magstripe.protocol import MagstripeError, MagstripeProtocol, Swipe
from devices.transport import SerialDriver
from gateway.core.masking import mask_middle, mask_pan
from gateway.core.models import DeviceEvent, now_ms


class MagstripeDriver(SerialDriver):
    """A serial (or USB-CDC) magnetic stripe reader sending ``%…?;…?`` lines."""

    def __init__(self, device_id: str, port: str, *, baudrate: int = 9600, idle_timeout: float = 0.2,
                 secret: bytes | None = None) -> None:
        super().__init__(device_id, port, baudrate=baudrate, idle_timeout=idle_timeout)
        self._secret = secret if secret is not None else gateway_secret()
        self._protocol = MagstripeProtocol()

    @classmethod
    def from_options(cls, device_id: str, port: str, options: Mapping[str, Any]) -> MagstripeDriver:
        """Build from validated ``[[devices]]`` options."""
        return cls(device_id, port, baudrate=options["baudrate"], idle_timeout=options["idle_timeout"])

    def connection_made(self) -> None:
        """Start from an empty buffer on every (re)open."""
        self._protocol = MagstripeProtocol()

    def data_received(self, data: bytes, now: float) -> None:
        """Feed the protocol and report the swipes it completed."""
        self._deliver(self._protocol.data_received(data))

    def idle(self, now: float) -> None:
        """End a swipe the reader did not terminate with CR/LF."""
        self._deliver(self._protocol.flush())

    def _deliver(self, items: list[Swipe | MagstripeError]) -> None:
        for item in items:
            if isinstance(item, MagstripeError):
                self.protocol_error(item)
            elif item.cardholder_data:
                # Only the masked PAN leaves; the swipe object is dropped here.
                self.emit(DeviceEvent(self.device_id, "payment_card", now_ms(), {"pan_masked": mask_pan(item.pan)}))
            elif item.member_number:
                number = item.member_number
                data = {"card_ref": card_ref(self._secret, f"magstripe:{number}"), "source": "magstripe",
                        "card_masked": mask_middle(number, 0, 4)}
                self.emit(DeviceEvent(self.device_id, "card", now_ms(), data, {"card_id": number}))
            else:
                self.protocol_error(MagstripeError("swipe without a card number"))
