"""Open HQ's database from a URL: PostgreSQL (``gateway.hq.pgsink``) or the embedded SQLite."""

from __future__ import annotations

from gateway.hq.sink import GRACE_S, Sink, SqliteSink


def open_sink(url: str, *, grace: float = GRACE_S) -> Sink:
    """Open HQ's database: ``postgresql://…`` (psycopg 3) or ``sqlite:///PATH`` / a plain file path."""
    if url.startswith(("postgresql://", "postgres://")):
        from gateway.hq.pgsink import PostgresSink

        return PostgresSink(url, grace=grace)
    path = url.removeprefix("sqlite:///") if url.startswith("sqlite:///") else url
    return SqliteSink(path, grace=grace)
