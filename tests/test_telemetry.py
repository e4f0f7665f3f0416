"""Telemetry: payload validation, idempotent readings, window summaries with revs, raw forwarding,
outbox degradation; and bad payloads through a real broker never stall the stream."""

from __future__ import annotations

import contextlib
import json
import time

import pytest
from realparts import free_port, wait_for

from gateway import config as config_mod
from gateway.core.models import now_ms
from gateway.spine.alerts import AlertManager
from gateway.spine.payload import InvalidPayload, parse
from gateway.spine.telemetry import Telemetry
from gateway.store import open_store
from gateway.store.outbox import Lane, enforce_budget, enqueue, fetch

NOW = 1_795_000_000_000


@pytest.mark.parametrize(("device", "payload", "reason"), [
    ("fridge-1", b"not json", "not_json"),
    ("fridge-1", b"[1, 2]", "not_object"),
    ("fridge-1", b'{"temp_c": NaN}', "non_finite"),
    ("fridge-1", b'{"temp_c": Infinity}', "non_finite"),
    ("fridge-1", b'{"note": "hello"}', "no_metrics"),
    ("fridge-1", b'{"ts": "yesterday", "temp_c": 1}', "bad_ts"),
    ("fridge-1", b'{"ts": 12, "temp_c": 1}', "bad_ts"),
    ("bad id!", b'{"temp_c": 1}', "bad_device_id"),
    ("x" * 65, b'{"temp_c": 1}', "bad_device_id"),
    ("fridge-1", b'{"temp_c": 1, "pad": "' + b"x" * 70000 + b'"}', "oversize"),
    ("fridge-1", b"\xff\xfe", "not_json"),
    ("fridge-1", b"[" * 60000, "not_json"),  # deep nesting: RecursionError, not a crash
])
def test_bad_payloads_are_named(device, payload, reason):
    with pytest.raises(InvalidPayload) as err:
        parse(device, payload, NOW)
    assert err.value.reason == reason


def test_parse_good_payload():
    r = parse("fridge-1", b'{"ts": "2026-11-23T10:00:00Z", "temp_c": 4.5, "door_open": true, "unit": "C"}', NOW)
    assert r.metrics == {"temp_c": 4.5, "door_open": True}
    assert r.ts_ms == 1795428000000
    r2 = parse("fridge-1", b'{"temp_c": 4.5}', NOW)
    assert r2.ts_ms == NOW  # no ts: receive time


@pytest.fixture
def tel(tmp_path):
    cfg = config_mod.parse({"store": {"id": "sh-001", "data_dir": str(tmp_path)},
                            "telemetry": {"summary_window": "60s", "summary_grace": "5s",
                                          "forward_raw": ["fryer-*"]},
                            "uplink": {"batch": 50}})
    store = open_store(tmp_path / "data")
    store.start()
    alerts = AlertManager("sh-001", cfg.prefix)
    t = Telemetry(cfg, alerts)
    store.writer.call(t.load)
    yield t, store
    store.close()


def _readings(device, n, start, step_ms=1000, metric="temp_c"):
    return [parse(device, json.dumps({"ts": start + i * step_ms, metric: 4.0 + i}).encode(), NOW)
            for i in range(n)]


def _summaries(store):
    items = []
    for (payload,) in store.read().execute("SELECT payload FROM outbox WHERE kind = 'summary' ORDER BY seq"):
        items.extend(json.loads(payload))
    return items


def test_readings_are_idempotent(tel):
    t, store = tel
    start = now_ms() - 600_000
    batch = _readings("fridge-1", 10, start)
    assert store.writer.call(lambda c: t.write_batch(c, batch)) == 10
    assert store.writer.call(lambda c: t.write_batch(c, batch)) == 0  # broker redelivery
    assert t.stats.duplicates == 10
    assert store.read().execute("SELECT count(*) FROM readings").fetchone()[0] == 10


def test_receipt_stamped_readings_alike_stay_apart_and_a_redelivery_counts_once(tel):
    """Readings without ts (stamped on receipt): alike payloads in one batch are kept apart by their
    MQTT packet ids; a DUP redelivery of a stored one, under a later stamp, is recognised."""
    from gateway.spine.ingest import _receipt_stamped

    t, store = tel
    payload = b'{"temp_c": 4.0}'
    first = now_ms() - 5_000
    batch = [_receipt_stamped(parse("fridge-9", payload, first), payload, mid, False) for mid in (7, 8, 9)]
    assert store.writer.call(lambda c: t.write_batch(c, batch)) == 3  # same payload, same stamp, 3 readings
    later = now_ms()
    again = [_receipt_stamped(parse("fridge-9", payload, later), payload, mid, True) for mid in (8, 9, 10)]
    assert store.writer.call(lambda c: t.write_batch(c, again)) == 1  # 8 and 9 were stored; 10 was not
    assert t.stats.duplicates == 2
    assert store.read().execute("SELECT count(*) FROM readings").fetchone()[0] == 4
    fresh = [_receipt_stamped(parse("fridge-9", payload, later + 1), payload, 8, False)]
    assert store.writer.call(lambda c: t.write_batch(c, fresh)) == 1  # not a redelivery: a new reading


def test_a_reading_whose_ts_equals_its_receipt_time_is_stored_once_when_redelivered(tel):
    """A device's own ts can equal the receipt time to the millisecond. It used to be taken for a
    reading without ts (stamped on receipt, digest over payload + packet id); the broker's
    redelivery after a gateway crash, received later, got the plain digest: two rows, and HQ
    counted the reading twice (bench/crash.py)."""
    from gateway.spine.ingest import reading

    t, store = tel
    ts = now_ms() - 5_000
    payload = json.dumps({"ts": ts, "temp_c": 4.2}).encode()
    first = reading("fridge-6", payload, ts, 41, 1, False)  # received in the millisecond it was stamped
    assert store.writer.call(lambda c: t.write_batch(c, [first])) == 1
    again = reading("fridge-6", payload, ts + 1_100, 41, 1, True)  # redelivered after the crash
    assert store.writer.call(lambda c: t.write_batch(c, [again])) == 0
    assert store.read().execute("SELECT count(*) FROM readings").fetchone()[0] == 1
    stamped = reading("fridge-6", b'{"temp_c": 4.2}', ts, 41, 1, False)  # no ts: stamped on receipt
    assert stamped.stamped and stamped.digest != reading("fridge-6", b'{"temp_c": 4.2}', ts, 42, 1, False).digest


def test_window_summaries_and_late_data_revs(tel):
    t, store = tel
    start = (now_ms() // 60000 - 10) * 60000  # an aligned window 10 minutes ago
    store.writer.call(lambda c: t.write_batch(c, _readings("fridge-1", 30, start)))
    assert store.writer.call(t.flush_summaries) == 1
    (first,) = _summaries(store)
    assert first["rev"] == 1 and first["count"] == 30
    assert first["min"] == 4.0 and first["max"] == 33.0 and first["last"] == 33.0
    assert first["mean"] == pytest.approx(sum(4.0 + i for i in range(30)) / 30)
    assert first["window_s"] == 60
    assert store.writer.call(t.flush_summaries) == 0  # nothing changed
    # A late reading for the same window re-sends the same id with rev 2 and the full count.
    late = [parse("fridge-1", json.dumps({"ts": start + 15_500, "temp_c": 1.0}).encode(), NOW)]
    store.writer.call(lambda c: t.write_batch(c, late))
    store.writer.call(t.flush_summaries)
    second = _summaries(store)[-1]
    assert second["id"] == first["id"] and second["rev"] == 2 and second["count"] == 31
    assert second["min"] == 1.0 and second["last"] == 33.0  # last is by reading time, not arrival


def test_open_window_waits_for_grace(tel):
    t, store = tel
    store.writer.call(lambda c: t.write_batch(c, _readings("fridge-1", 1, now_ms())))
    assert store.writer.call(t.flush_summaries) == 0


def test_booleans_count_true(tel):
    t, store = tel
    start = (now_ms() // 60000 - 5) * 60000
    rs = [parse("fridge-1", json.dumps({"ts": start + i, "door_open": i % 4 == 0}).encode(), NOW) for i in range(8)]
    store.writer.call(lambda c: t.write_batch(c, rs))
    store.writer.call(t.flush_summaries)
    (item,) = _summaries(store)
    assert item["type"] == "bool" and item["count"] == 8 and item["true_count"] == 2 and item["mean"] == 0.25


def test_raw_forwarding_only_for_configured_devices(tel):
    t, store = tel
    start = now_ms() - 5000
    store.writer.call(lambda c: t.write_batch(c, _readings("fryer-1", 120, start, 10, "oil_temp_c")
                                              + _readings("fridge-1", 5, start)))
    rows = store.read().execute("SELECT payload FROM outbox WHERE kind = 'raw' ORDER BY seq").fetchall()
    items = [i for (p,) in rows for i in json.loads(p)]
    assert len(rows) == 3  # batches of uplink.batch = 50
    assert len(items) == 120 and {i["device"] for i in items} == {"fryer-1"}
    assert len({i["id"] for i in items}) == 120


def test_budget_drops_raw_first_then_coarsens_never_alerts(tel, monkeypatch):
    monkeypatch.setattr("gateway.store.outbox.on_enqueue", None)  # the synthetic alerts below have no schema
    t, store = tel
    start = (now_ms() // 3_600_000 - 3) * 3_600_000
    store.writer.call(lambda c: t.write_batch(c, _readings("fridge-1", 180, start, 60_000)))
    store.writer.call(t.flush_summaries)
    store.writer.call(lambda c: t.write_batch(c, _readings("fryer-1", 200, now_ms() - 5000, 10, "oil_temp_c")))
    for i in range(5):
        store.writer.call(lambda c, i=i: enqueue(c, Lane.ALERTS, "p/alerts", f"a{i}", "alert", {"id": f"a{i}"}))
    before = _summaries(store)
    total_before = sum(i["count"] for i in before)
    result = store.writer.call(lambda c: enforce_budget(c, 2_000, t.coarsen))
    assert result.dropped_raw > 0
    assert result.coarsened_summaries > 0
    conn = store.read()
    assert conn.execute("SELECT count(*) FROM outbox WHERE kind = 'raw'").fetchone()[0] == 0
    assert conn.execute("SELECT count(*) FROM outbox WHERE kind = 'alert'").fetchone()[0] == 5
    after = []
    for (payload,) in conn.execute("SELECT payload FROM outbox WHERE lane = ?", (int(Lane.SUMMARIES),)):
        after.extend(json.loads(payload))
    assert sum(i["count"] for i in after) == total_before  # coarsened, not lost
    assert any(i.get("window_s") == 3600 for i in after)


def test_fetch_orders_lanes(tel, monkeypatch):
    monkeypatch.setattr("gateway.store.outbox.on_enqueue", None)  # synthetic messages
    _, store = tel
    store.writer.call(lambda c: enqueue(c, Lane.BULK, "t", "b1", "raw", []))
    store.writer.call(lambda c: enqueue(c, Lane.SUMMARIES, "t", "s1", "summary", []))
    store.writer.call(lambda c: enqueue(c, Lane.ALERTS, "t", "a1", "alert", {}))
    assert [r.msg_id for r in fetch(store.read(), 10)] == ["a1", "s1", "b1"]


def _gateway_on(broker, hq_port, tmp_path):
    from gateway.app import build

    cfg_path = tmp_path / "c.toml"
    cfg_path.write_text(f"""
[store]
id = "sh-001"
data_dir = "{(tmp_path / 'data').as_posix()}"
[local_mqtt]
port = {broker.port}
[uplink]
port = {hq_port}
tls = false
[web]
listen = "127.0.0.1:{free_port()}"
""")
    return build(config_mod.load(cfg_path))


def test_bad_payloads_counted_in_health_and_stream_continues(broker, mosquitto_factory, tmp_path):
    from gateway.spine.mqtt import new_client

    hq = mosquitto_factory("hq")
    gw = _gateway_on(broker, hq.port, tmp_path)
    gw.start(web=False)
    try:
        wait_for(lambda: gw.health()["local_mqtt"]["connected"], timeout=20, what="subscribed")
        client = new_client("bad-sender", clean=True)
        client.connect("127.0.0.1", broker.port)
        client.loop_start()
        bad = [b"nope", b"[]", b'{"t": NaN}', b'{"x": "y"}', b"{" * 10]
        for i in range(50):
            client.publish("devices/fridge-1/telemetry", bad[i % len(bad)], qos=1)
            client.publish("devices/fridge-1/telemetry", json.dumps({"temp_c": i}), qos=1)
        client.publish("devices/fridge-1/status", b"garbage", qos=1).wait_for_publish(5)
        wait_for(lambda: gw.health()["ingest"]["committed"] >= 50, timeout=20, what="good readings")
        # The status message rides another topic: it may be counted just after the last reading.
        wait_for(lambda: gw.health()["ingest"]["invalid_total"] >= 51, timeout=20, what="invalid counted")
        h = gw.health()
        assert h["ingest"]["invalid_total"] == 51
        assert set(h["ingest"]["invalid"]) == {"not_json", "not_object", "non_finite", "no_metrics"}
        assert "fridge-1" not in json.dumps(h["ingest"])  # counters by reason; ids stay out
        client.loop_stop()
    finally:
        gw.stop()
    time.sleep(0.1)


def test_invalid_counters_stay_bounded_under_a_flood_of_made_up_ids():
    from gateway.spine.telemetry import IngestStats

    stats = IngestStats()
    for i in range(5000):
        stats.note_invalid(f"dev-{i}", "not_json")
    assert sum(stats.invalid.values()) == 5000
    assert len(stats.invalid) <= IngestStats.MAX_TRACKED + 1
    assert stats.invalid_summary() == {"not_json": 5000}


@contextlib.contextmanager
def _gateway_whose_writes_fail(broker, tmp_path, monkeypatch, failure):
    """A running in-process gateway whose telemetry write raises ``failure(readings)`` when that is
    not None, and a connected publisher; yields (gateway, publisher)."""
    from gateway.spine.mqtt import new_client

    gw = _gateway_on(broker, free_port(), tmp_path)
    real = gw.telemetry.write_batch

    def write_batch(conn, readings):
        err = failure(readings)
        if err is not None:
            raise err
        return real(conn, readings)

    monkeypatch.setattr(gw.telemetry, "write_batch", write_batch)
    gw.start(web=False)
    client = new_client(f"sender-{free_port()}", clean=True)
    try:
        wait_for(lambda: gw.health()["local_mqtt"]["connected"], timeout=20, what="subscribed")
        client.connect("127.0.0.1", broker.port)
        client.loop_start()
        yield gw, client
    finally:
        client.loop_stop()
        gw.stop()


def test_a_reading_that_breaks_the_write_is_isolated_and_the_stream_goes_on(broker, tmp_path, monkeypatch):
    """A batch whose transaction fails is written message by message: the good ones commit, the one
    that fails on its own is dropped and counted as write_failed, later readings flow."""
    def failure(readings):
        return RuntimeError("a bug triggered by one reading") if any("poison" in r.metrics for r in readings) \
            else None

    with _gateway_whose_writes_fail(broker, tmp_path, monkeypatch, failure) as (gw, client):
        infos = [client.publish("devices/fridge-1/telemetry", json.dumps({"temp_c": i}), qos=1) for i in range(40)]
        infos.append(client.publish("devices/fridge-1/telemetry", json.dumps({"poison": 1}), qos=1))
        infos += [client.publish("devices/fridge-1/telemetry", json.dumps({"temp_c": 100 + i}), qos=1)
                  for i in range(40)]
        for info in infos:
            info.wait_for_publish(5)
        wait_for(lambda: gw.health()["ingest"]["committed"] >= 80, timeout=20, what="the good readings")
        wait_for(lambda: gw.health()["ingest"]["invalid"].get("write_failed") == 1, timeout=10,
                 what="the poison counted")
        client.publish("devices/fridge-1/telemetry", json.dumps({"temp_c": 1000}), qos=1).wait_for_publish(5)
        wait_for(lambda: gw.health()["ingest"]["committed"] >= 81, timeout=10, what="the stream goes on")
        assert gw.health()["ingest"]["committed"] == 81
        # Alone in its batch it is still told from a database fault (a one-row probe write succeeds).
        client.publish("devices/fridge-1/telemetry", json.dumps({"poison": 2}), qos=1).wait_for_publish(5)
        wait_for(lambda: gw.health()["ingest"]["invalid"].get("write_failed") == 2, timeout=10,
                 what="a lone poison counted")
        assert gw.health()["ingest"]["committed"] == 81


def test_when_nothing_can_be_written_nothing_is_acknowledged(broker, tmp_path, monkeypatch):
    """The database refuses every write (think disk full): no PUBACK, the broker keeps the readings,
    and once writes work again they all arrive (the ingest reconnects to have them redelivered)."""
    broken = [True]

    def failure(readings):
        return OSError(28, "No space left on device") if broken[0] else None

    import gateway.spine.ingest

    real_probe = gateway.spine.ingest._probe_write

    def probe(conn):  # a database that cannot write fails the one-row probe write too
        if broken[0]:
            raise OSError(28, "No space left on device")
        return real_probe(conn)

    monkeypatch.setattr(gateway.spine.ingest, "_probe_write", probe)
    with _gateway_whose_writes_fail(broker, tmp_path, monkeypatch, failure) as (gw, client):
        for i in range(30):
            client.publish("devices/fridge-2/telemetry", json.dumps({"temp_c": i}), qos=1).wait_for_publish(5)
        time.sleep(1.5)
        h = gw.health()["ingest"]
        assert h["committed"] == 0 and "write_failed" not in h["invalid"]
        broken[0] = False
        wait_for(lambda: gw.health()["ingest"]["committed"] >= 30, timeout=40, what="redelivered after recovery")
        assert gw.health()["ingest"]["committed"] == 30
