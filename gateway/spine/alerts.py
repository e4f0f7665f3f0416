"""Alert episodes: one ``raised`` and one ``cleared`` message per episode, surviving restarts.

Everything here runs inside writer transactions (the writer thread), so the alert's outbox
message commits together with the reading or event that caused it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from gateway.core.models import iso_ms, now_ms
from gateway.store.db import Connection
from gateway.store.outbox import Lane, enqueue
from gateway.store.writer import on_rollback

_LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ActiveAlert:
    """An alert that has been raised and not yet cleared."""

    key: str
    episode: str
    kind: str
    rule: str
    device: str
    severity: str
    value: float | None
    raised_ms: int


class AlertManager:
    """Raise and clear alert episodes; the only code that writes P/alerts."""

    def __init__(self, store_id: str, prefix: str) -> None:
        self.store_id = store_id
        self.topic = f"{prefix}/alerts"
        self.active: dict[str, ActiveAlert] = {}
        self.last: dict[str, object] | None = None
        self.raised_total = 0
        self.cleared_total = 0

    def load(self, conn: Connection) -> None:
        """Restore the active alerts after a restart (they are not raised again)."""
        self.active = {
            r[0]: ActiveAlert(*r) for r in conn.execute(
                "SELECT key, episode, kind, rule, device, severity, value, raised_ms FROM alerts_active")}

    def is_active(self, key: str) -> bool:
        """Return whether an alert with this key is raised."""
        return key in self.active

    def raise_(self, conn: Connection, key: str, *, kind: str, rule: str, device: str, severity: str,
               value: float | None = None, ts_ms: int | None = None, text: str = "") -> bool:
        """Raise an episode unless one is active for this key; return whether one was raised."""
        if key in self.active:
            return False
        ts = ts_ms if ts_ms is not None else now_ms()
        episode = f"{self.store_id}:{key}:{ts}"
        alert = ActiveAlert(key, episode, kind, rule, device, severity, value, ts)
        conn.execute("INSERT OR REPLACE INTO alerts_active VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                     (key, episode, kind, rule, device, severity, value, ts))
        self._emit(conn, alert, "raised", value, ts, text)
        self.active[key] = alert
        on_rollback(lambda: self.active.pop(key, None))  # not raised after all: memory follows the database
        self.raised_total += 1
        _LOGGER.warning("Alert raised: %s %s on %s", kind, rule, device)
        return True

    def clear(self, conn: Connection, key: str, *, value: float | None = None, ts_ms: int | None = None,
              text: str = "") -> bool:
        """Clear the active episode for this key; return whether one was cleared."""
        alert = self.active.get(key)
        if alert is None:
            return False
        ts = ts_ms if ts_ms is not None else now_ms()
        conn.execute("DELETE FROM alerts_active WHERE key = ?", (key,))
        self._emit(conn, alert, "cleared", value, max(ts, alert.raised_ms), text)
        del self.active[key]
        on_rollback(lambda: self.active.__setitem__(key, alert))
        self.cleared_total += 1
        _LOGGER.info("Alert cleared: %s %s on %s", alert.kind, alert.rule, alert.device)
        return True

    def _emit(self, conn: Connection, alert: ActiveAlert, state: str, value: float | None, ts: int,
              text: str) -> None:
        msg = {
            "id": f"{alert.episode}:{state}",
            "episode": alert.episode,
            "device": alert.device,
            "rule": alert.rule,
            "kind": alert.kind,
            "state": state,
            "severity": alert.severity,
            "value": value,
            "ts": iso_ms(ts),
        }
        if text:
            msg["text"] = text
        conn.execute(
            "INSERT INTO alert_log (episode, state, kind, rule, device, severity, value, ts_ms) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (alert.episode, state, alert.kind, alert.rule, alert.device, alert.severity, value, ts))
        enqueue(conn, Lane.ALERTS, self.topic, msg["id"], "alert", msg)
        self.last = {"state": state, "rule": alert.rule, "device": alert.device, "ts": msg["ts"]}
