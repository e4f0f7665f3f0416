"""``storegw privacy``: the data inventory, retention by hand, data-subject requests, the report.

Commands open the gateway's database directly (like ``storegw staff``), so they work with or
without a running gateway; SQLite's locking serialises their writes with the gateway's writer.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from typing import Any

import click

from gateway.cli.db import database
from gateway.clikit import CONFIG, handle_errors, load_config
from gateway.core.errors import ConfigError
from gateway.core.models import now_ms
from gateway.store.db import immediate


def _writer(conn: Any) -> Callable[[Callable[[Any], Any]], Any]:
    return lambda fn: immediate(conn, fn)


def _now(text: str | None) -> int:
    if not text:
        return now_ms()
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"--now {text!r}: expected ISO-8601, e.g. 2026-03-01T04:15:00+08:00") from None
    if when.tzinfo is None:
        raise ConfigError(f"--now {text!r}: give a UTC offset (Z or +08:00)")
    return int(when.timestamp() * 1000)


def _ring(cfg: Any) -> Any:
    from gateway.privacy.keys import Keyring

    return Keyring.open(cfg.keys_path, create=True)


def signer_for(cfg: Any) -> Any:
    """The keyring's Ed25519 signer (the one the running gateway signs receipts and checkpoints with)."""
    return _ring(cfg).signer()


def tombstones_for(cfg: Any) -> Any:
    """The erasure tombstones beside the database, keyed from the keyring."""
    from gateway.privacy.dsr import Tombstones

    return Tombstones(cfg.data_path, key=_ring(cfg).index_key("tombstone"))


def run_retention(cfg: Any, conn: Any, now: int) -> Any:
    """One retention run on an open connection (the CLI's; the daemon runs it through its writer)."""
    from gateway import domains
    from gateway.privacy import audit, report, retention
    write = _writer(conn)
    result = retention.run(write, lambda fn: fn(conn), domains.INVENTORY, now_ms=now, prefix=cfg.prefix,
                           store=cfg.store.id, signer=signer_for(cfg), audit_head=audit.head,
                           next_run=report.next_run(cfg.privacy.retention_at, cfg.store.timezone, now))
    tombstones_for(cfg).record_run(now)
    return result


def after_restore(cfg: Any, now: int | None = None) -> dict[str, Any]:
    """Re-apply erasures (tombstones) and the retention rules to a restored database."""
    from gateway import domains

    now = now_ms() if now is None else now
    with database(cfg) as conn:
        tomb = tombstones_for(cfg)
        again = _writer(conn)(lambda c: tomb.reapply(c, domains.INVENTORY, now))
        result = run_retention(cfg, conn, now)
    return {"erased_again": again, "retention_rows": result.rows}


@click.group()
def privacy() -> None:
    """The data inventory, retention, data-subject requests and the privacy report (docs/privacy.md)."""


@privacy.command("inventory")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="The gateway's TOML configuration "
              "file (optional: the inventory is the code's).")
@click.option("--json", "as_json", is_flag=True, help="Every table and column as JSON.")
@click.option("--markdown", is_flag=True, help="The generated block of docs/privacy.md.")
@click.option("--personal", is_flag=True, help="Only columns holding personal data (text output).")
@handle_errors
def inventory_cmd(config_path: str | None, as_json: bool, markdown: bool, personal: bool) -> None:
    """Print the data inventory: every table and column, its category, purpose, legal basis, retention,
    mask, whether it may leave the store and whether it is field-encrypted.

    \b
    Examples:
      storegw privacy inventory
      storegw privacy inventory --json | jq '.[] | select(.table == "ord_lines")'
      storegw privacy inventory --markdown     # the generated part of docs/privacy.md
    """
    from gateway import domains
    from gateway.privacy import render

    if config_path:
        load_config(config_path)
    if as_json:
        click.echo(json.dumps(domains.INVENTORY.as_json(), ensure_ascii=False, indent=1))
    elif markdown:
        click.echo(render.markdown(domains.INVENTORY))
    else:
        click.echo(render.text(domains.INVENTORY, personal_only=personal))


@privacy.command("retention")
@CONFIG
@click.option("--now", "now_text", help="Run as if it were this time (ISO-8601 with offset; for tests and drills).")
@handle_errors
def retention_cmd(config_path: str, now_text: str | None) -> None:
    """Run the retention job now (it also runs daily at privacy.retention_at): delete or blank what is
    past its rule, scrub the file, queue a signed receipt for HQ. Prints what it did.

    \b
    Example:
      sudo -u storegw storegw privacy retention --config /etc/storegw/storegw.toml
    """
    cfg = load_config(config_path)
    now = _now(now_text)
    with database(cfg) as conn:
        result = run_retention(cfg, conn, now)
    click.echo(json.dumps({"rows": result.rows, "deleted": result.deleted, "batches": result.batches,
                           "scrub_s": round(result.scrub_s, 3), "receipt": result.receipt["id"] if result.receipt
                           else None}, ensure_ascii=False))


def _subject_cmd(fn: Callable[..., Any]) -> Callable[..., Any]:
    fn = click.option("--subject", required=True, help="KIND:VALUE, e.g. staff:wang or queue:A12 "
                      "(storegw privacy inventory lists the kinds).")(fn)
    return CONFIG(fn)


@privacy.command("export")
@_subject_cmd
@click.option("--output", "-o", type=click.Path(dir_okay=False), help="Write the JSON here (mode 0600), not stdout.")
@handle_errors
def export_cmd(config_path: str, subject: str, output: str | None) -> None:
    """Export everything held about one person, as JSON (a data-subject access request; audited by
    reference, never by value).

    \b
    Example:
      sudo -u storegw storegw privacy export --subject staff:wang --config /etc/storegw/storegw.toml -o wang.json
    """
    import os

    from gateway import domains
    from gateway.privacy import dsr
    from gateway.staff.accounts import audit

    cfg = load_config(config_path)
    with database(cfg) as conn:
        tomb = tombstones_for(cfg)
        doc = _writer(conn)(lambda c: dsr.export(c, domains.INVENTORY, tomb, subject, who="cli", now_ms=now_ms(),
                                                 audit=audit))
    text = json.dumps(doc, ensure_ascii=False, indent=1)
    if output:
        fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")
        click.echo(f"{output}: {sum(len(v) for v in doc['tables'].values())} rows from {len(doc['tables'])} tables")
    else:
        click.echo(text)


@privacy.command("erase")
@_subject_cmd
@click.option("--reason", required=True, help="Why (kept on the audit log, e.g. 'request by phone 2026-03-01').")
@handle_errors
def erase_cmd(config_path: str, subject: str, reason: str) -> None:
    """Erase everything held about one person, or say what the law makes the store keep and until when
    ("retained by legal obligation until DATE; processing stopped", PIPL Art. 47). A restored backup
    does not bring it back (tombstones). Audited by reference.

    \b
    Example:
      sudo -u storegw storegw privacy erase --subject staff:wang --reason "left, asked 2026-03-01" \\
          --config /etc/storegw/storegw.toml
    """
    from gateway import domains
    from gateway.privacy import dsr
    from gateway.staff.accounts import audit

    cfg = load_config(config_path)
    with database(cfg) as conn:
        tomb = tombstones_for(cfg)
        doc = _writer(conn)(lambda c: dsr.erase(c, domains.INVENTORY, tomb, subject, who="cli", reason=reason,
                                                now_ms=now_ms(), audit=audit))
        # What was deleted must not stay in the WAL or in free pages either.
        from gateway.privacy.retention import scrub

        scrub(conn)
    click.echo(json.dumps(doc, ensure_ascii=False, indent=1))


@privacy.command("report")
@CONFIG
@click.option("--json", "as_json", is_flag=True, help="JSON instead of text.")
@handle_errors
def report_cmd(config_path: str, as_json: bool) -> None:
    """Counts and oldest record per category, next retention run, last receipt, unmasks per staff
    member this week, key versions.

    \b
    Example:
      storegw privacy report --config /etc/storegw/storegw.toml --json
    """
    from gateway import domains
    from gateway.privacy import report
    from gateway.privacy.service import status

    cfg = load_config(config_path)
    keys = status(cfg)
    versions = report.key_versions((keys.get("database") or {}).get("primary"),
                                   (keys.get("fields") or {}).get("versions", []),
                                   (keys.get("signing") or {}).get("key_id"))
    with database(cfg) as conn:
        doc = report.build(conn, domains.INVENTORY, now_ms=now_ms(), tz=cfg.store.timezone,
                           at=cfg.privacy.retention_at, key_versions=versions)
    click.echo(json.dumps(doc, ensure_ascii=False, indent=1) if as_json else report.text(doc))
