"""Process memory: the C allocator's settings for `storegw run`, and tracemalloc snapshots on demand.

``tune_malloc()`` makes glibc serve every allocation of 1 MiB or more with its own mmap, returned
to the system when freed. glibc's default threshold moves up to the size of the largest block freed
so far (up to 32 MiB): after the first 8 MiB argon2 PIN check, the next ones came from the calling
thread's malloc arena, and each web thread's arena then kept its 8 MiB for good (docs/architecture.md,
Memory). Fixing the threshold also fixes the trim threshold at 128 KiB, so arenas give back free
memory at their top.

Diagnostics are off unless ``STOREGW_TRACEMALLOC`` is set. ``0``: every ``SIGUSR2`` logs RSS,
SQLite's heap (all connections' page caches), Python's allocated blocks and threads. A directory:
tracing starts before the gateway is built (``STOREGW_TRACEMALLOC_FRAMES`` frames per allocation,
default 10) and every ``SIGUSR2`` also writes ``snapshot-N.pickle`` there and logs the traced
total and the ten largest allocation sites. Compare two snapshots with ``tracemalloc.Snapshot.load`` and
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
import sys
import threading
import tracemalloc
from pathlib import Path
from typing import Any

_LOGGER = logging.getLogger(__name__)
ENV = "STOREGW_TRACEMALLOC"
MMAP_THRESHOLD = 1024 * 1024
ARENA_MAX = 2
_M_MMAP_THRESHOLD = -3  # mallopt parameter numbers (malloc.h)
_M_ARENA_MAX = -8


def tune_malloc(threshold: int = MMAP_THRESHOLD, arenas: int = ARENA_MAX) -> bool:
    """Give every allocation of ``threshold`` bytes or more its own mmap, and let the ~30 threads share
    ``arenas`` malloc arenas (glibc; a no-op elsewhere). Call before threads start.

    ``$MALLOC_MMAP_THRESHOLD_`` and ``$MALLOC_ARENA_MAX`` in the environment win (glibc reads them at start).
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    ok = True
    if not os.environ.get("MALLOC_MMAP_THRESHOLD_"):
        ok = bool(mallopt(_M_MMAP_THRESHOLD, threshold)) and ok
    if not os.environ.get("MALLOC_ARENA_MAX"):
        ok = bool(mallopt(_M_ARENA_MAX, arenas)) and ok
    return ok


def rss_kb(field: str = "VmRSS") -> int:
    """Return a ``/proc/self/status`` memory field in KiB (0 where there is no /proc)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def sqlite_memory() -> tuple[int, int]:
    """Return (bytes in use, high-water mark) of SQLite's allocator in this process: every
    connection's page cache, schema and statements (sqlcipher3's own SQLite; (0, 0) if unknown)."""
    try:
        import sqlcipher3._sqlite3 as mod

        lib = ctypes.CDLL(mod.__file__)
        lib.sqlite3_status64.argtypes = (ctypes.c_int, ctypes.POINTER(ctypes.c_int64),
                                         ctypes.POINTER(ctypes.c_int64), ctypes.c_int)
        cur, high = ctypes.c_int64(), ctypes.c_int64()
        if lib.sqlite3_status64(0, ctypes.byref(cur), ctypes.byref(high), 0) != 0:  # SQLITE_STATUS_MEMORY_USED
            return 0, 0
        return cur.value, high.value
    except (ImportError, OSError, AttributeError):
        return 0, 0


def report() -> str:
    """One line: RSS, its peak, SQLite's heap, Python's allocated blocks, threads."""
    used, high = sqlite_memory()
    return (f"RSS {rss_kb() / 1024:.1f} MB (peak {rss_kb('VmHWM') / 1024:.1f}), SQLite {used / 1e6:.1f} MB "
            f"(peak {high / 1e6:.1f}), Python blocks {sys.getallocatedblocks()}, threads {threading.active_count()}")


def install_tracemalloc() -> bool:
    """With ``$STOREGW_TRACEMALLOC`` set (main thread): trace; SIGUSR2 logs ``report()`` and, when
    the value is a directory rather than ``0``, writes a snapshot there."""
    target = os.environ.get(ENV, "")
    if not target:
        return False
    out = Path(target) if target != "0" else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        tracemalloc.start(int(os.environ.get(ENV + "_FRAMES", "10")))
    count = [0]
    lock = threading.Lock()

    def snapshot(signum: int, frame: Any) -> None:
        _LOGGER.warning("memory: %s", report())
        if out is None:
            return
        with lock:
            count[0] += 1
            path = out / f"snapshot-{count[0]}.pickle"
        snap = tracemalloc.take_snapshot()
        snap.dump(str(path))
        traced, peak = tracemalloc.get_traced_memory()
        top = snap.statistics("lineno")[:10]
        _LOGGER.warning("tracemalloc %s: traced %.1f MB (peak %.1f MB); top: %s", path.name,
                        traced / 1e6, peak / 1e6,
                        "; ".join(f"{s.traceback[0].filename}:{s.traceback[0].lineno} {s.size / 1e6:.2f} MB"
                                  for s in top))

    signal.signal(signal.SIGUSR2, snapshot)
    _LOGGER.warning("memory diagnostics on (%s): SIGUSR2 logs memory use%s", target,
                    "" if out is None else " and writes a tracemalloc snapshot")
    return True
