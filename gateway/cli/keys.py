"""``storegw keys``: rotate the database and field keys, show the keyring's state (never a key)."""

from __future__ import annotations

import json
from typing import Any

import click

from gateway.clikit import CONFIG, handle_errors, load_config


@click.group("keys")
def keys_group() -> None:
    """The keyring: key-encryption key, database key, field and blind-index keys, signing key."""


@keys_group.command("rotate")
@CONFIG
@click.option("--db", "db", is_flag=True, help="Rotate the SQLCipher database key.")
@click.option("--fields", "fields", is_flag=True, help="Make a new field-encryption key version primary.")
@handle_errors
def rotate_cmd(config_path: str, db: bool, fields: bool) -> None:
    """Rotate the database key and/or the field keys (both when neither flag is given).

    With storegw running, the running gateway rotates (asked through the control socket in the
    keys directory): it pauses its writer between transactions, rekeys, reopens its connections
    and goes on; nothing is lost and no request fails. With storegw stopped, this command rotates
    the file itself. A crash at any moment leaves a database that opens. Afterwards the old
    database key no longer opens the database; it stays in the keyring as retired so older backups
    can still be restored. Old field-key versions are re-encrypted in the background (`storegw
    keys status` shows the rows left per version) and retired at 0 rows. Every rotation also
    re-seals the keyring with the best key-encryption key the board has.

    \b
    Example:
      sudo -u storegw storegw keys rotate --config /etc/storegw/storegw.toml
      sudo -u storegw storegw keys rotate --config /etc/storegw/storegw.toml --fields
    """
    from gateway.privacy.service import rotate

    cfg = load_config(config_path)
    if not db and not fields:
        db = fields = True
    result = rotate(cfg, db=db, fields=fields)
    parts = [f"rotated ({result['mode']})"]
    if "db_version" in result:
        parts.append(f"database key version {result['db_version']}")
    if "field_version" in result:
        parts.append(f"field key version {result['field_version']} is primary")
    if result.get("mode") == "online" and "field_version" in result:
        parts.append("older field versions are re-encrypted in the background")
    if "rewrapped" in result:
        parts.append(f"{result['rewrapped']} field(s) re-encrypted")
    click.echo("; ".join(parts))


@keys_group.command("status")
@CONFIG
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@handle_errors
def status_cmd(config_path: str, as_json: bool) -> None:
    """Show the keyring: where the KEK comes from, the database key version, field-key versions with
    the rows under each, blind-index key ids and the signing key id. Never prints key material.

    \b
    Example:
      sudo -u storegw storegw keys status --config /etc/storegw/storegw.toml
      sudo -u storegw storegw keys status --config /etc/storegw/storegw.toml --json
    """
    from gateway.privacy.service import status

    doc = status(load_config(config_path))
    if as_json:
        click.echo(json.dumps(doc, indent=2, ensure_ascii=False))
        return
    click.echo(format_status(doc))


def format_status(doc: dict[str, Any]) -> str:
    """The status as a few human lines."""
    lines = [f"keyring   {doc['keyring']}" + ("  (storegw is running)" if doc.get("running") else "")]
    if doc.get("note"):
        db = doc["database"]
        return "\n".join([*lines, f"database  key from {db['key']}", doc["note"]])
    kek = doc["kek"]
    lines.append(f"KEK       {kek['source']} ({kek['kind']})")
    if kek.get("warning"):
        lines.append(f"  warning: {kek['warning']}")
    db = doc["database"]
    if db["in_keyring"]:
        lines.append(f"database  key version {db['primary']} (primary)"
                     + (f"; pending {db['pending']}" if db["pending"] else "")
                     + (f"; retired {db['retired']}" if db["retired"] else ""))
    else:
        lines.append(f"database  key from {db['legacy_source']} (not in the keyring yet: `storegw keys rotate` "
                     "moves it there)")
    if db.get("error"):
        lines.append(f"  error: {db['error']}")
    fields = doc["fields"]
    for v in fields["versions"]:
        rows = "?" if v["rows"] is None else v["rows"]
        lines.append(f"field key version {v['version']:<3} {v['status']:<8} rows {rows}")
    if fields["pending_rewrap"]:
        lines.append(f"  {fields['pending_rewrap']} field(s) wait for the re-wrap to the primary version")
    lines.append(f"encrypted {', '.join(fields['encrypted_columns']) or 'no columns declared yet'}")
    for kind, key_id in doc["blind_indexes"].items():
        lines.append(f"index     {kind:<10} {key_id}")
    lines.append(f"signing   {doc['signing']['key_id']}")
    return "\n".join(lines)
