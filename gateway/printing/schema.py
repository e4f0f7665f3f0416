"""Tables of the print queue (registered as migration ``0100_printing``)."""

from __future__ import annotations

from gateway.core.inventory import CONTRACT, REDACT, Column, Declaration, Table, after, ops
from gateway.store.db import Connection
from gateway.store.migrations import migration, run_script


@migration("0100_printing")
def _printing(conn: Connection) -> None:
    # seq orders jobs per printer (FIFO); id is the stable public id kept across retries and reroutes.
    run_script(conn, """
        CREATE TABLE print_jobs (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            id TEXT NOT NULL UNIQUE,
            printer TEXT NOT NULL,
            station TEXT NOT NULL DEFAULT '',
            doc TEXT NOT NULL,
            state TEXT NOT NULL DEFAULT 'queued'
                CHECK (state IN ('queued', 'sent', 'confirmed', 'failed')),
            attempts INTEGER NOT NULL DEFAULT 0,
            reprint INTEGER NOT NULL DEFAULT 0,
            rerouted_from TEXT NOT NULL DEFAULT '',
            source TEXT NOT NULL DEFAULT '',
            source_id TEXT NOT NULL DEFAULT '',
            error TEXT NOT NULL DEFAULT '',
            created_ms INTEGER NOT NULL,
            updated_ms INTEGER NOT NULL
        );
        CREATE INDEX print_jobs_pending ON print_jobs (printer, seq) WHERE state IN ('queued', 'sent');
        CREATE INDEX print_jobs_source ON print_jobs (source, source_id) WHERE source != '';
        CREATE INDEX print_jobs_updated ON print_jobs (updated_ms)
    """)


# The data inventory (gateway/core/inventory.py): ``doc`` is the ticket as printed, with diners'
# nicknames and notes; finished jobs go after 7 days (the print service prunes hourly too).
_FINISHED = after(7, "updated_ms", "7d after the job finished (confirmed or failed)",
                  where="state IN ('confirmed', 'failed')")

INVENTORY = Declaration("printing", (
    Table("print_jobs", "The print queue: tickets, receipts and reprints",
          ops("seq id printer station state attempts reprint rerouted_from source source_id error created_ms "
              "updated_ms", _FINISHED, "printing") + (
              Column("doc", "user.content.free_text", "the document as printed (nicknames and notes on tickets)",
                     CONTRACT, _FINISHED, mask=REDACT),),
          created="created_ms"),
))
