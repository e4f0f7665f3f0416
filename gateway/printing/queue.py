"""The print job state machine in SQL: queued → sent → confirmed | failed.

Pure functions on a connection, so the same code runs inside the writer thread (service),
inside a caller's transaction (``enqueue`` with an order) and in the ``storegw print`` process.
"""

from __future__ import annotations

import difflib
import json
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from gateway.config import DeviceConfig
from gateway.core.models import iso_ms, now_ms
from gateway.printing import PrintError
from gateway.store.db import Connection

STATES = ("queued", "sent", "confirmed", "failed")
PENDING = ("queued", "sent")

_COLUMNS = ("seq, id, printer, station, doc, state, attempts, reprint, rerouted_from, source, source_id, "
            "error, created_ms, updated_ms")


@dataclass(frozen=True, slots=True)
class Job:
    """One row of print_jobs."""

    seq: int
    id: str
    printer: str
    station: str
    doc: str
    state: str
    attempts: int
    reprint: int
    rerouted_from: str
    source: str
    source_id: str
    error: str
    created_ms: int
    updated_ms: int

    def blocks(self) -> list[dict[str, Any]]:
        """Return the job's document (a list of blocks)."""
        return json.loads(self.doc)

    def summary(self) -> dict[str, Any]:
        """Return the job without its contents (for lists, health and logs)."""
        return {"id": self.id, "printer": self.printer, "station": self.station, "state": self.state,
                "attempts": self.attempts, "reprint": bool(self.reprint),
                "rerouted_from": self.rerouted_from or None,
                "source": self.source, "source_id": self.source_id, "error": self.error or None,
                "created_at": iso_ms(self.created_ms), "updated_at": iso_ms(self.updated_ms)}


def new_job_id(ts_ms: int | None = None) -> str:
    """Return a new job id: sortable by creation time, unique per store."""
    return f"pj-{ts_ms if ts_ms is not None else now_ms():012x}{secrets.token_hex(5)}"


def printers_of(devices: Iterable[DeviceConfig]) -> dict[str, DeviceConfig]:
    """Return the configured ESC/POS printers by id, in config order."""
    return {d.id: d for d in devices if d.kind == "escpos"}


def resolve_target(printers: Mapping[str, DeviceConfig], printer: str | None,
                   station: str | None) -> tuple[str, str]:
    """Return (printer id, station) for a job addressed to a printer, a station, or the only printer."""
    if printer:
        if printer not in printers:
            close = difflib.get_close_matches(printer, list(printers), n=1)
            listing = f"; printers: {', '.join(printers)}" if printers else "; no printers are configured"
            hint = f"; did you mean \"{close[0]}\"?" if close else listing
            raise PrintError(f"unknown printer \"{printer}\"{hint}")
        return printer, station or str(printers[printer].options.get("station") or "")
    if station:
        for dev in printers.values():  # the station's first printer is its primary
            if dev.options.get("station") == station:
                return dev.id, station
        stations = sorted({str(d.options["station"]) for d in printers.values() if d.options.get("station")})
        raise PrintError(f"no printer serves station \"{station}\"" +
                         (f"; stations: {', '.join(stations)}" if stations else ""))
    if len(printers) == 1:
        only = next(iter(printers.values()))
        return only.id, str(only.options.get("station") or "")
    raise PrintError("give a printer or a station: " +
                     (f"printers are {', '.join(printers)}" if printers else "no printers are configured"))


def insert_job(conn: Connection, *, printer: str, station: str, doc: list[dict[str, Any]], source: str = "",
               source_id: str = "", job_id: str | None = None) -> str:
    """Insert a queued job in the current transaction; return its id."""
    ts = now_ms()
    job_id = job_id or new_job_id(ts)
    conn.execute(
        "INSERT INTO print_jobs (id, printer, station, doc, state, source, source_id, created_ms, "
        "updated_ms) VALUES (?, ?, ?, ?, 'queued', ?, ?, ?, ?)",
        (job_id, printer, station, json.dumps(doc, ensure_ascii=False, separators=(",", ":")), source,
         source_id, ts, ts))
    return job_id


def _job(row: Any) -> Job | None:
    return Job(*row) if row else None


def get_job(conn: Connection, job_id: str) -> Job | None:
    """Return one job by id."""
    return _job(conn.execute(f"SELECT {_COLUMNS} FROM print_jobs WHERE id = ?", (job_id,)).fetchone())  # noqa: S608


def next_job(conn: Connection, printer: str) -> Job | None:
    """Return the printer's oldest unfinished job (a ``sent`` one is a possibly cut-off print)."""
    return _job(conn.execute(
        f"SELECT {_COLUMNS} FROM print_jobs WHERE printer = ? AND state IN ('queued', 'sent') "  # noqa: S608
        "ORDER BY seq LIMIT 1", (printer,)).fetchone())


def depth(conn: Connection, printer: str) -> int:
    """Return how many jobs wait for the printer."""
    return conn.execute("SELECT count(*) FROM print_jobs WHERE printer = ? AND state IN ('queued', 'sent')",
                        (printer,)).fetchone()[0]


def mark_sent(conn: Connection, job_id: str, printer: str, *, reprint: bool) -> bool:
    """Record that the job's bytes are about to go out; False if it is no longer this printer's."""
    cur = conn.execute(
        "UPDATE print_jobs SET state = 'sent', attempts = attempts + 1, reprint = max(reprint, ?), "
        "updated_ms = ? WHERE id = ? AND printer = ? AND state IN ('queued', 'sent')",
        (int(reprint), now_ms(), job_id, printer))
    return cur.rowcount == 1


def mark_confirmed(conn: Connection, job_id: str) -> bool:
    """Record that the printer confirmed the job (status OK after its bytes)."""
    cur = conn.execute("UPDATE print_jobs SET state = 'confirmed', error = '', updated_ms = ? "
                       "WHERE id = ? AND state = 'sent'", (now_ms(), job_id))
    return cur.rowcount == 1


def mark_failed(conn: Connection, job_id: str, error: str) -> bool:
    """Give up on a job (it cannot be rendered, or it never got through); keeps the row."""
    cur = conn.execute("UPDATE print_jobs SET state = 'failed', error = ?, updated_ms = ? "
                       "WHERE id = ? AND state IN ('queued', 'sent')", (error[:200], now_ms(), job_id))
    return cur.rowcount == 1


def reroute(conn: Connection, from_printer: str, to_printer: str) -> list[str]:
    """Move every unfinished job of a printer to its backup, in order; return the ids moved."""
    ids = [r[0] for r in conn.execute(
        "SELECT id FROM print_jobs WHERE printer = ? AND state IN ('queued', 'sent') ORDER BY seq",
        (from_printer,))]
    # A job that was 'sent' may have printed in part on the old printer: it keeps its attempts,
    # so the backup prints it with the REPRINT banner as well as REROUTED.
    conn.execute(
        "UPDATE print_jobs SET printer = ?, state = 'queued', "
        "rerouted_from = CASE WHEN rerouted_from = '' THEN printer ELSE rerouted_from END, updated_ms = ? "
        "WHERE printer = ? AND state IN ('queued', 'sent')", (to_printer, now_ms(), from_printer))
    return ids


def list_jobs(conn: Connection, *, limit: int = 100, printer: str | None = None,
              state: str | None = None) -> list[Job]:
    """Return the newest jobs first, optionally of one printer or state."""
    where, args = [], []
    if printer:
        where.append("printer = ?")
        args.append(printer)
    if state:
        where.append("state = ?")
        args.append(state)
    sql = f"SELECT {_COLUMNS} FROM print_jobs"  # noqa: S608 - fixed column list, parameters below
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY seq DESC LIMIT ?"
    args.append(max(1, int(limit)))
    return [Job(*r) for r in conn.execute(sql, args)]


def prune(conn: Connection, before_ms: int) -> int:
    """Delete finished jobs last updated before ``before_ms``; return how many."""
    return conn.execute("DELETE FROM print_jobs WHERE state IN ('confirmed', 'failed') AND updated_ms < ?",
                        (before_ms,)).rowcount
