"""A serial barcode/QR scanner on a pseudo-terminal: sends scans the way a programmed scanner does.

Samples are entries of the shared test vectors (``vectors/scanner.json``, cited by id) plus a table
QR URL in the form ``storegw tables url`` prints.
"""

from __future__ import annotations

import os

from devices.ptysim import PtyDevice

SUFFIXES = {"CR": b"\r", "LF": b"\n", "CRLF": b"\r\n", "TAB": b"\t", "NONE": b""}

# (vector id, AIM id + data as the scanner sends it, without suffix)
SAMPLES: tuple[tuple[str, str], ...] = (
    ("zebra-upca", "]E00012345678905"),
    ("table-qr", "]Q1https://order.example-store.cn/t/T12-3f9a"),
    ("qr-model2", "]Q1https://example.com/menu?t=12"),
    ("ncr-code39-fullascii", "]A7AIMID"),
    ("zebra-databar", "]e00110012345678902"),
    ("gs1-datamatrix", "]d2010950110153000317251231\x1d10ABC123"),
)


class ScannerSimulator(PtyDevice):
    """A scanner programmed with an AIM id and a suffix (``terminator``), on a pty."""

    def __init__(self, link: str | os.PathLike[str] | None = None, *, terminator: str = "CR") -> None:
        super().__init__(link)
        self.suffix = SUFFIXES[terminator.upper()]
        self._next = 0

    def scan(self, text: str) -> bool:
        """Send one scan (AIM id included in ``text``) followed by the suffix."""
        return self.write(text.encode("utf-8") + self.suffix)

    def table(self, token: str, host: str = "order.example-store.cn") -> bool:
        """Scan a table's QR code (``https://HOST/t/TOKEN``) with the QR model-2 AIM id."""
        return self.scan(f"]Q1https://{host}/t/{token}")

    def sample(self) -> str:
        """Send the next sample scan; return the vector id it came from."""
        vector_id, text = SAMPLES[self._next % len(SAMPLES)]
        self._next += 1
        self.scan(text)
        return vector_id
