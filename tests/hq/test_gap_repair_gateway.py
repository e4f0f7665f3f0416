"""Gap repair end to end with a real `storegw run`: HQ's consumer is SIGKILLed mid-batch and HQ's
broker restarts without persistence, so every message the store had sent (and deleted from its
outbox on PUBACK) is gone from HQ's side; the store's manifest (`P/manifest`, every second here)
lets the consumer ask for them (`P/cmd/resend`), the store re-sends them from `outbox_sent`, and
PostgreSQL ends with every id at its highest rev."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest
from realparts import equipment, wait_for

from gateway.hq.databases import open_sink
from gateway.hq.watch import HQCollector

pytestmark = pytest.mark.slow


def _consume(db: str, port: int, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "gateway", "hq", "consume", "--db", db, "--broker",
                             f"127.0.0.1:{port}", "--client-id", "hq-gw-1", "--repair-grace", "1", *extra],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_store_resends_what_hq_lost(mosquitto_factory, write_config, gateway_process, pg_db: str) -> None:
    local = mosquitto_factory("local")
    hq = mosquitto_factory("hq")
    holder = _consume(pg_db, hq.port, "--flush", "60", "--batch", "100000")  # never commits
    collector = HQCollector("127.0.0.1", hq.port, client_id="hq-observer").start()
    cfg = write_config(local_port=local.port, hq_port=hq.port, window="1s", grace="500ms",
                       uplink='manifest_every = "1s"')
    gw = gateway_process(cfg).start()
    fresh = None
    sink = open_sink(pg_db)
    try:
        dev = equipment(local.port, "fridge-sim")
        t0 = int(time.time() * 1000)
        for i in range(40):
            dev.publish("devices/fridge-1/telemetry", json.dumps({"ts": t0 + i * 100, "temp_c": 4.0 + i % 3}),
                        qos=1).wait_for_publish(5)
        dev.loop_stop()
        wait_for(lambda: collector.summary_count("temp_c") == 40, 30, "every reading summarised at HQ's broker")
        wait_for(lambda: any(t.endswith("/manifest") and d["ids"] for t, d in collector.raw), 20,
                 "a manifest listing them")
        wait_for(lambda: all(v["depth"] == 0 for v in gw.health()["outbox"].values()), 20, "the outbox empty")
        assert sink.conn.execute("SELECT count(*) FROM hq_messages").fetchone()[0] == 0  # all held, uncommitted
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
        hq.stop()
        hq.start()  # without persistence: what was in flight to the dead consumer is gone
        fresh = _consume(pg_db, hq.port)
        expected = {k: v["rev"] for k, v in collector.summaries.items()}

        def complete() -> bool:
            have = dict(sink.conn.execute("SELECT id, rev FROM hq_messages WHERE kind = 'telemetry/summary'")
                        .fetchall())
            return all(have.get(k, -1) >= v for k, v in expected.items())

        wait_for(complete, 60, "every summary at its highest rev in PostgreSQL", interval=0.5)
        have = sink.conn.execute("SELECT sum((payload->>'count')::int) FROM hq_messages "
                                 "WHERE kind = 'telemetry/summary' AND payload->>'metric' = 'temp_c'").fetchone()[0]
        assert have == 40  # each reading counted once: highest rev per id
        assert any(t.endswith("/cmd/resend") for t, _ in collector.raw)
    finally:
        for proc in (holder, fresh):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(10)
        collector.stop()
        sink.close()
