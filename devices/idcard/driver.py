"""Chinese 2nd-generation ID card reader (SAM): the gateway polls find → select → read.

The reader only answers commands, so the driver is the master: every ``poll_interval`` it sends
find (20 01); on "card found" it sends select (20 02), then read (30 01), and decodes the text block.
A card is reported once per placement (again only after the reader reported no card). The event's
``data`` holds only masked fields (no address); the decoded fields are in ``sensitive`` for the
guest-registration service, with the chip photo as read (``photo_wlt``, the reader's WLT bytes:
never decoded here; the guest service stores it field-encrypted or drops it).

The reader counts as available once it answers; ``max_failures`` unanswered commands in a row make
it unavailable (a powered USB adapter with no reader behind it is not an available device).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from devices.idcard.protocol import IdCardError, IdCardInfo, SamProtocol, SamResponse, build_command
from devices.transport import SerialDriver
from gateway.core.masking import mask_id_number, mask_name
from gateway.core.models import DeviceEvent, now_ms

FIND = build_command(0x20, 0x01)
SELECT = build_command(0x20, 0x02)
READ = build_command(0x30, 0x01)
SW_CARD_FOUND, SW_OK, SW_NO_CARD = 0x9F, 0x90, 0x80


def photo_of(resp: SamResponse) -> bytes:
    """The WLT photo bytes of a read answer (after the two or three length fields and the text)."""
    start = (6 if resp.fingerprint_len is not None else 4) + 256
    return bytes(resp.data[start:start + resp.photo_len])


class IdCardDriver(SerialDriver):
    """A SAM_V/SAM_A ID-card reader on a serial port, polled by the gateway."""

    available_on_open = False

    def __init__(self, device_id: str, port: str, *, baudrate: int = 115200, poll_interval: float = 0.5,
                 response_timeout: float = 1.0, max_failures: int = 3) -> None:
        super().__init__(device_id, port, baudrate=baudrate)
        self.poll_interval = poll_interval
        self.response_timeout = response_timeout
        self.max_failures = max(1, max_failures)
        self._protocol = SamProtocol("response")
        self._step: str | None = None  # the command waiting for its answer
        self._sent_at = 0.0
        self._next_poll = 0.0
        self._failures = 0
        self._present: str | None = None  # digest of the card on the reader (never the number itself)

    @classmethod
    def from_options(cls, device_id: str, port: str, options: Mapping[str, Any]) -> IdCardDriver:
        """Build from validated ``[[devices]]`` options."""
        return cls(device_id, port, baudrate=options["baudrate"], poll_interval=options["poll_interval"],
                   response_timeout=options["response_timeout"], max_failures=options["max_failures"])

    def connection_made(self) -> None:
        """Start a fresh command cycle on every (re)open."""
        self._protocol = SamProtocol("response")
        self._step = None
        self._next_poll = 0.0
        self._failures = 0
        self._present = None

    def tick(self, now: float) -> None:
        """Send the next find when due; give up on a command not answered in time."""
        if self._step is None:
            if now >= self._next_poll:
                self._send("find", FIND, now)
            return
        if now - self._sent_at < self.response_timeout:
            return
        for err in self._protocol.flush():  # a truncated answer
            self.protocol_error(err)
        self._step = None
        self._next_poll = now + self.poll_interval
        self._failures += 1
        if self._failures >= self.max_failures:
            self.set_available(False, f"the ID card reader on {self.port} does not answer")

    def data_received(self, data: bytes, now: float) -> None:
        """Advance the find → select → read cycle with the reader's answers."""
        for item in self._protocol.data_received(data):
            if isinstance(item, IdCardError):
                self.protocol_error(item)
                self._end_cycle(now)
            elif isinstance(item, SamResponse):
                self._failures = 0
                self.set_available(True)
                self._answer(item, now)

    def _send(self, step: str, frame: bytes, now: float) -> None:
        self._step = step
        self._sent_at = now
        self.write(frame)

    def _end_cycle(self, now: float) -> None:
        self._step = None
        self._next_poll = now + self.poll_interval

    def _answer(self, resp: SamResponse, now: float) -> None:
        step = self._step
        if step == "find" and resp.sw3 == SW_CARD_FOUND:
            self._send("select", SELECT, now)
            return
        if step == "select" and resp.sw3 == SW_OK:
            self._send("read", READ, now)
            return
        if step == "find" and resp.sw3 == SW_NO_CARD:
            self._present = None  # the card was taken away: the next one is new
        elif step == "read" and resp.sw3 == SW_OK and resp.card is not None:
            self._card(resp.card, photo_of(resp))
        self._end_cycle(now)

    def _card(self, info: IdCardInfo, photo: bytes = b"") -> None:
        digest = hashlib.sha256(info.id_number.encode("utf-8")).hexdigest()
        if digest == self._present:
            self.stats.suppressed += 1
            return
        self._present = digest
        data = {"id_masked": mask_id_number(info.id_number), "name_masked": mask_name(info.name),
                "gender": info.gender, "nation": info.nation, "card_type": info.card_type}
        sensitive = {"name": info.name, "gender": info.gender, "nation": info.nation, "birth": info.birth,
                     "address": info.address, "id_number": info.id_number, "authority": info.authority,
                     "valid_from": info.valid_from, "valid_to": info.valid_to, "card_type": info.card_type,
                     "photo_wlt": photo}
        self.emit(DeviceEvent(self.device_id, "idcard", now_ms(), data, sensitive))
