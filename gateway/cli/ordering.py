"""``storegw tables``, ``storegw menu`` and ``storegw staff``: ordering from a shell.

Commands open the gateway's database directly (creating and migrating it if this is the first
run), so they work with or without a running gateway; a running gateway notices the change
(``ord_meta.rev``) within about two seconds and reloads its menu and tables.
"""

from __future__ import annotations

import json
import secrets
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from gateway.cli.db import database
from gateway.clikit import CONFIG, field_cipher
from gateway.clikit import handle_errors as _handle_errors
from gateway.clikit import load_config as _load
from gateway.core.errors import OrderingError
from gateway.staff.matrix import ROLES
from gateway.store.db import immediate


def write(cfg: Any, fn: Callable[[Any], Any]) -> Any:
    """Run ``fn(conn)`` in one transaction and bump ``rev`` so a running gateway reloads."""
    def body(conn: Any) -> Any:
        result = fn(conn)
        conn.execute("INSERT INTO ord_meta (key, value) VALUES ('rev', ?) "
                     "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (secrets.token_hex(8),))
        return result

    with database(cfg) as conn:
        return immediate(conn, body)


def table_urls(cfg: Any, table_ids: tuple[str, ...] = ()) -> list[tuple[Any, str]]:
    """Return (table, url) for the given tables (all when empty)."""
    from gateway.ordering import tables as tbl

    def run(conn: Any) -> list[tuple[Any, str]]:
        secret = tbl.ensure_secret(conn)
        all_tables = {t.id: t for t in tbl.list_tables(conn)}
        wanted = table_ids or tuple(all_tables)
        out = []
        for tid in wanted:
            if tid not in all_tables:
                raise OrderingError(f"no table {tid!r}; add it with `storegw tables add {tid} --config ...`"
                                    + (f" (tables: {', '.join(all_tables)})" if all_tables else ""))
            t = all_tables[tid]
            host = cfg.web.public_host or cfg.web.listen
            out.append((t, tbl.table_url(host, tbl.make_token(secret, cfg.store.id, t), https=cfg.ordering.https)))
        return out
    return write(cfg, run)


@click.group()
def tables() -> None:
    """Tables and their QR codes: add, list, url, qr, sheet, rotate.

    \b
    Examples:
      storegw tables add A1 --label A1 --config /etc/storegw/storegw.toml
      storegw tables url A1 --config /etc/storegw/storegw.toml
      storegw tables sheet --format pdf -o stickers.pdf --config /etc/storegw/storegw.toml
      storegw tables rotate A1 --config /etc/storegw/storegw.toml
    """


@tables.command("add")
@click.argument("table_ids", nargs=-1, required=True)
@click.option("--label", default="", help="Label shown to diners and on tickets (default: the id).")
@click.option("--area", default="", help="Area or floor, e.g. hall, terrace.")
@click.option("--seats", default=4, type=int, show_default=True, help="Seats at the table.")
@CONFIG
@_handle_errors
def tables_add(table_ids: tuple[str, ...], label: str, area: str, seats: int, config_path: str) -> None:
    """Add (or relabel) tables.

    \b
    Example:
      storegw tables add A1 A2 A3 B1 --config /etc/storegw/storegw.toml
    """
    from gateway.ordering import tables as tbl

    cfg = _load(config_path)

    def run(conn: Any) -> None:
        for tid in table_ids:
            tbl.upsert_table(conn, tid, label if len(table_ids) == 1 else "", area, seats)
    write(cfg, run)
    click.echo(f"{len(table_ids)} table(s) saved")


@tables.command("list")
@CONFIG
@_handle_errors
def tables_list(config_path: str) -> None:
    """List tables with their QR URLs.

    \b
    Example:
      storegw tables list --config /etc/storegw/storegw.toml
    """
    for t, url in table_urls(_load(config_path)):
        click.echo(f"{t.id}\t{t.label}\tv{t.version}\t{url}")


@tables.command("url")
@click.argument("table_id")
@CONFIG
@_handle_errors
def tables_url(table_id: str, config_path: str) -> None:
    """Print the URL a table's QR code points at (C1).

    \b
    Example:
      storegw tables url A1 --config /etc/storegw/storegw.toml
    """
    click.echo(table_urls(_load(config_path), (table_id,))[0][1])


@tables.command("queue-url")
@CONFIG
@_handle_errors
def tables_queue_url(config_path: str) -> None:
    """Print the URL of the store's queue QR code (取号 and pre-order while waiting for a table).

    \b
    Example:
      storegw tables queue-url --config /etc/storegw/storegw.toml
    """
    from gateway.ordering import queue
    from gateway.ordering import tables as tbl

    cfg = _load(config_path)
    secret = write(cfg, tbl.ensure_secret)
    host = cfg.web.public_host or cfg.web.listen
    click.echo(queue.queue_url(host, queue.store_token(secret, cfg.store.id), https=cfg.ordering.https))


@tables.command("qr")
@click.argument("table_id")
@click.option("--format", "fmt", type=click.Choice(["png", "svg"]), default="png", show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="File to write (default: TABLE.FORMAT).")
@CONFIG
@_handle_errors
def tables_qr(table_id: str, fmt: str, output: str | None, config_path: str) -> None:
    """Write a table's QR code as PNG or SVG.

    \b
    Example:
      storegw tables qr A1 --format svg -o a1.svg --config /etc/storegw/storegw.toml
    """
    from gateway.ordering.tables import qr_bytes

    _, url = table_urls(_load(config_path), (table_id,))[0]
    path = Path(output or f"{table_id}.{fmt}")
    path.write_bytes(qr_bytes(url, fmt))
    click.echo(f"{path}: {url}")


@tables.command("sheet")
@click.argument("table_ids", nargs=-1)
@click.option("--format", "fmt", type=click.Choice(["pdf", "svg"]), default="pdf", show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="File to write (default: tables.FORMAT).")
@CONFIG
@_handle_errors
def tables_sheet(table_ids: tuple[str, ...], fmt: str, output: str | None, config_path: str) -> None:
    """Write a printable A4 sheet of labelled QR stickers (all tables, or the ones given).

    \b
    Example:
      storegw tables sheet --format pdf -o stickers.pdf --config /etc/storegw/storegw.toml
    """
    from gateway.ordering.tables import sheet_pdf, sheet_svg

    cfg = _load(config_path)
    stickers = [(t.label, url) for t, url in table_urls(cfg, table_ids)]
    if not stickers:
        raise OrderingError("no tables yet; add them with `storegw tables add A1 A2 --config ...`")
    data = (sheet_pdf if fmt == "pdf" else sheet_svg)(stickers, cfg.store.name)
    path = Path(output or f"tables.{fmt}")
    path.write_bytes(data)
    click.echo(f"{path}: {len(stickers)} sticker(s)")


@tables.command("rotate")
@click.argument("table_id")
@CONFIG
@_handle_errors
def tables_rotate(table_id: str, config_path: str) -> None:
    """Replace a table's token (a photo of the old sticker stops working); print the new URL.

    \b
    Example:
      storegw tables rotate A1 --config /etc/storegw/storegw.toml
    """
    from gateway.ordering import tables as tbl

    cfg = _load(config_path)
    write(cfg, lambda c: tbl.rotate(c, table_id))
    click.echo(table_urls(cfg, (table_id,))[0][1])
    click.echo("Print a new sticker: the old QR code no longer works.", err=True)


@click.group()
def menu() -> None:
    """The menu: import (a file or the bundled sample) and export, as JSON.

    \b
    Examples:
      storegw menu import menu.json --config /etc/storegw/storegw.toml
      storegw menu import --sample --config /etc/storegw/storegw.toml
      storegw menu export --config /etc/storegw/storegw.toml > menu.json
    """


@menu.command("import")
@click.argument("file", required=False, type=click.Path(dir_okay=False, exists=True))
@click.option("--sample", is_flag=True, help="Import the bilingual sample menu shipped with storegw.")
@CONFIG
@_handle_errors
def menu_import(file: str | None, sample: bool, config_path: str) -> None:
    """Replace the menu from a JSON file (format: docs/ordering.md), or the sample menu.

    \b
    Example:
      storegw menu import --sample --config /etc/storegw/storegw.toml
    """
    from gateway.ordering.menu import parse_menu, sample_document, stock_of, write_menu

    if bool(file) == sample:
        raise OrderingError("give a FILE or --sample (one of them)")
    try:
        doc = sample_document() if sample else json.loads(Path(file).read_text(encoding="utf-8"))  # type: ignore[arg-type]
    except (OSError, ValueError) as err:
        raise OrderingError(f"cannot read {file}: {err}") from err
    parsed = parse_menu(doc)
    stock = stock_of(doc)
    write(_load(config_path), lambda c: write_menu(c, parsed, stock))
    click.echo(f"imported {len(parsed.items)} items in {len(parsed.categories)} categories")


@menu.command("export")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="File to write (default: stdout).")
@CONFIG
@_handle_errors
def menu_export(output: str | None, config_path: str) -> None:
    """Print the menu (with stock) as JSON, in the import format.

    \b
    Example:
      storegw menu export --config /etc/storegw/storegw.toml > menu.json
    """
    from gateway.ordering.menu import export_document

    with database(_load(config_path)) as conn:
        text = json.dumps(export_document(conn), ensure_ascii=False, indent=1)
    if output:
        Path(output).write_text(text + "\n", encoding="utf-8")
    else:
        click.echo(text)


@click.group()
def staff() -> None:
    """Staff accounts for the staff pages (PIN sign-in, roles).

    \b
    Example:
      storegw staff add wang --role manager --config /etc/storegw/storegw.toml
    """


@staff.command("add")
@click.argument("name")
@click.option("--role", required=True, type=click.Choice(list(ROLES)))
@click.option("--pin-stdin", is_flag=True, help="Floor staff: read the PIN from stdin instead of prompting.")
@click.option("--password-file", type=click.Path(dir_okay=False, exists=True),
              help="Managers, technicians, auditors: read the password from this file (first line) instead of "
                   "prompting.")
@CONFIG
@_handle_errors
def staff_add(name: str, role: str, pin_stdin: bool, password_file: str | None, config_path: str) -> None:
    """Add a staff member, or reset their sign-in and role (ends their sessions, clears a lock).

    Floor staff (waiter, kitchen, cashier) sign in with a 6-12 digit PIN. Managers, technicians
    and auditors sign in with a password (12-128 characters) and an authenticator app: this
    prints the otpauth:// URI and a QR code once, for them to scan now; run it again for a lost
    phone or a forgotten password (docs/operations.md, "Staff sign-in").

    \b
    Examples:
      storegw staff add wang --role manager --config /etc/storegw/storegw.toml
      storegw staff add wang --role manager --password-file /root/wang.pw --config /etc/storegw/storegw.toml
      echo 246813 | storegw staff add li --role kitchen --pin-stdin --config /etc/storegw/storegw.toml
    """
    from gateway.staff import matrix
    from gateway.staff import totp as totp_mod
    from gateway.staff.accounts import add_staff, enrol

    cfg = _load(config_path)
    if matrix.needs_totp(role):
        if pin_stdin:
            raise click.UsageError(f"{role} accounts sign in with a password and TOTP: use --password-file or the "
                                   "prompt")
        if password_file:
            lines = Path(password_file).read_text(encoding="utf-8").splitlines()
            password = lines[0] if lines else ""
        else:
            password = click.prompt("Password (12-128 characters)", hide_input=True, confirmation_prompt=True)
        cipher = field_cipher(cfg)
        secret = write(cfg, lambda c: enrol(c, name, role, password, "cli", cipher=cipher))
        uri = totp_mod.uri(secret, name, f"storegw {cfg.store.id}")
        import segno

        click.echo(f"staff {name} ({role}) saved: password + TOTP. Scan this with an authenticator app now; "
                   "it is not shown again.")
        click.echo(uri)
        segno.make(uri, error="m").terminal(compact=True)
        return
    if password_file:
        raise click.UsageError("floor staff sign in with a PIN: use --pin-stdin or the prompt")
    if pin_stdin:
        pin = sys.stdin.readline().strip()
    else:
        pin = click.prompt("PIN (6-12 digits)", hide_input=True, confirmation_prompt=True)
    write(cfg, lambda c: add_staff(c, name, role, pin))
    click.echo(f"staff {name} ({role}) saved")


@staff.command("trust-clock")
@click.option("--by", "who", default="cli", show_default=True, help="Who checked the time (for the audit log).")
@CONFIG
@_handle_errors
def staff_trust_clock(who: str, config_path: str) -> None:
    """Trust the board's clock for TOTP until the next reboot, after setting the time by hand.

    Password + TOTP sign-in is refused while the clock is not known to be right (no time sync
    since boot, no battery clock). Check the time against a phone, set it if needed
    (timedatectl set-time 'YYYY-MM-DD HH:MM:SS'), then run this. Refused when the clock reads
    earlier than this release or than the last time the gateway saw. Audited.

    \b
    Example:
      storegw staff trust-clock --by zhao --config /etc/storegw/storegw.toml
    """
    from gateway.staff import clock
    from gateway.staff.accounts import audit

    cfg = _load(config_path)
    policy = clock.ClockPolicy(sync_files=tuple(cfg.staff.clock_sync_files))

    def fn(c: Any) -> str:
        when = clock.trust(c, policy, who)
        audit(c, who, "trust-clock", "clock:board", f"clock trusted at {when} until reboot (storegw staff trust-clock)")
        return when

    try:
        when = write(cfg, fn)
    except ValueError as err:
        raise click.ClickException(str(err)) from err
    click.echo(f"clock trusted at {when} until the next reboot; managers can sign in with their codes")


@staff.command("unlock")
@click.argument("name")
@CONFIG
@_handle_errors
def staff_unlock(name: str, config_path: str) -> None:
    """Unlock an account locked after 100 wrong PINs in a row (its wrong-PIN count starts again).

    \b
    Example:
      storegw staff unlock li --config /etc/storegw/storegw.toml
    """
    from gateway.staff.accounts import unlock

    write(_load(config_path), lambda c: unlock(c, name, "cli"))
    click.echo(f"staff {name} unlocked")


@staff.command("disable")
@click.argument("name")
@CONFIG
@_handle_errors
def staff_disable(name: str, config_path: str) -> None:
    """Disable an account: it cannot sign in and its sessions end at once.

    \b
    Example:
      storegw staff disable li --config /etc/storegw/storegw.toml
    """
    from gateway.staff.accounts import set_active

    write(_load(config_path), lambda c: set_active(c, name, False, "cli"))
    click.echo(f"staff {name} disabled")


@staff.command("enable")
@click.argument("name")
@CONFIG
@_handle_errors
def staff_enable(name: str, config_path: str) -> None:
    """Enable a disabled account again.

    \b
    Example:
      storegw staff enable li --config /etc/storegw/storegw.toml
    """
    from gateway.staff.accounts import set_active

    write(_load(config_path), lambda c: set_active(c, name, True, "cli"))
    click.echo(f"staff {name} enabled")
