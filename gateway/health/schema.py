"""Tables of store health (migrations ``health_…``): the daily reports as made at close.

A report holds aggregates only (sales, counts, item and ingredient ids and names, percentiles): no
personal data. Complaint text stays in members' table; only counts per category are copied here.
"""

from __future__ import annotations

from gateway.core.inventory import Declaration, Table, after, ops
from gateway.store.db import Connection
from gateway.store.migrations import migration, run_script


@migration("health_0001_reports")
def _health(conn: Connection) -> None:
    run_script(conn, """
        CREATE TABLE hl_reports (
            day TEXT PRIMARY KEY,                  -- the store's business day, YYYY-MM-DD (store.timezone)
            doc TEXT NOT NULL,                     -- the report (JSON, aggregates only)
            created_ms INTEGER NOT NULL,
            print_job TEXT NOT NULL DEFAULT ''     -- the receipt summary's print job, once printed
        )
    """)


@migration("health_0002_report_indexes")
def _report_indexes(conn: Connection) -> None:
    # The report and the sales baseline read ordering's tables by time (through ordering's facade,
    # gateway/ordering/report.py); without these every report scans 90 days of lines.
    run_script(conn, """
        CREATE INDEX IF NOT EXISTS ord_lines_created ON ord_lines (created_ms, status, qty);
        CREATE INDEX IF NOT EXISTS ord_tickets_created ON ord_tickets (created_ms);
        CREATE INDEX IF NOT EXISTS ord_payments_ts ON ord_payments (ts_ms);
        CREATE INDEX IF NOT EXISTS ord_sessions_paid ON ord_sessions (paid_ms) WHERE paid_ms IS NOT NULL
    """)


INVENTORY = Declaration("health", (
    Table("hl_reports", "Daily store reports (aggregates only)",
          ops("day doc created_ms print_job", after(400, "created_ms", "400d after the report"), "store health"),
          created="created_ms"),
))
