"""A SAM ID-card reader on a pseudo-terminal: answers the real command frames, with or without a card.

The cards are the shared vectors' constructed people (``vectors/idreader_frames.json``
``resp-read-base-info-constructed-male`` and ``-longterm``): :func:`read_response` rebuilds those
1,295-byte frames byte for byte (UCS-2LE text padded with spaces, an all-zero 1,024-byte photo).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping

from devices.idcard.protocol import TEXT_LAYOUT, IdCardError, SamCommand, SamProtocol, SamResponse
from devices.ptysim import PtyDevice

CARDS: dict[str, dict[str, str]] = {
    "resp-read-base-info-constructed-male": {
        "name": "张三", "gender": "1", "nation": "01", "birth": "19910101",
        "address": "北京市西城区示例街道1号", "id_number": "110102199101010078",
        "authority": "北京市公安局西城分局", "valid_from": "20110101",
        "valid_to": "20210101"},
    "resp-read-base-info-constructed-longterm": {
        "name": "李四", "gender": "2", "nation": "03", "birth": "19491231",
        "address": "北京市朝阳区示例路甲100号院示例小区1号楼2单元301室", "id_number": "11010519491231002X",
        "authority": "北京市公安局朝阳分局", "valid_from": "20060101", "valid_to": "长期"},
}
PHOTO_LEN = 1024


def text_block(fields: Mapping[str, str]) -> bytes:
    """Return the 256-byte UCS-2LE text block for the card fields (each padded with spaces)."""
    out = bytearray()
    for name, size in TEXT_LAYOUT:
        raw = fields.get(name, "").encode("utf-16-le")[:size]
        out += raw + " ".encode("utf-16-le") * ((size - len(raw)) // 2)
    return bytes(out)


def read_response(fields: Mapping[str, str]) -> bytes:
    """Return the reader's answer to read (30 01): status 90, text and photo lengths, text, photo.

    The photo is all zeros (the vectors' constructed frames) unless ``fields["photo_hex"]`` gives
    its bytes (a test planting a recognisable photo), padded or cut to 1,024 bytes.
    """
    photo = bytes.fromhex(fields["photo_hex"])[:PHOTO_LEN] if "photo_hex" in fields else b""
    photo += bytes(PHOTO_LEN - len(photo))
    data = (256).to_bytes(2, "big") + PHOTO_LEN.to_bytes(2, "big") + text_block(fields) + photo
    return SamResponse(0, 0, 0x90, data).to_bytes()


def status(sw3: int, data: bytes = b"") -> bytes:
    """Return a reader answer with SW1 SW2 = 00 00 and the given SW3."""
    return SamResponse(0, 0, sw3, data).to_bytes()


class IdCardSimulator(PtyDevice):
    """A SAM reader: find/select/read answer according to the card placed with :meth:`place`."""

    def __init__(self, link: str | os.PathLike[str] | None = None) -> None:
        super().__init__(link)
        self.protocol = SamProtocol("command")
        self.card: Mapping[str, str] | None = None
        self.mute = False  # True: a reader that does not answer at all
        self.commands: list[tuple[int, int]] = []
        self._lock = threading.Lock()
        self._next = 0

    def place(self, fields: Mapping[str, str]) -> None:
        """Put a card on the reader."""
        with self._lock:
            self.card = dict(fields)

    def remove(self) -> None:
        """Take the card away."""
        with self._lock:
            self.card = None

    def sample(self) -> str:
        """Place the next sample card (replacing the one there); return its vector id."""
        ids = list(CARDS)
        vector_id = ids[self._next % len(ids)]
        self._next += 1
        self.place(CARDS[vector_id])
        return vector_id

    def reset(self) -> None:
        """Drop a half-received command when a new pty is plugged."""
        self.protocol = SamProtocol("command")

    def received(self, data: bytes) -> None:
        """Answer each complete command frame the host sent."""
        for item in self.protocol.data_received(data):
            if self.mute:
                continue
            if isinstance(item, IdCardError):
                self.write(status(0x10))  # checksum (or frame) error in the host frame
            elif isinstance(item, SamCommand):
                self.commands.append((item.cmd, item.para))
                self.write(self.answer(item))

    def answer(self, cmd: SamCommand) -> bytes:
        """Return the reader's answer to one command."""
        with self._lock:
            card = self.card
        key = (cmd.cmd, cmd.para)
        if key in ((0x10, 0xFF), (0x11, 0xFF)):
            return status(0x90)
        if key == (0x20, 0x01):
            return status(0x9F, bytes(4)) if card else status(0x80)
        if key == (0x20, 0x02):
            return status(0x90, bytes(8)) if card else status(0x81)
        if key == (0x30, 0x01):
            return read_response(card) if card else status(0x41)
        return status(0x21)  # bad command or parameter
