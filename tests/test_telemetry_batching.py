"""Batched window updates and batched ingest change nothing but speed.

``Telemetry.write_batch`` folds a batch's values per window instead of running one upsert per
reading and metric; the windows (and so the summaries) must be exactly what the per-value upsert
produces, including ties (min/max, ``last`` by timestamp), duplicates, -0.0 and bools.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import sqlcipher3
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway import config as config_mod
from gateway.core.models import now_ms
from gateway.spine.alerts import AlertManager
from gateway.spine.payload import parse
from gateway.spine.telemetry import Telemetry
from gateway.store import open_store

# The statement write_batch ran once per reading and metric before it folded per window.
REFERENCE_UPSERT = (
    "INSERT INTO windows (device, metric, wstart_ms, window_s, is_bool, count, true_count, min, max, sum, last, "
    "last_ts_ms) VALUES (?, ?, ?, ?, ?, 1, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT DO UPDATE SET count = count + 1, true_count = true_count + excluded.true_count, "
    "min = min(min, excluded.min), max = max(max, excluded.max), sum = sum + excluded.sum, "
    "last = CASE WHEN excluded.last_ts_ms >= last_ts_ms THEN excluded.last ELSE last END, "
    "last_ts_ms = max(last_ts_ms, excluded.last_ts_ms), dirty = 1")

values = st.one_of(st.sampled_from([0.0, -0.0, 1.0, 4.5, -3.25, 1e-9, 7.0]),
                   st.floats(-50, 50, allow_nan=False), st.integers(-5, 12))
reading = st.tuples(
    st.integers(0, 2),  # device
    st.integers(0, 150).map(lambda s: s * 1000),  # before now: three 60 s windows, repeated timestamps
    st.dictionaries(st.sampled_from(["t", "p"]), values, max_size=2) | st.just({}),
    st.booleans() | st.none(),  # door (bool metric) or absent
)
batches = st.lists(st.lists(reading, min_size=1, max_size=40), min_size=1, max_size=6)


def _payload(metrics: dict, door: bool | None, ts: int) -> bytes:
    body = dict(metrics, ts=ts)
    if door is not None:
        body["door"] = door
    if len(body) == 1:
        body["t"] = 1.0
    return json.dumps(body).encode()


@settings(max_examples=25, deadline=None)
@given(batches=batches, repeat=st.integers(0, 3))
def test_window_fold_equals_per_value_upsert(batches, repeat):
    now = now_ms()
    ref = sqlcipher3.connect(":memory:")
    ref.execute("CREATE TABLE windows (device TEXT, metric TEXT, wstart_ms INTEGER, window_s INTEGER, is_bool INTEGER, "
                "count INTEGER, true_count INTEGER, min REAL, max REAL, sum REAL, last REAL, last_ts_ms INTEGER, "
                "dirty INTEGER NOT NULL DEFAULT 1, PRIMARY KEY (device, metric, wstart_ms))")
    seen: set[tuple[str, int, str]] = set()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = config_mod.parse({"store": {"id": "sh-001", "data_dir": tmp}})
        store = open_store(Path(tmp))
        store.start()
        try:
            tel = Telemetry(cfg, AlertManager("sh-001", cfg.prefix))
            store.writer.call(tel.load)
            sent = []
            for batch in batches:
                readings = [parse(f"fridge-{d}", _payload(m, door, now - ago), now) for d, ago, m, door in batch]
                readings += sent[:repeat] + readings[:repeat]  # redeliveries and in-batch duplicates
                sent.extend(readings)
                store.writer.call(lambda c, rs=readings: tel.write_batch(c, rs))
                for r in readings:
                    if (r.device, r.ts_ms, r.digest) in seen:
                        continue
                    seen.add((r.device, r.ts_ms, r.digest))
                    wstart = r.ts_ms - r.ts_ms % 60_000
                    for metric, value in r.metrics.items():
                        is_bool = isinstance(value, bool)
                        v = float(value)
                        ref.execute(REFERENCE_UPSERT, (r.device, metric, wstart, 60, int(is_bool),
                                                       int(is_bool and value), v, v, v, v, r.ts_ms))
            got = store.read().execute(
                "SELECT d.name, m.name, w.wstart_ms, w.window_s, w.is_bool, w.count, w.true_count, w.min, w.max, "
                "w.sum, w.last, w.last_ts_ms, w.dirty FROM windows w JOIN devices d ON d.id = w.device_id "
                "JOIN metrics m ON m.id = w.metric_id ORDER BY 1, 2, 3").fetchall()
            assert tel.stats.committed == len(seen)
        finally:
            store.close()
    want = ref.execute("SELECT * FROM windows ORDER BY 1, 2, 3").fetchall()
    assert got == want
