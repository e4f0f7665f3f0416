"""The encrypted store: real SQLCipher files, group commit, wrong key, corrupt file quarantine."""

from __future__ import annotations

import os
import threading

import pytest

from gateway.core.errors import StoreError, WrongKeyError
from gateway.store import db, open_store


def test_database_is_encrypted_and_holds_no_plaintext(tmp_path, store):
    store.writer.call(lambda c: c.execute(
        "INSERT INTO devices (name, first_seen_ms, last_seen_ms) VALUES ('fridge-secret-42', 1, 1)"))
    store.writer.call(lambda c: c.execute(
        "INSERT INTO device_events (device, kind, ts_ms, data) VALUES ('x', 'scan', 1, 'payload-text-xyz')"))
    store.close()
    for path in (tmp_path / "data").iterdir():
        blob = path.read_bytes()
        assert b"fridge-secret-42" not in blob, path
        assert b"payload-text-xyz" not in blob, path
        assert b"SQLite format 3" not in blob, path
    assert oct((tmp_path / "data" / "db.key").stat().st_mode & 0o777) == "0o600"
    assert oct((tmp_path / "data").stat().st_mode & 0o777) == "0o700"


def test_unreadable_without_the_key(tmp_path, store):
    store.close()
    import sqlite3

    conn = sqlite3.connect(tmp_path / "data" / db.DB_NAME)
    with pytest.raises(sqlite3.DatabaseError):
        conn.execute("SELECT * FROM sqlite_master").fetchall()
    conn.close()


def test_wrong_key_is_an_error_that_leaves_the_file_alone(tmp_path, store, monkeypatch):
    store.close()
    path = tmp_path / "data" / db.DB_NAME
    before = path.read_bytes()
    monkeypatch.setenv("STOREGW_DB_KEY", "ab" * 32)
    with pytest.raises(WrongKeyError) as err:
        open_store(tmp_path / "data")
    assert "left untouched" in str(err.value)
    assert "$STOREGW_DB_KEY" in str(err.value)
    assert path.read_bytes() == before
    assert not [p for p in path.parent.iterdir() if "corrupt" in p.name]


def test_corrupt_database_is_moved_aside_and_replaced(tmp_path, store):
    store.close()
    path = tmp_path / "data" / db.DB_NAME
    size = path.stat().st_size
    with open(path, "r+b") as fh:
        fh.seek(0)
        fh.write(os.urandom(size))
    s2 = open_store(tmp_path / "data")
    try:
        assert s2.quarantined is not None
        assert s2.quarantined.exists()
        assert s2.quarantined.name.startswith("storegw.db.corrupt-")
        s2.start()
        assert s2.writer.call(lambda c: c.execute("SELECT count(*) FROM outbox").fetchone()[0]) == 0
    finally:
        s2.close()


def test_credentials_directory_key_wins(tmp_path, monkeypatch):
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "db-key").write_text("cd" * 32)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    key = db.resolve_key(tmp_path / "data")
    assert key.raw == bytes.fromhex("cd" * 32)
    assert "credential" in repr(key)
    assert not (tmp_path / "data" / "db.key").exists()


def test_group_commit_batches_and_acknowledges_after_commit(store):
    acked: list[int] = []
    lock = threading.Lock()

    def write(i):
        def fn(conn):
            conn.execute("INSERT INTO meta (key, value) VALUES (?, ?)", (f"k{i}", "v"))
            return i
        return fn

    def on_commit(value):
        # The row must already be visible to another connection when we are told.
        with lock:
            acked.append(value)

    futures = [store.writer.submit(write(i), on_commit=on_commit) for i in range(500)]
    for f in futures:
        f.result(10)
    assert sorted(acked) == list(range(500))
    assert store.read().execute("SELECT count(*) FROM meta").fetchone()[0] == 500
    assert store.writer.stats.transactions < 500  # writes were grouped


def test_one_failing_write_does_not_undo_the_others(store):
    ok = store.writer.submit(lambda c: c.execute("INSERT INTO meta VALUES ('a', '1')"))
    bad = store.writer.submit(lambda c: c.execute("INSERT INTO nope VALUES (1)"))
    ok2 = store.writer.submit(lambda c: c.execute("INSERT INTO meta VALUES ('b', '2')"))
    ok.result(5)
    ok2.result(5)
    with pytest.raises(Exception, match="nope"):
        bad.result(5)
    assert store.read().execute("SELECT count(*) FROM meta").fetchone()[0] == 2


def test_submit_after_stop_is_an_error(tmp_path):
    s = open_store(tmp_path / "d2")
    with pytest.raises(StoreError, match="not running"):
        s.writer.submit(lambda c: None)
    s.close()


def test_migrations_are_recorded_once(tmp_path, store):
    names = [r[0] for r in store.read().execute("SELECT name FROM _migrations")]
    assert "0001_core" in names
    store.close()
    s2 = open_store(tmp_path / "data")
    names2 = [r[0] for r in s2.read().execute("SELECT name FROM _migrations")]
    assert names2 == names
    s2.close()


def test_card_ref_secret_is_the_gateways_own_and_survives_a_restart(tmp_path, monkeypatch):
    """Without the chain's STOREGW_CARD_SECRET, card refs use a secret kept in the encrypted database:
    the same card gives the same ref after a restart, and the secret is nowhere in plaintext."""
    from realparts import config_text, free_port

    from devices import cardref
    from gateway import config as config_mod
    from gateway.app import build

    monkeypatch.delenv(cardref.ENV_VAR, raising=False)
    cfg_path = tmp_path / "c.toml"
    cfg_path.write_text(config_text(tmp_path / "data", local_port=free_port(), hq_port=free_port(),
                                    web_port=free_port()))
    refs = []
    try:
        for _ in range(2):
            gw = build(config_mod.load(cfg_path))
            gw.start(web=False)
            try:
                refs.append((cardref.gateway_secret(), cardref.card_ref(cardref.gateway_secret(), "em4100:0102030405")))
            finally:
                gw.stop()
    finally:
        cardref.use_gateway_secret(None)
    assert refs[0] == refs[1]
    secret = refs[0][0]
    assert len(secret) == 32
    for path in (tmp_path / "data").rglob("*"):
        if path.is_file():
            blob = path.read_bytes()
            assert secret not in blob and secret.hex().encode() not in blob, path
    monkeypatch.setenv(cardref.ENV_VAR, "chain-wide")
    assert cardref.gateway_secret() == b"chain-wide"  # the chain's secret wins


def test_a_rolled_back_write_leaves_memory_as_the_database(tmp_path):
    """In-memory state changed by a write (an alert raised, a device id cached) is undone when the
    write's savepoint rolls back, so the next breach raises the alert for real."""
    from gateway import config as config_mod
    from gateway.spine.alerts import AlertManager
    from gateway.spine.telemetry import Telemetry

    store = open_store(tmp_path / "data")
    store.start()
    try:
        cfg = config_mod.parse({"store": {"id": "sh-001", "data_dir": str(tmp_path)}})
        alerts = AlertManager("sh-001", cfg.prefix)
        tel = Telemetry(cfg, alerts)
        store.writer.call(tel.load)

        def raise_then_fail(conn):
            tel._device_id(conn, "fryer-1", 0)
            alerts.raise_(conn, "k", kind="gateway", rule="r", device="fryer-1", severity="minor")
            raise RuntimeError("a later statement of the same write fails")

        with pytest.raises(RuntimeError):
            store.writer.call(raise_then_fail)
        assert not alerts.is_active("k") and "fryer-1" not in tel._device_ids
        assert store.read().execute("SELECT count(*) FROM alerts_active").fetchone()[0] == 0
        assert store.writer.call(lambda c: alerts.raise_(c, "k", kind="gateway", rule="r", device="fryer-1",
                                                         severity="minor"))  # raised for real now
        assert store.read().execute("SELECT count(*) FROM outbox WHERE kind = 'alert'").fetchone()[0] == 1
    finally:
        store.close()
