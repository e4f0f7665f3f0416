"""The database as the CLI's commands open it: created and migrated with every domain's schema."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def database(cfg: Any) -> Iterator[Any]:
    """Open (create and migrate if needed) the gateway's database; yield a connection."""
    from gateway import domains
    from gateway.clikit import db_key
    from gateway.store import migrations
    from gateway.store.db import connect, open_database

    key = db_key(cfg, create=True)
    opened = open_database(cfg.data_path, key)
    conn = connect(opened.path, key)
    try:
        migrations.apply(conn, domains.SCHEMAS)
        yield conn
    finally:
        conn.close()
