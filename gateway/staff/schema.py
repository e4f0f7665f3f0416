"""The staff package's own migrations (its first tables, ``ord_staff`` and the sessions, were
made by the ordering migrations, where the staff pages began)."""

from __future__ import annotations

from gateway.core.inventory import HIDDEN, LEGAL_OBLIGATION, Column, Declaration, Table, after, ops
from gateway.store.db import Connection
from gateway.store.migrations import migration, run_script


@migration("0400_staff_totp_unmask")
def _totp_and_unmask(conn: Connection) -> None:
    """Password + TOTP for managers, technicians and auditors; the unmask attempts log.

    ``ord_staff.auth``: ``pin`` (``pin_hash`` holds a PIN's argon2 hash) or ``totp``
    (``pin_hash`` holds a password's argon2 hash and ``totp_sealed`` the TOTP secret).
    ``totp_sealed`` is field-encrypted with the keyring's field keys (gateway/privacy/fields.py;
    values of the interim seal this column first had are moved there at start and by every re-wrap).
    ``totp_step``: the last accepted RFC 6238 time step (a code of that step or earlier is refused).
    ``staff_unmasks``: every unmask attempt (for the per-member rate limit and the privacy
    report); the field and the subject's reference, never the value.
    """
    run_script(conn, """
        ALTER TABLE ord_staff ADD COLUMN auth TEXT NOT NULL DEFAULT 'pin';
        ALTER TABLE ord_staff ADD COLUMN totp_sealed BLOB;
        ALTER TABLE ord_staff ADD COLUMN totp_step INTEGER;
        CREATE TABLE staff_unmasks (
            id INTEGER PRIMARY KEY,
            ts_ms INTEGER NOT NULL,
            staff_id INTEGER NOT NULL,
            field TEXT NOT NULL,
            ref TEXT NOT NULL,
            granted INTEGER NOT NULL,
            cause TEXT NOT NULL DEFAULT ''
        );
        CREATE INDEX staff_unmasks_staff ON staff_unmasks (staff_id, ts_ms)
    """)


# ------------------------------------------------------------------------------------ inventory
# (the columns this package adds to ord_staff are declared with that table, in gateway/ordering/schema.py)

_UNMASKS = after(30, "ts_ms", "30d after the attempt (the rate limit needs 1 h, the privacy report 7 d; the "
                 "audit chain keeps the record of every attempt)")

INVENTORY = Declaration("staff", (
    Table("staff_unmasks", "Every unmask attempt: who, which field of which record, granted or why refused; "
          "never the value",
          ops("id ts_ms staff_id field granted cause", _UNMASKS, "unmask rate limit and report") + (
              Column("ref", "user.unique_id", "which record was asked for (a row reference, never the value)",
                     LEGAL_OBLIGATION, _UNMASKS, mask=HIDDEN),),
          created="ts_ms"),
))
