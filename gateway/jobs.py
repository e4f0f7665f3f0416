"""Periodic work on APScheduler (max_instances=1, coalesce=True): summaries, alerts, retention,
outbox budget, heartbeat, and the systemd watchdog fed only while the loops make progress."""

from __future__ import annotations

import logging
import os
from typing import Any

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler

from gateway.core.models import now_ms
from gateway.store.db import Connection
from gateway.store.outbox import enforce_budget

# The scheduler is built by gateway.app for its Gateway (annotated ``Any`` here: jobs sits below app).
Gateway = Any

_LOGGER = logging.getLogger(__name__)

BACKLOG_KEY = "gateway:uplink-backlog"
BUDGET_KEY = "gateway:outbox-budget"
BACKUP_KEY = "gateway:backup-failed"


def _watchdog_interval() -> float | None:
    usec = os.environ.get("WATCHDOG_USEC")
    if not usec or (os.environ.get("WATCHDOG_PID") not in (None, str(os.getpid()))):
        return None
    return max(1.0, int(usec) / 1e6 / 2)


# Threads that run the jobs. The jobs are short (most hand their work to the writer); a long one (backup,
# retention, the daily report) leaves the rest three. APScheduler's default of 10 threads were started one
# by one as jobs happened to overlap, so the pool, and RSS with it, grew for hours (docs/architecture.md,
# Memory).
JOB_THREADS = 4


def build_scheduler(gw: Gateway) -> BackgroundScheduler:
    """Schedule every periodic job of the gateway."""
    sched = BackgroundScheduler(timezone="UTC", job_defaults={"max_instances": 1, "coalesce": True,
                                                              "misfire_grace_time": 30},
                                executors={"default": ThreadPoolExecutor(
                                    JOB_THREADS, pool_kwargs={"thread_name_prefix": "storegw-job"})})
    window = gw.cfg.telemetry.summary_window
    sched.add_job(lambda: summaries(gw), "interval", seconds=max(1.0, min(5.0, window / 4)), id="summaries")
    sched.add_job(lambda: gw.store.writer.submit(gw.telemetry.tick), "interval", seconds=1, id="alert-tick")
    sched.add_job(lambda: gw.store.writer.submit(gw.telemetry.retention), "interval", hours=1, id="retention")
    sched.add_job(lambda: gw.store.writer.submit(lambda c: budget(gw, c)), "interval", seconds=30, id="budget")
    sched.add_job(lambda: backlog(gw), "interval", seconds=10, id="backlog")
    sched.add_job(gw.uplink.heartbeat, "interval", seconds=60, id="heartbeat")
    if gw.cfg.uplink.manifest_every > 0:
        sched.add_job(lambda: gw.store.writer.submit(gw.uplink.write_manifest), "interval",
                      seconds=gw.cfg.uplink.manifest_every, id="manifest")
    sched.add_job(lambda: gw.ingest_stats_sample(), "interval", seconds=1, id="rate")
    if gw.cfg.backup.at:
        hour, minute = (int(x) for x in gw.cfg.backup.at.split(":"))
        sched.add_job(lambda: scheduled_backup(gw), "cron", hour=hour, minute=minute,
                      timezone=gw.cfg.store.timezone, id="backup", misfire_grace_time=3600)
    # Retention that really deletes (gateway/privacy/retention.py): daily, store time; at once after a restore.
    hour, minute = (int(x) for x in (gw.cfg.privacy.retention_at or "04:15").split(":"))
    sched.add_job(lambda: privacy_retention(gw), "cron", hour=hour, minute=minute, timezone=gw.cfg.store.timezone,
                  id="privacy-retention", misfire_grace_time=6 * 3600)
    if gw.privacy_restored:
        sched.add_job(lambda: privacy_retention(gw), "date", id="privacy-retention-restored")
    health = gw.services.get("health")
    if health is not None and gw.cfg.health.report_at:  # the daily report at close, store time
        hour, minute = (int(x) for x in gw.cfg.health.report_at.split(":"))
        sched.add_job(health.daily_report, "cron", hour=hour, minute=minute, timezone=gw.cfg.store.timezone,
                      id="daily-report", misfire_grace_time=3600)
    for svc in [*gw.services.values(), *([gw.privacy] if gw.privacy is not None else [])]:
        for job in svc.periodic():
            sched.add_job(job.fn, "interval", seconds=job.every_s, id=job.id)
    for job in gw.periodic():
        sched.add_job(job.fn, "interval", seconds=job.every_s, id=job.id)
    interval = _watchdog_interval()
    if interval:
        sched.add_job(lambda: watchdog(gw), "interval", seconds=interval, id="watchdog")
    return sched


def summaries(gw: Gateway) -> None:
    """Queue closed windows (the commit wakes the uplink)."""
    gw.store.writer.submit(gw.telemetry.flush_summaries)


def budget(gw: Gateway, conn: Connection) -> None:
    """Keep the outbox under its disk budget; alert on every degradation (never drop alerts)."""
    result = enforce_budget(conn, gw.cfg.uplink.budget, gw.telemetry.coarsen)
    if result.changed or result.over_budget_after:
        gw.alerts.raise_(conn, BUDGET_KEY, kind="gateway", rule="outbox-budget", device="gateway",
                         severity="major", value=float(result.dropped_raw + result.coarsened_summaries),
                         text=f"outbox over budget: dropped {result.dropped_raw} raw, "
                              f"coarsened {result.coarsened_summaries} summary messages")
    elif gw.alerts.is_active(BUDGET_KEY):
        gw.alerts.clear(conn, BUDGET_KEY)


def backlog(gw: Gateway) -> None:
    """Raise when the oldest unsent message is older than uplink.backlog_alert_after; clear after."""
    row = gw.store.read().execute("SELECT min(created_ms) FROM outbox WHERE kind != 'alert'").fetchone()
    oldest = row[0]
    limit_ms = gw.cfg.uplink.backlog_alert_after * 1000
    late = oldest is not None and now_ms() - oldest > limit_ms
    if late and not gw.alerts.is_active(BACKLOG_KEY):
        age = (now_ms() - oldest) / 1000
        gw.store.writer.submit(lambda c: gw.alerts.raise_(
            c, BACKLOG_KEY, kind="gateway", rule="uplink-backlog", device="gateway", severity="minor",
            value=round(age), text="oldest unsent message is older than uplink.backlog_alert_after"))
    elif not late and gw.alerts.is_active(BACKLOG_KEY):
        gw.store.writer.submit(lambda c: gw.alerts.clear(c, BACKLOG_KEY))


def privacy_retention(gw: Gateway) -> None:
    """The daily retention run; a failure is logged and retried the next day (the receipt HQ misses is
    its alarm)."""
    try:
        gw.retention_run()
    except Exception:
        _LOGGER.exception("Retention run failed")


def watchdog(gw: Gateway) -> None:
    """Feed systemd's watchdog only while the writer, ingest and uplink loops make progress."""
    interval = _watchdog_interval()
    stale = gw.stalled_loops(max_age=interval * 2 if interval else 60)
    if stale:
        _LOGGER.error("Not feeding the watchdog: %s made no progress", ", ".join(stale))
        return
    gw.notify("WATCHDOG=1")


def scheduled_backup(gw: Gateway) -> None:
    """The daily backup ([backup] at); a failure raises the gateway alert backup-failed, the next
    good backup clears it."""
    from gateway.store.backup import make_backup

    cfg = gw.cfg
    try:
        key = gw.store.key
        path = make_backup(cfg.data_path, key, cfg.backup_path, cfg.backup.keep)
    except Exception as err:  # noqa: BLE001 - any failure is the alert; the gateway goes on
        _LOGGER.error("Scheduled backup failed: %s", err)
        text = f"the daily backup failed: {type(err).__name__} (see the journal)"
        if not gw.alerts.is_active(BACKUP_KEY):
            gw.store.writer.submit(lambda c: gw.alerts.raise_(
                c, BACKUP_KEY, kind="gateway", rule="backup-failed", device="gateway", severity="minor", text=text))
        return
    _LOGGER.info("Scheduled backup written to %s", path)
    if gw.alerts.is_active(BACKUP_KEY):
        gw.store.writer.submit(lambda c: gw.alerts.clear(c, BACKUP_KEY))
