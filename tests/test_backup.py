"""`storegw backup` and `storegw restore` with real parts: a running `storegw run` taking readings
from a real Mosquitto while the backup is made, real SQLCipher files, the CLI as a technician runs it."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time

import pytest
from realparts import ROOT, db_key, equipment, wait_for

pytestmark = pytest.mark.slow


def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    import os

    return subprocess.run([sys.executable, "-m", "gateway", *args], capture_output=True, text=True, timeout=120,
                          cwd=ROOT, stdin=subprocess.DEVNULL, env={**os.environ, **(env or {})})


def _rows(path, key_hex: str) -> int:
    import sqlcipher3

    conn = sqlcipher3.connect(str(path))
    conn.execute(f"PRAGMA key = \"x'{key_hex}'\"")
    try:
        return conn.execute("SELECT count(*) FROM readings").fetchone()[0]
    finally:
        conn.close()


def test_backup_while_running_then_restore(mosquitto_factory, write_config, gateway_process, tmp_path):
    local, hq = mosquitto_factory("local"), mosquitto_factory("hq")
    cfg = write_config(local_port=local.port, hq_port=hq.port)
    gw = gateway_process(cfg).start()
    wait_for(lambda: gw.health()["local_mqtt"]["connected"], timeout=20, what="subscribed")
    client = equipment(local.port, "backup-feeder")
    start = int(time.time() * 1000) - 60_000
    for i in range(300):
        client.publish("devices/fridge-1/telemetry", json.dumps({"ts": start + i, "temp_c": 4.0}), qos=1)
    wait_for(lambda: gw.health()["ingest"]["committed"] >= 300, timeout=30, what="300 readings")
    # a backup while the gateway keeps writing
    for i in range(300, 600):
        client.publish("devices/fridge-1/telemetry", json.dumps({"ts": start + i, "temp_c": 4.0}), qos=1)
    backups = tmp_path / "usb"
    res = _cli("backup", "--config", str(cfg), "--to", str(backups), "--keep", "2")
    assert res.returncode == 0, res.stderr
    first = backups / res.stdout.split()[0].rsplit("/", 1)[-1]
    assert first.is_file() and "checked" in res.stdout
    key_hex = db_key(tmp_path / "data").raw.hex()
    assert 300 <= _rows(first, key_hex) <= 600  # a consistent snapshot, taken mid-stream
    with pytest.raises(sqlite3.DatabaseError):  # encrypted like the database
        sqlite3.connect(first).execute("SELECT count(*) FROM sqlite_master").fetchone()
    assert b"fridge-1" not in first.read_bytes()
    for _ in range(2):
        assert _cli("backup", "--config", str(cfg), "--to", str(backups), "--keep", "2").returncode == 0
    assert len(list(backups.glob("storegw-*.db"))) == 2 and not first.exists()  # rotated
    newest = sorted(backups.glob("storegw-*.db"))[-1]

    # restore refuses while storegw runs, and without --yes when nobody can be asked
    res = _cli("restore", "--config", str(cfg), str(newest), "--yes")
    assert res.returncode == 1 and "stop it first" in res.stderr
    wait_for(lambda: gw.health()["ingest"]["committed"] >= 600, timeout=30, what="600 readings")
    client.loop_stop()
    gw.stop()
    res = _cli("restore", "--config", str(cfg), str(newest))
    assert res.returncode == 1 and "--yes" in res.stderr
    res = _cli("restore", "--config", str(cfg), str(newest), "--yes")
    assert res.returncode == 0, res.stderr
    aside = list((tmp_path / "data").glob("storegw.db.before-restore-*"))
    assert [p.name for p in aside if p.name.endswith("Z")], res.stdout  # moved aside, not deleted
    gw.start()
    assert gw.health()["db"]["ok"]


def test_restore_refuses_a_backup_made_with_another_key(tmp_path):
    from gateway.store import open_store
    from gateway.store.backup import make_backup
    from gateway.store.db import resolve_key

    other = open_store(tmp_path / "other")
    other.close()
    backup = make_backup(tmp_path / "other", resolve_key(tmp_path / "other", create=False), tmp_path / "b")
    mine = open_store(tmp_path / "data")
    mine.close()
    before = (tmp_path / "data" / "storegw.db").read_bytes()
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[store]\nid = "sh-001"\ndata_dir = "{(tmp_path / "data").as_posix()}"\n'
                   '[web]\nlisten = "127.0.0.1:9"\n')
    res = _cli("restore", "--config", str(cfg), str(backup), "--yes")
    assert res.returncode == 1 and "another key" in res.stderr
    assert (tmp_path / "data" / "storegw.db").read_bytes() == before
    assert not list((tmp_path / "data").glob("*before-restore*"))


def test_the_daily_backup_job_raises_and_clears_backup_failed(tmp_path):
    """[backup] at: the job writes a checked backup; when it cannot, the gateway alert backup-failed
    is raised (once) and goes to HQ through the outbox; the next good backup clears it."""
    from realparts import config_text, free_port

    from gateway import config as config_mod
    from gateway import jobs
    from gateway.app import build

    blocked = tmp_path / "not-a-dir"
    blocked.write_text("a file where the backup directory should be")
    cfg_path = tmp_path / "c.toml"
    cfg_path.write_text(config_text(tmp_path / "data", local_port=free_port(), hq_port=free_port(),
                                    web_port=free_port()) + f'\n[backup]\nat = "03:30"\ndir = "{blocked}"\nkeep = 2\n')
    gw = build(config_mod.load(cfg_path))
    gw.start(web=False, devices=False)
    try:
        assert gw.scheduler.get_job("backup") is not None

        def states() -> list[str]:  # what goes to HQ (committed outbox rows)
            rows = gw.store.read().execute("SELECT payload FROM outbox WHERE topic LIKE '%/alerts' ORDER BY seq")
            return [doc["state"] for doc in (json.loads(r[0]) for r in rows) if doc["rule"] == "backup-failed"]

        jobs.scheduled_backup(gw)
        wait_for(lambda: states() == ["raised"], timeout=10, what="backup-failed raised")
        jobs.scheduled_backup(gw)  # still failing: no second alert
        gw.store.writer.call(lambda c: None)  # anything it queued is committed now
        assert states() == ["raised"]
        blocked.unlink()
        jobs.scheduled_backup(gw)
        wait_for(lambda: states() == ["raised", "cleared"], timeout=10, what="backup-failed cleared")
        assert len(list(blocked.glob("storegw-*.db"))) == 1
    finally:
        gw.stop()
