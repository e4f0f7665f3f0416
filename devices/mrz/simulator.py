"""A document (MRZ) reader on a pseudo-terminal: sends a zone's lines, each ended with ``line_end``.

Documents are ICAO specimens from the shared vectors (``vectors/mrz.json``, cited by id).
"""

from __future__ import annotations

import os

from devices.ptysim import PtyDevice

DOCUMENTS: dict[str, str] = {
    "td3-icao-specimen": ("P<UTOERIKSSON<<ANNA<MARIA<<<<<<<<<<<<<<<<<<<\n"
                          "L898902C36UTO7408122F1204159ZE184226B<<<<<10"),
    "td1-icao-specimen": ("I<UTOD231458907<<<<<<<<<<<<<<<\n"
                          "7408122F1204159UTO<<<<<<<<<<<6\n"
                          "ERIKSSON<<ANNA<MARIA<<<<<<<<<<"),
    "mrvb-icao-specimen": ("V<UTOERIKSSON<<ANNA<MARIA<<<<<<<<<<<\n"
                           "L8988901C4XXX4009078F9612109<<<<<<<<"),
    "td3-deu-mustermann": ("P<D<<MUSTERMANN<<ERIKA<<<<<<<<<<<<<<<<<<<<<<\n"
                           "C01X0006H1D<<6408125F1710319<<<<<<<<<<<<<<<0"),
}


class MrzSimulator(PtyDevice):
    """A document reader that ends every MRZ line with ``line_end`` (CR LF by default)."""

    def __init__(self, link: str | os.PathLike[str] | None = None, *, line_end: bytes = b"\r\n") -> None:
        super().__init__(link)
        self.line_end = line_end
        self._next = 0

    def read_document(self, zone: str) -> bool:
        """Send a document's MRZ lines (``zone`` with lines separated by newlines)."""
        return self.write(b"".join(line.encode("ascii") + self.line_end for line in zone.splitlines()))

    def sample(self) -> str:
        """Read the next sample document; return its vector id."""
        ids = list(DOCUMENTS)
        vector_id = ids[self._next % len(ids)]
        self._next += 1
        self.read_document(DOCUMENTS[vector_id])
        return vector_id
