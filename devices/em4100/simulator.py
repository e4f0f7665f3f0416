"""An EM4100 reader on a pseudo-terminal: while a card is presented it repeats the card's frame.

Cards are the shared test vectors' frames (``vectors/em4100.json``, cited by id).
"""

from __future__ import annotations

import os

from devices.ptysim import PtyDevice

# vector id → 10 hex digits of card data
CARDS: dict[str, str] = {
    "seeed-62E3086CED": "62E3086CED",
    "seeed-01000734E0": "01000734E0",
    "pyrdm6300-67003B51C6CB": "67003B51C6",
    "pyrdm6300-67003BA86C98": "67003BA86C",
}


def frame(data_hex: str, *, crlf: bool = False) -> bytes:
    """Return the reader frame for a card: STX, 10 hex digits, XOR checksum, [CR LF], ETX."""
    data = bytes.fromhex(data_hex)
    chk = 0
    for b in data:
        chk ^= b
    return b"\x02" + f"{data_hex.upper()}{chk:02X}".encode() + (b"\r\n" if crlf else b"") + b"\x03"


class EM4100Simulator(PtyDevice):
    """An RDM6300 (or, with ``crlf``, ID-12) reader on a pty."""

    def __init__(self, link: str | os.PathLike[str] | None = None, *, crlf: bool = False) -> None:
        super().__init__(link)
        self.crlf = crlf
        self._next = 0

    def present(self, data_hex: str, repeats: int = 1) -> bool:
        """Hold a card on the reader: send its frame ``repeats`` times, as a reader does."""
        return self.write(frame(data_hex, crlf=self.crlf) * repeats)

    def sample(self) -> str:
        """Present the next sample card once; return the vector id it came from."""
        ids = list(CARDS)
        vector_id = ids[self._next % len(ids)]
        self._next += 1
        self.present(CARDS[vector_id])
        return vector_id
