"""The print service: a durable queue per printer, with proof of delivery and failover.

Each configured ``kind = "escpos"`` printer gets one worker thread (one print daemon per device).
For the printer's oldest unfinished job the worker:

1. asks DLE EOT status; paper out, cover open, error or no answer → alert ``printer:{id}``, wait and
   poll, and resume by itself when the printer is fixed (the alert is cleared);
2. commits ``sent`` (attempts + 1) **before** the first byte goes out;
3. sends the whole rendered job at once, then asks the status again;
4. commits ``confirmed`` only if the printer answered and is fine after the job.

Why this prints every job in full exactly once (at-least-once, made visible): a job is ``sent``
from just before its bytes leave until the printer confirms them. Whatever happens in between
(the printer runs out of paper or is switched off mid-job, the connection drops, the gateway
crashes or is stopped), the job stays ``sent``, and a ``sent`` job is printed again, whole, with a
**REPRINT #n** banner, before any later job of that printer. So no job is lost, no job is
printed twice silently, and order is kept; the only duplicate paper is a banner-marked reprint of
a job whose first copy may have been cut off. Nothing is reprinted after ``confirmed``.

A printer with a ``backup`` hands its waiting jobs over (banner **REROUTED from X**, same job ids)
when it has been unavailable with jobs waiting for longer than ``failover_after``.

Jobs are added inside a caller's transaction (:meth:`PrintService.enqueue`, so an order and its
ticket commit together), through the writer (:meth:`PrintService.submit`), or by another process
(``storegw print`` writes the row itself); idle workers look at the table every second.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from devices.escpos import render
from devices.escpos.config import PrinterConfig, validate_printers
from devices.escpos.driver import SILENT, PrinterConnection, StatusReport
from gateway.core.errors import DeviceUnavailable, GatewayError
from gateway.core.models import Availability, now_ms
from gateway.printing import PrintError, queue
from gateway.spine.context import Periodic, ServiceContext
from gateway.store.db import Connection

_LOGGER = logging.getLogger(__name__)

JOB_POLL = 1.0  # idle workers look for jobs added by other processes this often
NUDGE_WINDOW = 2.0  # after an in-process enqueue, look every NUDGE_POLL until it has committed
NUDGE_POLL = 0.05
RETENTION_MS = 7 * 86_400_000  # finished jobs are kept this long
PRUNE_EVERY = 3600.0

RULES = {"paper_out": ("printer-paper-out", "major"), "cover_open": ("printer-cover-open", "major"),
         "offline": ("printer-offline", "major"), "error": ("printer-error", "major")}
TEXTS = {"paper_out": "paper out", "cover_open": "cover open", "offline": "not answering",
         "error": "printer error"}

Listener = Callable[[str, str, str], None]


@dataclass
class PrinterState:
    """What health shows of a printer: its condition and counters, never job contents."""

    condition: str = "unknown"  # ready, paper_out, cover_open, error, offline, unknown
    paper_near_end: bool = False
    fault_since: float | None = None  # monotonic time the current fault began
    last_error: str = ""
    printed: int = 0
    reprinted: int = 0
    rerouted: int = 0
    failed: int = 0
    last_status: float = field(default=-1e9)


class _Worker:
    """One printer's thread: status, send, confirm; waits through faults; never dies."""

    def __init__(self, svc: PrintService, cfg: PrinterConfig) -> None:
        self.svc = svc
        self.cfg = cfg
        self.state = PrinterState()
        self.conn = PrinterConnection(cfg.port, status_timeout=cfg.status_timeout,
                                      write_timeout=max(cfg.confirm_timeout, 5.0), baudrate=cfg.baudrate,
                                      verify=cfg.verify)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._nudged = -1e9
        self._alert_sig: tuple[Any, ...] | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"storegw-print-{self.cfg.id}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self.conn.abort()

    def join(self, timeout: float) -> None:
        if self._thread is not None:
            self._thread.join(timeout)
        self.conn.close()

    def wake(self, nudge: bool = False) -> None:
        """Look for jobs now (``nudge``: keep looking briefly, the job may not have committed yet)."""
        if nudge:
            self._nudged = time.monotonic()
        self._wake.set()

    # -- the loop
    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._step()
            except Exception:
                _LOGGER.exception("Print worker for %s failed; retrying", self.cfg.id)
                self._stop.wait(max(self.cfg.poll, 1.0))

    def _step(self) -> None:
        self._wake.clear()  # before reading: a wake that comes after the read is not lost
        conn = self.svc.read()
        job = queue.next_job(conn, self.cfg.id)
        if job is None:
            self._idle()
            return
        status = self._check(waiting=True)
        if self._stop.is_set():
            return
        if not status.ready:
            if not self._failover():
                self._stop.wait(self.cfg.poll)
            return
        self._print(job)

    def _idle(self) -> None:
        now = time.monotonic()
        if now - self.state.last_status >= self.cfg.status_interval:
            self._check(waiting=False)
        wait = NUDGE_POLL if time.monotonic() - self._nudged < NUDGE_WINDOW else JOB_POLL
        self._wake.wait(wait)

    def _check(self, *, waiting: bool) -> StatusReport:
        """Ask the printer's status and apply it (alerts, availability)."""
        reason = ""
        try:
            status = self.conn.status(self._stop)
        except DeviceUnavailable as err:
            status, reason = SILENT, str(err)
        finally:
            if not self.conn.keep_open:
                self.conn.close()
        if not self._stop.is_set():
            self._apply(status, reason, waiting=waiting)
        return status

    def _print(self, job: queue.Job) -> None:
        cfg, svc = self.cfg, self.svc
        if job.attempts >= cfg.max_attempts:
            self._fail(job, f"not confirmed after {job.attempts} attempts")
            return
        try:
            data = render.render(job.blocks(), width=cfg.width, encoding=cfg.encoding, cut=cfg.cut,
                                 reprint=job.attempts, rerouted_from=job.rerouted_from, job_id=job.id)
        except (render.DocumentError, ValueError) as err:
            self._fail(job, f"cannot render: {err}")
            return
        reprint = job.attempts > 0
        if not svc.writer.call(lambda c: queue.mark_sent(c, job.id, cfg.id, reprint=reprint)):
            return  # moved to another printer or finished meanwhile
        svc.notify(job.id, "sent", cfg.id)
        reason = ""
        try:
            self.conn.write(data)
            after = self.conn.status(self._stop, timeout=cfg.confirm_timeout)
        except DeviceUnavailable as err:
            after, reason = SILENT, str(err)
        finally:
            if not self.conn.keep_open:
                self.conn.close()
        if self._stop.is_set():
            return  # stopping mid-job: the job stays 'sent' and is reprinted on the next start
        if after.ready:
            def confirm(c: Connection) -> bool:
                svc.alerts.clear(c, f"printer:{cfg.id}:job")  # a failed-job alert ends with the next good job
                return queue.mark_confirmed(c, job.id)

            if svc.writer.call(confirm):
                self.state.printed += 1
                self.state.reprinted += int(reprint)
                svc.notify(job.id, "confirmed", cfg.id)
        else:
            _LOGGER.warning("Printer %s did not confirm job %s (%s); it will be reprinted with a banner",
                            cfg.id, job.id, TEXTS.get(after.condition, after.condition))
        self._apply(after, reason, waiting=not after.ready)

    def _fail(self, job: queue.Job, error: str) -> None:
        cfg, svc = self.cfg, self.svc
        key = f"printer:{cfg.id}:job"

        def write(c: Connection) -> bool:
            done = queue.mark_failed(c, job.id, error)
            if done:
                svc.alerts.clear(c, key)  # one episode per failed job
                svc.alerts.raise_(c, key, kind="printer", rule="printer-job-failed", device=cfg.id,
                                  severity="major", text=f"job {job.id}: {error}"[:200])
            return done

        if svc.writer.call(write):
            self.state.failed += 1
            self.state.last_error = error[:200]
            _LOGGER.error("Print job %s on %s failed: %s", job.id, cfg.id, error)
            svc.notify(job.id, "failed", cfg.id)

    # -- faults, alerts, failover
    def _apply(self, status: StatusReport, reason: str, *, waiting: bool) -> None:
        cfg, st = self.cfg, self.state
        st.last_status = time.monotonic()
        cond = status.condition
        if cond != st.condition:
            if cond == "ready":
                _LOGGER.info("Printer %s is ready", cfg.id)
                st.fault_since = None
            else:
                _LOGGER.warning("Printer %s: %s%s", cfg.id, TEXTS.get(cond, cond),
                                f" ({reason})" if reason else "")
                if st.fault_since is None:
                    st.fault_since = time.monotonic()
            st.condition = cond
        if cond != "ready":
            st.last_error = reason or TEXTS.get(cond, cond)
        st.paper_near_end = status.paper_near_end
        self.svc.hub.availability(Availability(cfg.id, status.answered, "" if status.answered else
                                               (reason or "no answer to DLE EOT")[:200]))
        # An idle printer that is switched off is expected (closed at night): alert only when jobs wait.
        alert = None if cond == "ready" or (cond == "offline" and not waiting) else cond
        low = status.paper_near_end and cond != "paper_out"
        sig = (alert, low)
        if sig != self._alert_sig:
            self._alert_sig = sig
            self.svc.writer.submit(lambda c: self._write_alerts(c, alert, low, reason))

    def _write_alerts(self, conn: Connection, alert: str | None, low: bool, reason: str) -> None:
        alerts, key, dev = self.svc.alerts, f"printer:{self.cfg.id}", self.cfg.id
        active = alerts.active.get(key)
        if alert is None:
            alerts.clear(conn, key)
        elif active is None or active.rule != RULES[alert][0]:
            alerts.clear(conn, key)
            rule, severity = RULES[alert]
            waiting = queue.depth(conn, dev)
            alerts.raise_(conn, key, kind="printer", rule=rule, device=dev, severity=severity,
                          value=float(waiting), text=f"{TEXTS[alert]}; {waiting} job(s) waiting"
                          + (f" ({reason[:120]})" if reason else ""))
        low_key = f"printer:{dev}:paper"
        if low:
            alerts.raise_(conn, low_key, kind="printer", rule="printer-paper-low", device=dev,
                          severity="warning", text="paper near end")
        else:
            alerts.clear(conn, low_key)

    def _failover(self) -> bool:
        """Hand waiting jobs to the backup printer after ``failover_after``; return whether any moved."""
        cfg, st = self.cfg, self.state
        backup = self.svc.workers.get(cfg.backup) if cfg.backup else None
        if backup is None or st.fault_since is None or time.monotonic() - st.fault_since < cfg.failover_after:
            return False
        if backup.state.condition != "ready":
            return False
        moved = self.svc.writer.call(lambda c: queue.reroute(c, cfg.id, backup.cfg.id))
        if moved:
            st.rerouted += len(moved)
            _LOGGER.warning("Printer %s unavailable for %.0fs: %d job(s) rerouted to %s", cfg.id,
                            time.monotonic() - st.fault_since, len(moved), backup.cfg.id)
            for job_id in moved:
                self.svc.notify(job_id, "queued", backup.cfg.id)
            backup.wake()
        return bool(moved)

    def health(self, depth: int) -> dict[str, Any]:
        st = self.state
        return {"state": st.condition, "available": st.condition not in ("offline", "unknown"),
                "station": self.cfg.station or None, "backup": self.cfg.backup or None, "queue": depth,
                "paper_near_end": st.paper_near_end, "printed": st.printed, "reprinted": st.reprinted,
                "rerouted": st.rerouted, "failed": st.failed, "last_error": st.last_error or None}


class PrintService:
    """The durable print queue and its per-printer workers."""

    def __init__(self, gw: ServiceContext) -> None:
        self.writer = gw.store.writer
        self.alerts = gw.alerts
        self.hub = gw.hub
        self._read = gw.store.read
        self.devices = queue.printers_of(gw.cfg.devices)
        self.printers = validate_printers(gw.cfg.devices)
        self.workers = {pid: _Worker(self, cfg) for pid, cfg in self.printers.items()}
        self._listeners: list[Listener] = []
        self._prune_lock = threading.Lock()
        self._pruned = -1e9

    # -- lifecycle
    def start(self) -> None:
        """Report what the queue holds and start one worker per printer."""
        conn = self.read()
        rows = conn.execute("SELECT printer, state, count(*) FROM print_jobs "
                            "WHERE state IN ('queued', 'sent') GROUP BY printer, state").fetchall()
        for printer, state, count in rows:
            if printer not in self.workers:
                _LOGGER.warning("%d print job(s) wait for printer %s, which is not configured; they are kept",
                                count, printer)
            elif state == "sent":
                _LOGGER.warning("%d print job(s) on %s may have been cut off; reprinting them with a banner",
                                count, printer)
        for worker in self.workers.values():
            worker.start()

    def stop(self) -> None:
        """Stop the workers; a job in the middle of printing stays 'sent' (reprinted next start)."""
        for worker in self.workers.values():
            worker.stop()
        for worker in self.workers.values():
            worker.join(5.0)

    def read(self) -> Connection:
        """Return this thread's read connection."""
        return self._read()

    # -- adding jobs
    def enqueue(self, conn: Connection, *, printer: str | None = None, station: str | None = None,
                doc: list[dict[str, Any]], source: str = "", source_id: str = "") -> str:
        """Add a job inside the caller's writer transaction; return its id (durable once that commits).

        Address it to a ``printer`` id, or to a ``station`` (its first printer), or to neither when
        there is one printer. Raises PrintError for an unknown target or an invalid document.
        """
        target, station_name = queue.resolve_target(self.devices, printer, station)
        try:
            blocks = render.validate_doc(doc)
        except render.DocumentError as err:
            raise PrintError(str(err)) from err
        job_id = queue.insert_job(conn, printer=target, station=station_name, doc=blocks, source=source,
                                  source_id=source_id)
        self.workers[target].wake(nudge=True)
        return job_id

    def submit(self, *, printer: str | None = None, station: str | None = None, doc: list[dict[str, Any]],
               source: str = "", source_id: str = "", timeout: float = 30.0) -> str:
        """Add a job in its own transaction; return its id once committed ("queued" is then true)."""
        target, _ = queue.resolve_target(self.devices, printer, station)  # fail before queueing a write
        job_id = self.writer.call(lambda c: self.enqueue(c, printer=printer, station=station, doc=doc,
                                                         source=source, source_id=source_id), timeout)
        # The worker may already be printing it: a listener can hear 'sent' before this 'queued'.
        self.notify(job_id, "queued", target)
        self.workers[target].wake()
        return job_id

    def test_page(self, printer: str) -> str:
        """Queue the self-test page (widths, CJK, columns, QR, barcode) on a printer; return the job id."""
        cfg = self.printers.get(printer)
        if cfg is None:
            queue.resolve_target(self.devices, printer, None)  # raises with a did-you-mean
            raise PrintError(f"unknown printer \"{printer}\"")
        doc = render.self_test_doc(printer, width=cfg.width, encoding=cfg.encoding)
        return self.submit(printer=printer, doc=doc, source="test-page")

    # -- listeners and views
    def on_update(self, callback: Listener) -> None:
        """Call ``callback(job_id, state, printer)`` after each committed state change.

        Runs on a print worker (or the submitting) thread: do one thing and return; exceptions are
        logged. ``confirmed`` is the moment a ticket is known to be on paper.
        """
        self._listeners.append(callback)

    def notify(self, job_id: str, state: str, printer: str) -> None:
        """Tell the listeners about a committed state change."""
        for fn in self._listeners:
            try:
                fn(job_id, state, printer)
            except Exception:
                _LOGGER.exception("Print job listener failed")

    def jobs(self, limit: int = 100, *, printer: str | None = None,
             state: str | None = None) -> list[dict[str, Any]]:
        """Return the newest jobs (no contents), optionally of one printer or state."""
        return [j.summary() for j in queue.list_jobs(self.read(), limit=limit, printer=printer, state=state)]

    def job(self, job_id: str) -> dict[str, Any] | None:
        """Return one job (no contents), or None."""
        job = queue.get_job(self.read(), job_id)
        return job.summary() if job else None

    def health(self) -> dict[str, Any]:
        """Return per-printer state, queue depth and last error (no job contents)."""
        conn = self.read()
        return {"printers": {pid: w.health(queue.depth(conn, pid)) for pid, w in self.workers.items()}}

    def periodic(self) -> tuple[Periodic, ...]:
        """The housekeeping the gateway's scheduler runs for printing."""
        return (Periodic("print-prune", PRUNE_EVERY, self.prune),)

    def prune(self) -> None:
        """Delete finished jobs older than the retention."""
        try:
            self.writer.submit(lambda c: queue.prune(c, now_ms() - RETENTION_MS))
        except GatewayError as err:
            _LOGGER.debug("Pruning print jobs skipped: %s", err)


def build(gw: ServiceContext) -> PrintService:
    """Build the print service for a gateway (started by the gateway)."""
    return PrintService(gw)
