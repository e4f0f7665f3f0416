"""HQ tests' real parts: one PostgreSQL server for the session (a database per test where needed)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from realparts import Postgres, postgres


@pytest.fixture(scope="session")
def pg() -> Iterator[Postgres]:
    """A real PostgreSQL (initdb in a temp dir, random port, stopped by PID)."""
    server = postgres()
    yield server
    server.stop()


@pytest.fixture
def pg_db(pg: Postgres, tmp_path: Path) -> str:
    """A fresh database on the session's server; returns its URL."""
    import psycopg

    name = f"t{os.getpid()}_{abs(hash(str(tmp_path))) % 10**8}"
    with psycopg.connect(pg.url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return pg.url.rsplit("/", 1)[0] + "/" + name
