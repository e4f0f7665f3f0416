"""Helpers for the privacy tests: a store on real SQLCipher files, planted rows at chosen times, and a
raw page decryptor that reads *everything* in the files with the key (free space, free pages, WAL
frames), not only what SQL can see."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner

DAY = 86_400_000
PAGE = 4096
RESERVE = 80  # SQLCipher 4: 16-byte IV + 64-byte HMAC-SHA512 at the end of each page


def write_config(tmp_path: Path, extra: str = "") -> Path:
    """A config with the uplink off (the store only)."""
    cfg = tmp_path / "storegw.toml"
    cfg.write_text(f'[store]\nid = "sh-001"\ndata_dir = "{(tmp_path / "data").as_posix()}"\n'
                   f'timezone = "Asia/Shanghai"\n\n[uplink]\nenabled = false\n{extra}')
    return cfg


def cli(*args: str) -> Any:
    """Run ``storegw ARGS`` in process; return the click result (exit code, output)."""
    from gateway.cli import main

    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def db_key(data: Path) -> Any:
    """The database key of the config beside the data dir (through the keyring, as the CLI gets it)."""
    from gateway.clikit import db_key as key_of
    from gateway.config import load

    if not (data.parent / "storegw.toml").exists():
        write_config(data.parent)
    return key_of(load(str(data.parent / "storegw.toml")), create=True)


def open_db(data: Path) -> Any:
    """A connection to the data dir's database (created and migrated if needed); the config is
    ``storegw.toml`` beside the data dir."""
    from gateway import domains
    from gateway.store import migrations
    from gateway.store.db import connect, open_database

    key = db_key(data)
    conn = connect(open_database(data, key).path, key)
    migrations.apply(conn, domains.SCHEMAS)
    return conn


def tx(conn: Any, sql: str, args: tuple = ()) -> Any:
    """One statement in its own transaction."""
    conn.execute("BEGIN IMMEDIATE")
    cur = conn.execute(sql, args)
    conn.execute("COMMIT")
    return cur


def plant_session(conn: Any, *, closed_ms: int | None, paid: bool = True, note: str = "no peanuts",
                  nickname: str = "Lili", reason: str = "", staff: str = "wang", reference: str = "") -> int:
    """A table session with one round, one line and a payment; returns the session id."""
    opened = (closed_ms or 0) - 3_600_000 if closed_ms else 1
    conn.execute("BEGIN IMMEDIATE")
    sid = conn.execute("INSERT INTO ord_sessions (table_id, opened_ms, closed_ms, opened_by, covers, paid_ms, rounds) "
                       "VALUES ('A1', ?, ?, ?, 2, ?, 1)", (opened, closed_ms, staff, closed_ms if paid else None)
                       ).lastrowid
    rid = conn.execute("INSERT INTO ord_rounds (session_id, table_id, round_no, idem_key, created_ms, total_cents, "
                       "diner) VALUES (?, 'A1', 1, ?, ?, 1800, ?)", (sid, f"idem-{sid}", opened, nickname)).lastrowid
    conn.execute("INSERT INTO ord_lines (round_id, session_id, table_id, item_id, name_zh, name_en, qty, unit_cents, "
                 "note, diner, station, reason, created_ms) VALUES (?, ?, 'A1', 'noodles', '面', 'Noodles', 1, 1800, "
                 "?, ?, 'hot', ?, ?)", (rid, sid, note, nickname, reason, opened))
    conn.execute("INSERT INTO ord_tickets (round_id, table_id, round_no, station, created_ms) VALUES (?, 'A1', 1, "
                 "'hot', ?)", (rid, opened))
    conn.execute("INSERT INTO ord_tasks (session_id, table_id, kind, created_ms, ack_ms, ack_by) VALUES "
                 "(?, 'A1', 'bill', ?, ?, ?)", (sid, opened, opened, staff))
    if paid:
        conn.execute("INSERT INTO ord_payments (session_id, table_id, method, amount_cents, staff, reference, ts_ms) "
                     "VALUES (?, 'A1', 'card', 1800, ?, ?, ?)", (sid, staff, reference, closed_ms))
    conn.execute("COMMIT")
    return int(sid)


def decrypted_pages(path: Path, key_hex: str) -> bytes:
    """Every page of a SQLCipher 4 database file (or the pages in its WAL) decrypted with the raw
    key, concatenated: free space, freed pages and old WAL frames included."""
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    key = bytes.fromhex(key_hex)
    raw = path.read_bytes()
    wal = path.name.endswith("-wal")
    pages = []
    if wal:
        pos = 32
        while pos + 24 + PAGE <= len(raw):
            pages.append(raw[pos + 24:pos + 24 + PAGE])
            pos += 24 + PAGE
    else:
        pages = [raw[i:i + PAGE] for i in range(0, len(raw) - PAGE + 1, PAGE)]
    out = []
    for n, page in enumerate(pages):
        first = not wal and n == 0
        start = 16 if first else 0  # page 1 starts with the salt
        body = page[start:PAGE - RESERVE]
        iv = page[PAGE - RESERVE:PAGE - RESERVE + 16]
        dec = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
        out.append(dec.update(body) + dec.finalize())
    return b"".join(out)


def contains_anywhere(data: Path, needle: str) -> list[str]:
    """The files of the data dir holding ``needle``: raw bytes (UTF-8, UTF-16) and decrypted pages."""
    key_hex = db_key(data).raw.hex()
    forms = [needle.encode(), needle.encode("utf-16-le"), json.dumps(needle).encode()[1:-1]]
    hits = []
    for f in sorted(data.iterdir()):
        if not f.is_file() or not f.name.startswith("storegw.db") or f.name.endswith(".keycheck"):
            continue
        blobs = [f.read_bytes()]
        if f.name in ("storegw.db", "storegw.db-wal") and f.stat().st_size:
            blobs.append(decrypted_pages(f, key_hex))
        if any(form in blob for blob in blobs for form in forms):
            hits.append(f.name)
    return hits
