"""Process memory: the C allocator's settings for `storegw run`, and tracemalloc snapshots on demand.

``tune_malloc()`` makes glibc serve every allocation of 1 MiB or more with its own mmap, returned
to the system when freed. glibc's default threshold moves up to the size of the largest block freed
so far (up to 32 MiB): after the first 8 MiB argon2 PIN check, the next ones came from the calling
thread's malloc arena, and each web thread's arena then kept its 8 MiB for good (docs/architecture.md,
Memory). Fixing the threshold also fixes the trim threshold at 128 KiB, so arenas give back free
memory at their top.

Snapshots are off unless ``STOREGW_TRACEMALLOC`` names a directory. Then tracing starts before the
gateway is built (``STOREGW_TRACEMALLOC_FRAMES`` frames per allocation, default 10) and every
``SIGUSR2`` writes ``snapshot-N.pickle`` there and logs the traced total, the process RSS and the
ten largest allocation sites. Compare two snapshots with ``tracemalloc.Snapshot.load`` and
``compare_to``; what tracemalloc sees is Python's own allocations (not SQLite's page cache nor
memory the C allocator keeps after Python freed it), so RSS minus the traced total is the rest.

    STOREGW_TRACEMALLOC=/tmp/snaps storegw run --config storegw.toml &
    kill -USR2 $!        # → /tmp/snaps/snapshot-1.pickle and a log line
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import signal
import threading
import tracemalloc
from pathlib import Path
from typing import Any

_LOGGER = logging.getLogger(__name__)
ENV = "STOREGW_TRACEMALLOC"
MMAP_THRESHOLD = 1024 * 1024
_M_MMAP_THRESHOLD = -3  # mallopt parameter number (malloc.h)


def tune_malloc(threshold: int = MMAP_THRESHOLD) -> bool:
    """Give every allocation of ``threshold`` bytes or more its own mmap (glibc; a no-op elsewhere).

    ``$MALLOC_MMAP_THRESHOLD_`` in the environment wins (glibc reads it at start).
    """
    if os.environ.get("MALLOC_MMAP_THRESHOLD_"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    return bool(mallopt(_M_MMAP_THRESHOLD, threshold))


def rss_kb(field: str = "VmRSS") -> int:
    """Return a ``/proc/self/status`` memory field in KiB (0 where there is no /proc)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def install_tracemalloc() -> bool:
    """Start tracing and the SIGUSR2 snapshot handler when ``$STOREGW_TRACEMALLOC`` is set (main thread)."""
    target = os.environ.get(ENV, "")
    if not target:
        return False
    out = Path(target)
    out.mkdir(parents=True, exist_ok=True)
    tracemalloc.start(int(os.environ.get(ENV + "_FRAMES", "10")))
    count = [0]
    lock = threading.Lock()

    def snapshot(signum: int, frame: Any) -> None:
        with lock:
            count[0] += 1
            path = out / f"snapshot-{count[0]}.pickle"
        snap = tracemalloc.take_snapshot()
        snap.dump(str(path))
        traced, peak = tracemalloc.get_traced_memory()
        top = snap.statistics("lineno")[:10]
        _LOGGER.warning("tracemalloc %s: traced %.1f MB (peak %.1f MB), RSS %.1f MB; top: %s", path.name,
                        traced / 1e6, peak / 1e6, rss_kb() / 1024,
                        "; ".join(f"{s.traceback[0].filename}:{s.traceback[0].lineno} {s.size / 1e6:.2f} MB"
                                  for s in top))

    signal.signal(signal.SIGUSR2, snapshot)
    _LOGGER.warning("tracemalloc on (%s): SIGUSR2 writes a snapshot", out)
    return True
