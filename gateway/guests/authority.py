"""The authority outbox: each stay's report to the local police system (旅馆业治安管理信息系统).

One row per report in ``guest_reports``; a state machine after OCA's ``pms_ses_communication`` but
without its permanent copy of every traveller (data-anchors B.4)::

    due ──send ok──► sent ──ack file / manager──► acknowledged   (payload copy set to NULL, file removed)
     │                 └──err file / manager──► failed ──retry──► sent
     └──adapter error──► failed (attempts + 1)

A stay with an overseas guest (a foreign passport, a HK/Macau/Taiwan document) must be reported
within ``guests.report_within`` (24 h) of check-in: ``deadline_ms``. The tick raises
``guest-report-deadline`` ``guests.report_alert_before`` (2 h) before it lapses while the report is
unsent (due or failed), and ``guest-report-late`` once it has; both clear when it is sent.

The adapter (``guests.adapter = "file"``) writes ``REPORT_ID.json`` (format
``storegw-guest-report/1``, docs/guests.md) atomically into ``guests.drop_dir`` (0700), mode 0600;
the police system's uploader answers with ``REPORT_ID.ack`` or ``REPORT_ID.err`` in ``ack_dir``.
The payload is built at send time from the encrypted rows; the copy kept until acknowledgement is
field-encrypted (``payload_ct``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.core.errors import GuestError
from gateway.core.models import iso_ms
from gateway.staff.accounts import audit
from gateway.store.db import Connection

if TYPE_CHECKING:
    from gateway.guests.context import GuestsContext

_LOGGER = logging.getLogger(__name__)

FORMAT = "storegw-guest-report/1"
STATES = ("due", "sent", "acknowledged", "failed")
UNSENT = ("due", "failed")
DEADLINE_RULE, LATE_RULE = "guest-report-deadline", "guest-report-late"


def report_name(ctx: GuestsContext, report_id: int) -> str:
    """The report's id outside the store (file names, the police system): ``STORE-gr-ID``."""
    return f"{ctx.store_id}-gr-{report_id}"


def add_guest(ctx: GuestsContext, c: Connection, stay_id: int, pid: int, check_in: int, overseas: bool) -> int | None:
    """Put a newly registered guest in the stay's unsent report, or open a new report for the stay."""
    row = c.execute("SELECT id, people, deadline_ms FROM guest_reports WHERE stay_id = ? AND state = 'due' "
                    "ORDER BY id DESC LIMIT 1", (stay_id,)).fetchone()
    deadline = check_in + int(ctx.gcfg.report_within * 1000) if overseas else None
    if row is not None:
        people = [*json.loads(row[1]), pid]
        new_deadline = row[2] if deadline is None else min(x for x in (row[2], deadline) if x is not None)
        c.execute("UPDATE guest_reports SET people = ?, deadline_ms = ? WHERE id = ?",
                  (json.dumps(people), new_deadline, row[0]))
        return int(row[0])
    if not overseas and not ctx.gcfg.report_all:
        return None
    return int(c.execute("INSERT INTO guest_reports (stay_id, people, created_ms, deadline_ms) VALUES (?, ?, ?, ?)",
                         (stay_id, json.dumps([pid]), ctx.now(), deadline)).lastrowid)


def _local(ctx: GuestsContext, ms: int | None) -> str | None:
    if ms is None:
        return None
    return dt.datetime.fromtimestamp(ms / 1000, ctx.tz).isoformat(timespec="minutes")


def payload(ctx: GuestsContext, c: Connection, report_id: int) -> dict[str, Any]:
    """The document handed to the police system (format ``storegw-guest-report/1``)."""
    stay_id, people, deadline = c.execute("SELECT stay_id, people, deadline_ms FROM guest_reports WHERE id = ?",
                                          (report_id,)).fetchone()
    room, cin, exp = c.execute("SELECT room, check_in_ms, expected_out_ms FROM guest_stays WHERE id = ?",
                               (stay_id,)).fetchone()
    ids = json.loads(people)
    guests = []
    dec = ctx.cipher.decrypt_text
    for pid in ids:
        row = c.execute("SELECT ref, doc_type, minor, name_ct, doc_number_ct, details_ct, guardian_ct "
                        "FROM guest_people WHERE id = ?", (pid,)).fetchone()
        if row is None or row[3] is None:
            continue
        ref, doc_type, minor, name_ct, num_ct, det_ct, guard_ct = row
        g: dict[str, Any] = {"doc_type": doc_type, "name": dec("guest_people", "name_ct", bytes(name_ct), ref),
                             "doc_number": dec("guest_people", "doc_number_ct", bytes(num_ct), ref),
                             **json.loads(dec("guest_people", "details_ct", bytes(det_ct), ref)),
                             "minor": bool(minor)}
        if guard_ct is not None:
            guardian = json.loads(dec("guest_people", "guardian_ct", bytes(guard_ct), ref))
            g["guardian"] = {"name": guardian["name"], "contact": guardian["contact"],
                             "relationships": [{"guest": f"{report_name(ctx, report_id)}/{i}", "relationship": rel}
                                               for i, (adult, rel) in enumerate(guardian["relationships"].items())
                                               if int(adult) in ids]}
        guests.append(g)
    return {"format": FORMAT, "report_id": report_name(ctx, report_id), "store": ctx.store_id,
            "store_name": ctx.cfg.store.name, "operation": "checkin", "created_at": _local(ctx, ctx.now()),
            "deadline": _local(ctx, deadline),
            "stay": {"room": room or "", "check_in": _local(ctx, cin), "expected_checkout": _local(ctx, exp)},
            "guests": guests}


def _private_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)


def drop_file(ctx: GuestsContext, name: str, doc: dict[str, Any]) -> Path:
    """The file adapter: write ``NAME.json`` atomically into the drop directory, mode 0600."""
    _private_dir(ctx.drop_dir)
    final = ctx.drop_dir / f"{name}.json"
    tmp = ctx.drop_dir / f".{name}.json.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, json.dumps(doc, ensure_ascii=False, indent=1).encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, final)
    dfd = os.open(ctx.drop_dir, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
    return final


def send(ctx: GuestsContext, c: Connection, report_id: int, who: str) -> str:
    """Hand a due or failed report to the adapter; return its new state (sent or failed)."""
    row = c.execute("SELECT state FROM guest_reports WHERE id = ?", (report_id,)).fetchone()
    if row is None:
        raise GuestError("没有该报告。No such report.", code="no_report", status=404)
    if row[0] not in UNSENT:
        raise GuestError(f"报告状态为 {row[0]}，不能发送。The report is {row[0]}; only due or failed reports are sent.",
                         code="bad_state", status=409)
    now = ctx.now()
    name = report_name(ctx, report_id)
    try:
        doc = payload(ctx, c, report_id)
        drop_file(ctx, name, doc)
    except OSError as err:
        c.execute("UPDATE guest_reports SET state = 'failed', attempts = attempts + 1, failed_ms = ?, error = ? "
                  "WHERE id = ?", (now, f"adapter: {err.strerror or type(err).__name__}"[:200], report_id))
        audit(c, who, "authority-send", f"report:{report_id}", "failed")
        return "failed"
    ct = ctx.cipher.encrypt("guest_reports", "payload_ct", json.dumps(doc, ensure_ascii=False), report_id)
    c.execute("UPDATE guest_reports SET state = 'sent', attempts = attempts + 1, sent_ms = ?, error = '', file = ?, "
              "payload_ct = ? WHERE id = ?", (now, f"{name}.json", ct, report_id))
    audit(c, who, "authority-send", f"report:{report_id}", "sent")
    _clear_alerts(ctx, c, report_id)
    return "sent"


def acknowledge(ctx: GuestsContext, c: Connection, report_id: int, who: str) -> None:
    """The police system took the report: discard the payload copy (and the dropped file)."""
    row = c.execute("SELECT state, file FROM guest_reports WHERE id = ?", (report_id,)).fetchone()
    if row is None:
        raise GuestError("没有该报告。No such report.", code="no_report", status=404)
    if row[0] != "sent":
        raise GuestError(f"报告状态为 {row[0]}，不能确认。The report is {row[0]}; only a sent report is acknowledged.",
                         code="bad_state", status=409)
    c.execute("UPDATE guest_reports SET state = 'acknowledged', acked_ms = ?, payload_ct = NULL WHERE id = ?",
              (ctx.now(), report_id))
    if row[1]:
        with contextlib.suppress(FileNotFoundError):
            (ctx.drop_dir / row[1]).unlink()
    audit(c, who, "authority-ack", f"report:{report_id}")


def fail(ctx: GuestsContext, c: Connection, report_id: int, who: str, why: str) -> None:
    """The police system refused a sent report (an err file, or a manager saw it refused)."""
    row = c.execute("SELECT state FROM guest_reports WHERE id = ?", (report_id,)).fetchone()
    if row is None:
        raise GuestError("没有该报告。No such report.", code="no_report", status=404)
    if row[0] != "sent":
        raise GuestError(f"报告状态为 {row[0]}。The report is {row[0]}; only a sent report can fail.",
                         code="bad_state", status=409)
    c.execute("UPDATE guest_reports SET state = 'failed', failed_ms = ?, error = ? WHERE id = ?",
              (ctx.now(), why[:200], report_id))
    audit(c, who, "authority-failed", f"report:{report_id}", why[:80])


def _clear_alerts(ctx: GuestsContext, c: Connection, report_id: int) -> None:
    for key in (f"guests:report:{report_id}", f"guests:report-late:{report_id}"):
        ctx.alerts.clear(c, key, ts_ms=ctx.now())


def tick(ctx: GuestsContext, c: Connection) -> dict[str, int]:
    """Read answers from the police system, send due reports (``auto_send``), raise or clear deadline alerts."""
    counts = {"acked": 0, "failed": 0, "sent": 0, "alerts": 0}
    for path in sorted(ctx.ack_dir.glob(f"{ctx.store_id}-gr-*.*")) if ctx.ack_dir.is_dir() else ():
        stem, suffix = path.stem, path.suffix
        try:
            rid = int(stem.rsplit("-", 1)[1])
        except ValueError:
            continue
        row = c.execute("SELECT state FROM guest_reports WHERE id = ?", (rid,)).fetchone()
        if row is not None and row[0] == "sent" and suffix in (".ack", ".err"):
            if suffix == ".ack":
                acknowledge(ctx, c, rid, "system")
                counts["acked"] += 1
            else:
                why = path.read_text(encoding="utf-8", errors="replace")[:120].strip() or "refused"
                fail(ctx, c, rid, "system", f"police system: {why}")
                counts["failed"] += 1
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    now = ctx.now()
    if ctx.gcfg.auto_send:
        retry_ms = int(ctx.gcfg.retry_every * 1000)
        for (rid,) in c.execute("SELECT id FROM guest_reports WHERE state = 'due' OR (state = 'failed' AND "
                                "coalesce(failed_ms, 0) <= ?) ORDER BY id", (now - retry_ms,)).fetchall():
            if send(ctx, c, rid, "system") == "sent":
                counts["sent"] += 1
    before = int(ctx.gcfg.report_alert_before * 1000)
    for rid, deadline in c.execute("SELECT id, deadline_ms FROM guest_reports WHERE state IN ('due', 'failed') "
                                   "AND deadline_ms IS NOT NULL AND deadline_ms - ? <= ?", (before, now)).fetchall():
        text = f"authority report {report_name(ctx, rid)} not sent; deadline {iso_ms(deadline)}"
        if ctx.alerts.raise_(c, f"guests:report:{rid}", kind="guests", rule=DEADLINE_RULE, device="guests",
                             severity="major", ts_ms=now, text=text):
            counts["alerts"] += 1
        if now >= deadline and ctx.alerts.raise_(c, f"guests:report-late:{rid}", kind="guests", rule=LATE_RULE,
                                                 device="guests", severity="critical", ts_ms=now, text=text):
            counts["alerts"] += 1
    return counts


def reports(ctx: GuestsContext, conn: Connection, limit: int = 200) -> list[dict[str, Any]]:
    """Reports for the manager's page: states, times, attempts; no values."""
    now = ctx.now()
    out = []
    for rid, sid, people, state, attempts, created, deadline, sent, acked, error in conn.execute(
            "SELECT id, stay_id, people, state, attempts, created_ms, deadline_ms, sent_ms, acked_ms, error "
            "FROM guest_reports ORDER BY id DESC LIMIT ?", (limit,)):
        on_time = None if sent is None or deadline is None else sent <= deadline
        out.append({"id": rid, "name": report_name(ctx, rid), "stay": sid, "guests": len(json.loads(people)),
                    "state": state, "attempts": attempts, "created_ms": created, "deadline_ms": deadline,
                    "sent_ms": sent, "acked_ms": acked, "error": error, "on_time": on_time,
                    "overdue": state in UNSENT and deadline is not None and now > deadline})
    return out
