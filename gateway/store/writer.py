"""The one writer thread: every write joins the next transaction (group commit).

Callers hand a function ``fn(conn)`` to :meth:`Writer.submit`; the writer runs all pending
functions inside one ``BEGIN IMMEDIATE`` transaction (each in its own savepoint, so one failing
write does not undo the others), commits, and only then resolves each future and runs each
``on_commit`` callback. That is what makes "acknowledge only what is durable" cheap.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, TypeVar

from gateway.core.errors import StoreError
from gateway.store.db import Connection, DatabaseError

_LOGGER = logging.getLogger(__name__)
T = TypeVar("T")

_STOP = object()
_undo = threading.local()  # the undo list of the write running on this (the writer's) thread


def on_rollback(fn: Callable[[], None]) -> None:
    """Register ``fn`` to undo an in-memory change made by the write running now, if its savepoint
    or its transaction is rolled back (memory then matches the database again). Outside a write
    (a test calling a write function directly) it does nothing."""
    undo = getattr(_undo, "list", None)
    if undo is not None:
        undo.append(fn)


def _run_undo(fns: list[Callable[[], None]]) -> None:
    for fn in reversed(fns):
        try:
            fn()
        except Exception:
            _LOGGER.exception("undo after rollback failed")


@dataclass(slots=True)
class _Job:
    fn: Callable[[Connection], Any]
    future: Future
    on_commit: Callable[[Any], None] | None = None


@dataclass(slots=True)
class _Exclusive:
    """Work that runs on the writer's connection between transactions (a rekey), not inside one."""

    fn: Callable[[Connection], Any]
    future: Future


@dataclass
class WriterStats:
    """Counters the health endpoint and the watchdog read."""

    transactions: int = 0
    writes: int = 0
    failed: int = 0
    last_commit_monotonic: float = field(default_factory=time.monotonic)
    max_batch: int = 0


class Writer:
    """Owns the write connection; runs submitted writes in batched transactions."""

    def __init__(self, conn: Connection, *, max_batch: int = 2000, max_queue: int = 20000) -> None:
        self._conn = conn
        self._queue: queue.Queue[_Job | object] = queue.Queue(maxsize=max_queue)
        self._max_batch = max_batch
        self._thread: threading.Thread | None = None
        self.stats = WriterStats()
        self._after_commit: list[Callable[[], None]] = []

    def add_post_commit_hook(self, hook: Callable[[], None]) -> None:
        """Run ``hook()`` on the writer thread after every commit (it must be quick and not raise)."""
        self._after_commit.append(hook)

    def start(self) -> None:
        """Start the writer thread."""
        self._thread = threading.Thread(target=self._run, name="storegw-writer", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Finish every queued write, then stop the thread."""
        if self._thread is None:
            return
        self._queue.put(_STOP)
        self._thread.join(timeout)
        self._thread = None

    @property
    def alive(self) -> bool:
        """Whether the writer thread is running."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def pending(self) -> int:
        """Writes waiting for the next transaction."""
        return self._queue.qsize()

    def submit(self, fn: Callable[[Connection], T], *, on_commit: Callable[[T], None] | None = None) -> Future[T]:
        """Queue a write; the future resolves (and ``on_commit`` runs) only after its commit."""
        if not self.alive:
            raise StoreError("the database writer is not running")
        job = _Job(fn, Future(), on_commit)
        self._queue.put(job)
        return job.future

    def call(self, fn: Callable[[Connection], T], timeout: float = 30.0) -> T:
        """Run a write and wait until it is committed; return its result."""
        return self.submit(fn).result(timeout)

    def run_exclusive(self, fn: Callable[[Connection], T], timeout: float = 600.0) -> T:
        """Run ``fn(conn)`` on the writer thread between two transactions and wait for it: the
        writes queued before it are committed first, those queued after wait (none is lost)."""
        if not self.alive:
            raise StoreError("the database writer is not running")
        job = _Exclusive(fn, Future())
        self._queue.put(job)
        return job.future.result(timeout)

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is _STOP:
                break
            if isinstance(first, _Exclusive):
                self._exclusive(first)
                continue
            batch: list[_Job] = [first]  # type: ignore[list-item]
            held: _Exclusive | None = None
            while len(batch) < self._max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stopping = True
                    break
                if isinstance(item, _Exclusive):
                    held = item
                    break
                batch.append(item)  # type: ignore[arg-type]
            self._commit(batch)
            if held is not None:
                self._exclusive(held)

    def _exclusive(self, job: _Exclusive) -> None:
        try:
            job.future.set_result(job.fn(self._conn))
        except Exception as err:  # noqa: BLE001 - the caller gets it through its future
            job.future.set_exception(err)

    def _commit(self, batch: list[_Job]) -> None:
        conn = self._conn
        results: list[tuple[_Job, Any, BaseException | None]] = []
        undos: list[list[Callable[[], None]]] = []  # per write in this transaction, its undo list
        try:
            conn.execute("BEGIN IMMEDIATE")
            for job in batch:
                conn.execute("SAVEPOINT w")
                _undo.list = undo = []
                undos.append(undo)  # registered first: a database error below still undoes it
                try:
                    value = job.fn(conn)
                except Exception as err:  # noqa: BLE001 - the caller gets it through its future
                    conn.execute("ROLLBACK TO w")
                    conn.execute("RELEASE w")
                    undos.pop()
                    _run_undo(undo)
                    results.append((job, None, err))
                else:
                    conn.execute("RELEASE w")
                    results.append((job, value, None))
                finally:
                    _undo.list = None
            conn.execute("COMMIT")
        except DatabaseError as err:
            _LOGGER.exception("Database transaction of %d writes failed", len(batch))
            try:
                conn.execute("ROLLBACK")
            except DatabaseError:
                pass
            _run_undo([fn for undo in undos for fn in undo])
            self.stats.failed += len(batch)
            failure = StoreError(f"database write failed: {err}")
            for job in batch:
                if not job.future.done():
                    job.future.set_exception(failure)
            return
        self.stats.transactions += 1
        self.stats.writes += len(batch)
        self.stats.max_batch = max(self.stats.max_batch, len(batch))
        self.stats.last_commit_monotonic = time.monotonic()
        for hook in self._after_commit:
            try:
                hook()
            except Exception:
                _LOGGER.exception("post-commit hook failed")
        for job, value, error in results:
            if error is not None:
                self.stats.failed += 1
                job.future.set_exception(error)
                continue
            job.future.set_result(value)
            if job.on_commit is not None:
                try:
                    job.on_commit(value)
                except Exception:
                    _LOGGER.exception("on_commit callback failed")
