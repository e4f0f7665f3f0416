"""storegw hq consume against a real Mosquitto and a real PostgreSQL (and the embedded SQLite):
duplicates, older revisions, invalid payloads, and a consumer killed mid-batch on a broker that loses
what was in flight, repaired from the stores' manifests."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from fleetsim import SimLoop, SimStore, iso_ms
from realparts import Mosquitto, wait_for

from gateway.hq.consume import Consumer
from gateway.hq.databases import open_sink
from gateway.hq.sink import Sink
from gateway.spine.mqtt import new_client


@pytest.fixture(params=["postgresql", "sqlite"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'hq.db'}"
    return request.getfixturevalue("pg_db")


def rows(sink: Sink, sql: str) -> list[tuple]:
    if sink.backend == "sqlite":
        return sink.conn.execute(sql).fetchall()
    return sink.conn.execute(sql).fetchall()


def test_duplicates_older_revs_and_invalid_payloads(tmp_path: Path, db_url: str) -> None:
    broker = Mosquitto(tmp_path / "mosq").start()
    sink = open_sink(db_url)
    consumer = Consumer(sink, "127.0.0.1", broker.port, client_id="hq-test-1", flush_s=0.05, repair_every=60)
    stop = threading.Event()
    worker = threading.Thread(target=consumer.run, args=(stop,), daemon=True)
    pub = new_client("store-sh-001", clean=True)
    try:
        consumer.start()
        worker.start()
        pub.connect("127.0.0.1", broker.port)
        pub.loop_start()
        store = SimStore("sh-001", "127.0.0.1", broker.port)
        item = store.summary_item(1795430040000, 2, 60, window_s=60)
        older = dict(item, rev=1, count=30)
        topic = "storegw/v1/sh-001/telemetry/summary"
        for doc in ([item], [item], [older]):  # the same message twice, then an older revision
            pub.publish(topic, json.dumps(doc), qos=1).wait_for_publish(5)
        bad = dict(item, id="sh-001:fridge-1:temp_c:60:1795430100000")
        del bad["count"]
        pub.publish(topic, json.dumps([bad]), qos=1).wait_for_publish(5)
        pub.publish(topic, b"{not json", qos=1).wait_for_publish(5)
        wait_for(lambda: consumer.stats.messages >= 5, 20, "5 messages written")

        got = rows(sink, "SELECT id, rev, revisions FROM hq_messages")
        assert got == [(item["id"], 2, 1)]
        summary = rows(sink, "SELECT id, rev, count FROM hq_telemetry_summary")
        assert summary == [(item["id"], 2, 60)]
        dead = rows(sink, "SELECT topic, reason FROM hq_dead_letters ORDER BY seq")
        assert [t for t, _ in dead] == [topic, topic]
        assert "'count' is a required property" in dead[0][1]
        assert dead[1][1].startswith("not JSON")
        assert consumer.stats.absorbed == 2 and consumer.stats.dead == 2
    finally:
        stop.set()
        worker.join(5)
        pub.loop_stop()
        consumer.stop()
        sink.close()
        broker.stop()


def _consume(db: str, port: int, client_id: str, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "gateway", "hq", "consume", "--db", db, "--broker",
                             f"127.0.0.1:{port}", "--client-id", client_id, "--repair-grace", "1", *extra],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


@pytest.mark.slow
def test_consumer_killed_mid_batch_loses_nothing_after_gap_repair(tmp_path: Path, pg_db: str) -> None:
    # A broker without persistence: restarting it loses every message in flight to the killed consumer.
    broker = Mosquitto(tmp_path / "mosq").start()
    stores = [SimStore(f"st-{i}", "127.0.0.1", broker.port, rate=20, manifest_s=1.0, base=0.2, cap=1.0, seed=i)
              for i in range(3)]
    loop = SimLoop(stores)
    # A batch this consumer never commits: it holds everything it reads for 60 s.
    holder = _consume(pg_db, broker.port, "hq-1", "--flush", "60", "--batch", "100000")
    fresh = None
    try:
        sink = open_sink(pg_db)
        loop.start()
        wait_for(lambda: all(s.n >= 40 for s in stores), 30, "stores publishing")
        loop.producing.clear()
        wait_for(lambda: all(s.idle for s in stores), 30, "every message acknowledged by the broker")
        assert rows(sink, "SELECT count(*) FROM hq_messages") == [(0,)]  # all of it sits in the held batch
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
        broker.stop()
        broker.start()  # in-flight and queued messages of the killed member are gone with it
        fresh = _consume(pg_db, broker.port, "hq-1")
        expected = {k: v for s in stores for k, v in s.expected.items()}

        def complete() -> bool:
            have = dict(rows(sink, "SELECT id, rev FROM hq_messages"))
            return all(have.get(k, -1) >= v for k, v in expected.items())

        wait_for(complete, 60, "every id at its highest rev after gap repair", interval=0.5)
        assert sum(s.resend_requests for s in stores) > 0
        stats = rows(sink, "SELECT stats FROM hq_consumers")
        assert stats and stats[0][0]["resend_ids"] > 0
    finally:
        loop.stop()
        for proc in (holder, fresh):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(10)
        broker.stop()


def test_manifest_gap_is_asked_for(tmp_path: Path) -> None:
    sink = open_sink(f"sqlite:///{tmp_path / 'hq.db'}", grace=0)
    from gateway.hq.contract import Contract
    from gateway.hq.sink import Incoming

    contract = Contract()
    now = iso_ms(1795430040000)

    def manifest(seq: int, ids: dict[str, int]) -> Incoming:
        doc = {"id": f"sh-001:manifest:{seq}", "ts": now, "store": "sh-001", "seq": seq, "window_start": now,
               "window_s": 3600, "ids": ids}
        topic = "storegw/v1/sh-001/manifest"
        return Incoming(topic, json.dumps(doc).encode(), 0, "sh-001", contract.parse(topic, json.dumps(doc).encode()))

    sink.write([manifest(3, {"a": 1})])
    asked = sink.repair()
    assert len(asked) == 1 and asked[0].ids == ["a"] and sorted(asked[0].manifests) == [1, 2]
    sink.close()
