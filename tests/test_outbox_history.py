"""Gap repair on the store side, on a real SQLCipher store: what HQ's broker acknowledged is kept
(outbox_sent), listed by item id and highest rev for the manifest, put back in the outbox on HQ's
request (once, the newest rev), and forgotten after uplink.resend_keep."""

from __future__ import annotations

import json

from fleetsim import SimStore

from gateway.store.outbox import Lane, acknowledged, enqueue, purge_sent, resend, sent_items

SIM = SimStore("sh-001", "127.0.0.1", 1)
ALERT = {"id": "a1", "episode": "a", "device": "fridge-1", "rule": "fridge-warm", "kind": "threshold",
         "state": "raised", "severity": "major", "value": 9.4, "ts": "2026-11-23T10:01:40.000Z"}


def _summary(item_id: str, rev: int) -> list[dict]:
    return [dict(SIM.summary_item(1795430040000, rev, 1), id=item_id)]


def test_acknowledged_messages_are_listed_resent_and_purged(store):
    topic = "storegw/v1/sh-001/telemetry/summary"

    def produce(conn):
        a = enqueue(conn, Lane.SUMMARIES, topic, "m1", "summary", _summary("w1", 1) + _summary("w2", 1))
        b = enqueue(conn, Lane.SUMMARIES, topic, "m2", "summary", _summary("w1", 2))  # a late reading: rev 2
        c = enqueue(conn, Lane.ALERTS, "storegw/v1/sh-001/alerts", "a1", "alert", ALERT)
        return [a, b, c]

    seqs = store.writer.call(produce)
    store.writer.call(lambda conn: acknowledged(conn, seqs[:2], keep=True, now=1_000))
    store.writer.call(lambda conn: acknowledged(conn, seqs[2:], keep=True, now=2_000))
    conn = store.read()
    assert conn.execute("SELECT count(*) FROM outbox").fetchone()[0] == 0
    assert sent_items(conn, 0, 1_000) == {"w1": 2, "w2": 1}
    assert sent_items(conn, 1_000, 2_000) == {"a1": 0}

    # HQ lost w1 (twice asked) and the alert: each message comes back once, w1 from its rev-2 message
    assert store.writer.call(lambda c: resend(c, ["w1", "w1", "a1", "unknown"])) == 2
    assert store.writer.call(lambda c: resend(c, ["w1"])) == 0  # already waiting in the outbox
    rows = conn.execute("SELECT msg_id, payload FROM outbox ORDER BY seq").fetchall()
    assert [r[0] for r in rows] == ["m2", "a1"]
    assert json.loads(rows[0][1])[0]["rev"] == 2

    assert store.writer.call(lambda c: purge_sent(c, 1_500)) == 2
    assert sent_items(conn, 0, 2_000) == {"a1": 0}
    assert conn.execute("SELECT count(*) FROM outbox_sent_items").fetchone()[0] == 1


def test_without_history_acknowledged_only_deletes(store):
    seq = store.writer.call(lambda c: enqueue(c, Lane.ALERTS, "storegw/v1/sh-001/alerts", "a1", "alert", ALERT))
    store.writer.call(lambda c: acknowledged(c, [seq], keep=False))
    assert store.read().execute("SELECT count(*) FROM outbox_sent").fetchone()[0] == 0
