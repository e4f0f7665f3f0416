"""``storegw members``: membership checks from a shell (the database is read beside a running gateway)."""

from __future__ import annotations

import json
import sys

import click

from gateway.clikit import CONFIG
from gateway.clikit import handle_errors as _handle_errors
from gateway.clikit import load_config as _load
from gateway.core.errors import GatewayError


@click.group("members")
def members() -> None:
    """Membership: the points ledger check."""


@members.command("check")
@CONFIG
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@_handle_errors
def check(config_path: str, as_json: bool) -> None:
    """Assert that every member's cached points balance equals the sum of their ledger entries (and
    that their unspent lots add up to it); exit 1 naming every member that differs.

    Example: storegw members check --config /etc/storegw/storegw.toml
    """
    from gateway.clikit import db_key
    from gateway.members.ledger import check as ledger_check
    from gateway.store.db import DB_NAME, connect

    cfg = _load(config_path)
    path = cfg.data_path / DB_NAME
    if not path.exists():
        raise GatewayError(f"no database at {path} (store.data_dir = {cfg.store.data_dir})")
    conn = connect(path, db_key(cfg))
    try:
        if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'mem_members'").fetchone() is None:
            raise GatewayError("this database has no members tables yet: start the gateway once with this version")
        members_n, entries = conn.execute(
            "SELECT (SELECT count(*) FROM mem_members), (SELECT count(*) FROM mem_ledger)").fetchone()
        bad = ledger_check(conn)
    finally:
        conn.close()
    if as_json:
        click.echo(json.dumps({"members": members_n, "entries": entries, "mismatches": bad}))
    elif bad:
        for b in bad:
            click.echo(f"MISMATCH member {b['member']}: cached {b['cached']}, ledger sum {b['ledger']}, "
                       f"unspent lots {b['lots']}", err=True)
    else:
        click.echo(f"ok: {members_n} members, {entries} ledger entries, every balance = sum of its ledger")
    if bad:
        sys.exit(1)
