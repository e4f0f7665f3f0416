"""The fleet view's facade over HQ's database (``web/fleet`` reaches HQ only through this).

Read-only: the stores' state from their retained status and LWT, active alerts by severity, the
latest summary and daily report of each store, each store's backlog (how late its newest message
arrived, and what gap repair still misses), and the consumers' counters as Prometheus text.
"""

from __future__ import annotations

import json
from typing import Any

from gateway.hq.consume import LATENCY_BUCKETS_MS
from gateway.hq.sink import Sink

SEVERITIES = ("critical", "major", "minor", "warning", "info")


class FleetView:
    """Queries for the fleet page and ``/metrics``."""

    def __init__(self, sink: Sink) -> None:
        self.sink = sink

    def stores(self) -> list[dict[str, Any]]:
        """Every store HQ has heard of: state, since when, last seen, lag, messages, still missing."""
        return self.sink.query("stores")

    def alerts_by_severity(self) -> list[tuple[str, list[dict[str, Any]]]]:
        """Raised alerts without their ``cleared`` message, grouped by severity (most severe first)."""
        groups: dict[str, list[dict[str, Any]]] = {}
        for a in self.sink.query("alerts"):
            groups.setdefault(str(a.get("severity") or "info"), []).append(a)
        order = {s: i for i, s in enumerate(SEVERITIES)}
        return sorted(groups.items(), key=lambda kv: order.get(kv[0], len(order)))

    def latest(self) -> dict[str, dict[str, dict[str, Any]]]:
        """Per store and kind (``telemetry/summary``, ``orders/summary``, ``reports/daily`` ...): the newest."""
        out: dict[str, dict[str, dict[str, Any]]] = {}
        for row in self.sink.query("latest"):
            payload = row["payload"] if not isinstance(row["payload"], str) else json.loads(row["payload"])
            out.setdefault(row["store"], {})[row["kind"]] = {"ts": row["ts"], "payload": payload}
        return out

    def counts(self) -> dict[str, int]:
        """Messages stored, dead letters, open manifests and the ids they still miss."""
        rows = self.sink.query("counts")
        return {k: int(v or 0) for k, v in rows[0].items()} if rows else {}

    def dead_letters(self) -> list[dict[str, Any]]:
        """The 50 newest dead letters (topic and reason; payloads stay in the table)."""
        return self.sink.query("dead_letters")

    def metrics(self) -> str:
        """Prometheus text exposition of the consumers' counters and the fleet's state."""
        lines: list[str] = []

        def metric(name: str, kind: str, help_: str, samples: list[tuple[str, float]]) -> None:
            lines.append(f"# HELP {name} {help_}")
            lines.append(f"# TYPE {name} {kind}")
            lines.extend(f"{name}{labels} {value:g}" for labels, value in samples)

        consumers = self.sink.query("consumers")

        def per(key: str) -> list[tuple[str, float]]:
            return [(f'{{consumer="{c["consumer"]}"}}', float(_stats(c).get(key, 0))) for c in consumers]

        metric("storegw_hq_messages_total", "counter", "Messages written (committed, then acknowledged).",
               per("messages"))
        metric("storegw_hq_messages_per_second", "gauge", "Messages a second over the last interval.",
               per("messages_per_s"))
        metric("storegw_hq_lag_ms", "gauge", "Read time minus the newest message's ts, last batch.", per("lag_ms"))
        metric("storegw_hq_rows_absorbed_total", "counter", "Duplicates and older revisions the upsert left alone.",
               per("absorbed"))
        metric("storegw_hq_resend_requested_total", "counter", "Message ids asked of stores again (gap repair).",
               per("resend_ids"))
        lines.append("# HELP storegw_hq_upsert_seconds Time to write one batch (one transaction).")
        lines.append("# TYPE storegw_hq_upsert_seconds histogram")
        for c in consumers:
            st = _stats(c)
            counts = st.get("upsert_ms_counts") or [0] * (len(LATENCY_BUCKETS_MS) + 1)
            seen = 0
            for bound, n in zip((*LATENCY_BUCKETS_MS, None), counts, strict=False):
                seen += n
                le = "+Inf" if bound is None else f"{bound / 1000:g}"
                lines.append(f'storegw_hq_upsert_seconds_bucket{{consumer="{c["consumer"]}",le="{le}"}} {seen}')
            lines.append(f'storegw_hq_upsert_seconds_sum{{consumer="{c["consumer"]}"}} '
                         f'{float(st.get("upsert_ms_sum", 0)) / 1000:g}')
            lines.append(f'storegw_hq_upsert_seconds_count{{consumer="{c["consumer"]}"}} {seen}')
        counts = self.counts()
        metric("storegw_hq_dead_letters_total", "counter", "Messages refused (hq_dead_letters).",
               [("", counts.get("dead_letters", 0))])
        metric("storegw_hq_missing_messages", "gauge", "Ids the stores' manifests list that HQ does not hold yet.",
               [("", counts.get("missing", 0))])
        states: dict[str, int] = {}
        for s in self.stores():
            states[s.get("state") or "unknown"] = states.get(s.get("state") or "unknown", 0) + 1
        metric("storegw_hq_stores", "gauge", "Stores by state (retained status and LWT).",
               [(f'{{state="{k}"}}', v) for k, v in sorted(states.items())])
        return "\n".join(lines) + "\n"


def _stats(row: dict[str, Any]) -> dict[str, Any]:
    st = row.get("stats")
    return json.loads(st) if isinstance(st, str) else (st or {})
