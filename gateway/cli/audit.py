"""``storegw audit``: verify the tamper-evident audit chain, show it to an auditor, print its key.

Every command opens the database read-only: it works beside a running gateway and changes nothing.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from gateway.clikit import CONFIG, handle_errors, load_config
from gateway.core.errors import GatewayError


@contextmanager
def _readonly(cfg: Any) -> Iterator[Any]:
    from gateway.clikit import db_key
    from gateway.store.db import DB_NAME, connect

    path = cfg.data_path / DB_NAME
    if not path.is_file():
        raise GatewayError(f"no database at {path}: is store.data_dir right?")
    conn = connect(path, db_key(cfg), readonly=True)
    try:
        if not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'audit_log'").fetchone():
            raise GatewayError(f"{path} has no audit chain yet: run `storegw run` (or any storegw command "
                               f"that opens the database) once so it is migrated")
        yield conn
    finally:
        conn.close()


def read_checkpoints(path: str) -> list[dict[str, Any]]:
    """Checkpoint messages from a file: one JSON message, a JSON list, or JSON lines (HQ's history)."""
    text = Path(path).read_text(encoding="utf-8")
    try:
        doc = json.loads(text)
    except ValueError:
        try:
            doc = [json.loads(line) for line in text.splitlines() if line.strip()]
        except ValueError as err:
            raise GatewayError(f"{path}: not a checkpoint message (JSON) nor JSON lines: {err}") from None
    docs = doc if isinstance(doc, list) else [doc]
    if not docs or not all(isinstance(d, dict) and {"length", "head", "sig", "ts"} <= d.keys() for d in docs):
        raise GatewayError(f"{path}: expected the JSON message(s) HQ received on P/audit/checkpoint")
    return docs


@click.group()
def audit() -> None:
    """The audit chain: verify it (against HQ's checkpoint), show it, print its signing key."""


@audit.command("verify")
@CONFIG
@click.option("--checkpoint", "checkpoint_file", type=click.Path(dir_okay=False, exists=True),
              help="The checkpoint HQ holds: the JSON message received on P/audit/checkpoint "
                   "(or a JSON-lines history of them, as `storegw hq watch --checkpoints` keeps).")
@click.option("--public-key", default="", help="The signing public key (base64, or a file holding it) HQ pinned "
              "for this store; default: the keys recorded in the database.")
@handle_errors
def verify_cmd(config_path: str, checkpoint_file: str | None, public_key: str) -> None:
    """Check the audit chain; exit 0 when intact, 1 naming the first bad entry.

    Catches an entry changed, deleted or moved (its hash and its link to the one before), a
    truncated tail (a signed checkpoint longer than the chain) and, given the checkpoint HQ holds,
    a whole chain recomputed after an edit by someone holding the keys. Opens the database
    read-only.

    \b
    Example:
      storegw audit verify --config /etc/storegw/storegw.toml
      storegw audit verify --config /etc/storegw/storegw.toml --checkpoint sh-001.json --public-key KEY
    """
    from gateway.privacy import audit as chain

    cfg = load_config(config_path)
    hq = read_checkpoints(checkpoint_file) if checkpoint_file else []
    if public_key and Path(public_key).is_file():
        public_key = Path(public_key).read_text().strip()
    with _readonly(cfg) as conn:
        verdict = chain.verify(conn, f"{cfg.prefix}/audit", hq, public_key=public_key or None)
    if verdict.ok:
        click.echo(f"ok: {verdict.notes[0]}")
        if not hq:
            click.echo("note: without HQ's checkpoint (--checkpoint) a chain rewritten by someone holding the keys, "
                       "or a tail cut after the last local checkpoint, cannot be told from an intact one")
        return
    first = f"first bad entry {verdict.first_bad}" if verdict.first_bad is not None else "a checkpoint is bad"
    click.echo(f"FAILED: {first}", err=True)
    for line in verdict.problems:
        click.echo(f"  {line}", err=True)
    sys.exit(1)


@audit.command("show")
@CONFIG
@click.option("--limit", type=click.IntRange(1, 100000), default=50, show_default=True, help="Latest entries shown.")
@click.option("--json", "as_json", is_flag=True, help="JSON lines instead of a table.")
@handle_errors
def show_cmd(config_path: str, limit: int, as_json: bool) -> None:
    """Show the latest audit entries, newest first (references and redacted reasons: no personal data).

    For the auditor: who (staff:ID/ROLE, system, cli), what, which subject (a reference), why, when.

    \b
    Example:
      storegw audit show --config /etc/storegw/storegw.toml --limit 20
    """
    from gateway.privacy import audit as chain

    cfg = load_config(config_path)
    with _readonly(cfg) as conn:
        rows = chain.recent(conn, limit)
    for r in rows:
        if as_json:
            click.echo(json.dumps(r, ensure_ascii=False, separators=(",", ":")))
        else:
            detail = "" if not r["detail"] else " " + json.dumps(r["detail"], ensure_ascii=False, separators=(",", ":"))
            why = f"  \"{r['why']}\"" if r["why"] else ""
            click.echo(f"{r['seq']:>7}  {r['ts']}  {r['who']:<18} {r['action']:<12} {r['subject']}{why}{detail}")


@audit.command("key")
@CONFIG
@handle_errors
def key_cmd(config_path: str) -> None:
    """Print the public keys that sign this store's audit checkpoints (for HQ to pin).

    \b
    Example:
      storegw audit key --config /etc/storegw/storegw.toml
    """
    from gateway.privacy import audit as chain

    cfg = load_config(config_path)
    with _readonly(cfg) as conn:
        keys = chain.public_keys(conn)
    if not keys:
        raise GatewayError("no signing key recorded yet: it is recorded when `storegw run` starts")
    for key_id, public in sorted(keys.items()):
        click.echo(f"{key_id} {public}")
