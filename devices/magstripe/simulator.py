"""A magnetic stripe reader on a pseudo-terminal: each swipe is ``%…?;…?`` and a CR.

Payment samples are published test data (``vectors/magstripe.json`` ``stripe-parser-t1t2`` and a
Stripe test PAN); membership samples are synthetic non-payment numbers.
"""

from __future__ import annotations

import os

from devices.ptysim import PtyDevice

# (sample id, what the reader sends for the swipe, without line end)
SAMPLES: tuple[tuple[str, str], ...] = (
    ("member-t2", ";88001234567?"),
    ("member-t1t2", "%A88007654321^MEMBER/GOLD^?;88007654321?"),
    ("stripe-parser-t1t2", "%B5168755544412233^PKMMV/UNEMBOXXXX          ^1807111100000000000000111000000?"
                           ";5168755544412233=18071111000011100000?"),
    ("stripe-test-4242", ";4242424242424242=30121010000000000000?"),
)


class MagstripeSimulator(PtyDevice):
    """A stripe reader that ends each swipe with ``line_end`` (CR by default; b"" for none)."""

    def __init__(self, link: str | os.PathLike[str] | None = None, *, line_end: bytes = b"\r") -> None:
        super().__init__(link)
        self.line_end = line_end
        self._next = 0

    def swipe(self, tracks: str) -> bool:
        """Swipe a card: send its tracks (``%…?;…?``) and the line end."""
        return self.write(tracks.encode("latin-1") + self.line_end)

    def sample(self) -> str:
        """Swipe the next sample card; return its sample id."""
        sample_id, tracks = SAMPLES[self._next % len(SAMPLES)]
        self._next += 1
        self.swipe(tracks)
        return sample_id
