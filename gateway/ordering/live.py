"""Versioned change channels for live pages (SSE and polling) and small in-memory rate limits."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict


class Notifier:
    """Channels with a version each; waiters block until any channel they watch moves on.

    Versions come from one global counter, so a view's version is the max of its channels'.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._seq = 0
        self._versions: dict[str, int] = {}
        self.waiting = 0

    def bump(self, *channels: str) -> None:
        """Mark channels changed and wake every waiter."""
        with self._cond:
            self._seq += 1
            for ch in channels:
                self._versions[ch] = self._seq
            self._cond.notify_all()

    def version(self, *channels: str) -> int:
        """Return the version of a view made of these channels."""
        v = self._versions
        return max((v.get(ch, 0) for ch in channels), default=0)

    def wait(self, channels: tuple[str, ...], since: int, timeout: float) -> int:
        """Block until the view moves past ``since`` or ``timeout``; return its version."""
        deadline = time.monotonic() + timeout
        with self._cond:
            self.waiting += 1
            try:
                while True:
                    current = self.version(*channels)
                    remaining = deadline - time.monotonic()
                    if current != since or remaining <= 0:
                        return current
                    self._cond.wait(remaining)
            finally:
                self.waiting -= 1


class RateLimiter:
    """Token buckets per key (e.g. per table, per client): ``rate`` events per ``per`` seconds."""

    def __init__(self, rate: float, per: float = 60.0, burst: float | None = None, max_keys: int = 10000) -> None:
        self.rate = rate / per
        self.burst = burst if burst is not None else max(1.0, rate)
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()
        self._max_keys = max_keys
        self.refused = 0

    def allow(self, key: str) -> bool:
        """Take one token for ``key``; return False when the bucket is empty."""
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.pop(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            ok = tokens >= 1.0
            if ok:
                tokens -= 1.0
            else:
                self.refused += 1
            self._buckets[key] = (tokens, now)
            while len(self._buckets) > self._max_keys:
                self._buckets.popitem(last=False)
            return ok
