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
import platform
import re
import signal
import sys
import threading
import tracemalloc
from collections import Counter
from pathlib import Path
from typing import Any

_LOGGER = logging.getLogger(__name__)
ENV = "STOREGW_TRACEMALLOC"
MMAP_THRESHOLD = 1024 * 1024
TRIM_THRESHOLD = 128 * 1024
# One malloc arena for all threads: each further arena keeps its own free and fragmented memory
# (bench/soak.py: ~1 MB less after 8 minutes than with two); Python allocates under the GIL anyway.
ARENA_MAX = 1
# Imported only on the paths that need them, never by `storegw run` at start (tests/test_memory_imports.py;
# docs/architecture.md, Memory): python-escpos and what it loads (USB and file:// printers only), the
# QR code drawers (stickers, TOTP enrolment), argon2 (sign-ins and account changes), reportlab (PDF).
LAZY_MODULES = ("escpos", "PIL", "qrcode", "barcode", "yaml", "usb", "segno", "argon2", "reportlab", "pyotp",
                "cv2", "numpy", "matplotlib", "psycopg", "jsonschema")
# glibc's per-thread caches (tcache) hold up to 7 freed chunks of each of 64 sizes (up to 1 KiB) per
# thread, out of reach of every other thread and of malloc_trim, and pin the heap around them: with
# ~35 threads the heap grew ~0.4 MB a minute for as long as bench/soak.py ran (docs/architecture.md,
# Memory). A tunable, not a mallopt() parameter: it has to be in the environment when the process
# starts, so the daemons re-execute themselves once with it (exec_tuned()).
TUNABLES = ("glibc.malloc.tcache_count=0",)
DAEMON_COMMANDS = ("run", "demo")
_REEXEC = "STOREGW_MALLOC_REEXEC"  # set in the re-executed process: never a second time
_M_TRIM_THRESHOLD = -1  # mallopt parameter numbers (malloc.h)
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8


def tune_malloc(threshold: int = MMAP_THRESHOLD, arenas: int = ARENA_MAX, trim: int = TRIM_THRESHOLD) -> bool:
    """Give every allocation of ``threshold`` bytes or more its own mmap, give back free memory at the
    top of the heap beyond ``trim`` bytes, and let the ~30 threads share ``arenas`` malloc arenas
    (glibc; a no-op elsewhere). Call first, before anything large is allocated and freed (the trim
    threshold is set explicitly: glibc had already doubled it to 16 MiB when an 8 MiB argon2 block was
    freed at import) and before threads start.

    ``$MALLOC_MMAP_THRESHOLD_``, ``$MALLOC_TRIM_THRESHOLD_`` and ``$MALLOC_ARENA_MAX`` in the environment
    win (glibc reads them at start).
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
    if not os.environ.get("MALLOC_TRIM_THRESHOLD_"):
        ok = bool(mallopt(_M_TRIM_THRESHOLD, trim)) and ok
    if not os.environ.get("MALLOC_ARENA_MAX"):
        ok = bool(mallopt(_M_ARENA_MAX, arenas)) and ok
    return ok


def tuned_environment(argv: list[str], environ: dict[str, str] | os._Environ[str]) -> dict[str, str] | None:
    """The environment to re-execute ``argv`` with so that glibc starts with ``TUNABLES``, or ``None``:
    not a daemon command (``storegw run``/``demo``), not glibc, already re-executed, or each tunable
    already set (by the systemd unit, or by an operator: ``GLIBC_TUNABLES=glibc.malloc.tcache_count=7``
    brings glibc's default back)."""
    command = next((a for a in argv[1:] if not a.startswith("-")), "")
    if command not in DAEMON_COMMANDS or environ.get(_REEXEC) or platform.libc_ver()[0] != "glibc":
        return None
    current = environ.get("GLIBC_TUNABLES", "")
    missing = [t for t in TUNABLES if t.split("=", 1)[0] + "=" not in current]
    if not missing:
        return None
    return {**environ, "GLIBC_TUNABLES": ":".join(([current] if current else []) + missing), _REEXEC: "1"}


def exec_tuned(argv: list[str] | None = None) -> None:
    """Replace this process (same PID, arguments, descriptors) with itself started with glibc's
    ``TUNABLES`` when ``tuned_environment`` says so; otherwise return. Call first thing in the
    ``storegw`` entry point, before any thread or file exists (never from an in-process caller such
    as a test's CliRunner: that would replace the caller)."""
    env = tuned_environment(sys.argv if argv is None else argv, os.environ)
    if env is None:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execve(sys.executable, sys.orig_argv, env)
    except OSError as exc:  # keep running untuned rather than not at all
        _LOGGER.warning("Could not re-execute with GLIBC_TUNABLES (%s); glibc's thread caches stay on", exc)


def lazy_loaded() -> list[str]:
    """The modules of ``LAZY_MODULES`` this process has imported."""
    return sorted(name for name in LAZY_MODULES if name in sys.modules)


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


def sqlite_connections() -> dict[str, int]:
    """Sum, over this process's open SQLite connections, of each one's page cache, schema and prepared
    statements in bytes (``sqlite3_db_status``), and their number. Diagnostics only: the connection
    handle is read from the connection object's first field (``pysqlite_Connection.db``, as in CPython's
    sqlite3, of which sqlcipher3 is a copy), and a handle SQLite does not recognise is skipped."""
    out = {"connections": 0, "cache": 0, "schema": 0, "statements": 0}
    try:
        import gc

        import sqlcipher3
        import sqlcipher3._sqlite3 as mod

        lib = ctypes.CDLL(mod.__file__)
        lib.sqlite3_db_status.argtypes = (ctypes.c_void_p, ctypes.c_int, ctypes.POINTER(ctypes.c_int),
                                          ctypes.POINTER(ctypes.c_int), ctypes.c_int)
        lib.sqlite3_db_filename.restype = ctypes.c_char_p
        lib.sqlite3_db_filename.argtypes = (ctypes.c_void_p, ctypes.c_char_p)
        # sqlcipher3's connections are not tracked by the collector: found as what tracked objects refer to
        found = {id(r): r for o in gc.get_objects() for r in gc.get_referents(o) if type(r) is sqlcipher3.Connection}
        conns = list(found.values())
    except (ImportError, OSError, AttributeError):
        return out
    cur, high = ctypes.c_int(), ctypes.c_int()
    for conn in conns:
        handle = ctypes.c_void_p.from_address(id(conn) + object.__basicsize__).value
        if not handle or not lib.sqlite3_db_filename(handle, b"main"):
            continue  # closed
        out["connections"] += 1
        for op, name in ((1, "cache"), (2, "schema"), (3, "statements")):  # SQLITE_DBSTATUS_*_USED
            if lib.sqlite3_db_status(handle, op, ctypes.byref(cur), ctypes.byref(high), 0) == 0:
                out[name] += cur.value
    return out


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                     "fsmblks", "uordblks", "fordblks", "keepcost")]


def malloc_heap() -> dict[str, int]:
    """glibc's ``mallinfo2()``: bytes the main heap took from the system (``arena``), of which in use
    (``uordblks``) and free inside it (``fordblks``), in free chunks (``ordblks``), releasable at the top
    (``keepcost``), and in mmapped blocks (``hblkhd``); ``{}`` where there is no glibc 2.33+."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        fn = libc.mallinfo2
    except (OSError, AttributeError):
        return {}
    fn.restype = _MallInfo2
    info = fn()
    return {name: getattr(info, name) for name, _ in _MallInfo2._fields_}


def report(connections: bool = False) -> str:
    """One line: RSS, its peak, SQLite's heap, Python's allocated blocks, threads; with ``connections``
    also SQLite's connections and their caches, schemas and statements."""
    used, high = sqlite_memory()
    line = (f"RSS {rss_kb() / 1024:.1f} MB (peak {rss_kb('VmHWM') / 1024:.1f}), SQLite {used / 1e6:.1f} MB "
            f"(peak {high / 1e6:.1f}), Python blocks {sys.getallocatedblocks()}, threads {threading.active_count()}")
    heap = malloc_heap()
    if heap:
        line += (f", malloc heap {heap['arena'] / 1e6:.1f} MB: in use {heap['uordblks'] / 1e6:.1f}, free "
                 f"{heap['fordblks'] / 1e6:.1f} in {heap['ordblks']} chunks (top {heap['keepcost'] / 1e6:.1f}), "
                 f"mmapped {heap['hblkhd'] / 1e6:.1f}")
    line += f", lazy modules loaded: {', '.join(lazy_loaded()) or 'none'}"
    if connections:
        c = sqlite_connections()
        line += (f"; {c['connections']} SQLite connections: caches {c['cache'] / 1e6:.1f} MB, schemas "
                 f"{c['schema'] / 1e6:.1f} MB, statements {c['statements'] / 1e6:.1f} MB")
        names = Counter(re.sub(r"[-_ ]?\d+$", "", re.sub(r" \(.*\)$", "", t.name)) for t in threading.enumerate())
        line += "; threads: " + ", ".join(f"{name} {n}" for name, n in sorted(names.items()))
    return line


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
        _LOGGER.warning("memory: %s", report(connections=True))
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
