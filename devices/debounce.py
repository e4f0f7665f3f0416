"""One debouncer for every family: a code or card held in front of a reader is reported once."""

from __future__ import annotations

from collections.abc import Hashable


class Debouncer:
    """Let a key through once, then hold it back while it keeps being seen within ``window``.

    Sans clock: the caller passes ``now`` (the reader thread's ``time.monotonic()``, or any
    number in the same unit as ``window``). The window slides, so a tag left on the reader stays
    suppressed until it has been away for ``window``. ``window = 0`` turns debouncing off.
    """

    MAX_KEYS = 256  # forget keys that left long ago once this many are remembered

    def __init__(self, window: float) -> None:
        if window < 0:
            raise ValueError("window must not be negative")
        self.window = window
        self._seen: dict[Hashable, float] = {}

    def accept(self, key: Hashable, now: float) -> bool:
        """Record that ``key`` was seen at ``now``; return True to report it, False for a repeat."""
        last = self._seen.get(key)
        self._seen[key] = now
        if len(self._seen) > self.MAX_KEYS:
            self._seen = {k: t for k, t in self._seen.items() if 0 <= now - t < self.window}
            self._seen[key] = now
        return last is None or not (0 <= now - last < self.window)

    __call__ = accept
