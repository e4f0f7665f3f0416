"""``storegw print`` and ``storegw jobs``: the print queue from a shell.

``print`` writes the job straight into the gateway's database (its own connection, one
``BEGIN IMMEDIATE`` transaction; SQLite serialises it with the running gateway's writer), so it
works even when the web server is down; the running gateway's print workers pick new rows up
within about a second. The job id is printed only after the commit: a printed id is a durable job.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any
from zoneinfo import ZoneInfo

import click

from gateway.clikit import handle_errors as _handle_errors
from gateway.clikit import load_config as _load
from gateway.core.errors import ConfigError, GatewayError
from gateway.store.db import immediate

_STATES = ("queued", "sent", "confirmed", "failed")


def _connect(cfg: Any) -> Any:
    """Open the gateway's database (never create one) and check that it has the print queue."""
    from gateway.clikit import db_key
    from gateway.store.db import DB_NAME, connect

    path = cfg.data_path / DB_NAME
    if not path.exists():
        raise GatewayError(f"no database at {path}: has `storegw run --config ...` been started with this "
                           f"config? (store.data_dir = {cfg.store.data_dir})")
    conn = connect(path, db_key(cfg))
    found = conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'print_jobs'").fetchone()
    if found is None:
        conn.close()
        raise GatewayError(f"the database {path} has no print queue yet: start the gateway once with this "
                           f"version")
    return conn


def enqueue_text(cfg: Any, *, text: str = "", doc: list[dict[str, Any]] | None = None,
                 printer: str | None = None, station: str | None = None, title: str = "",
                 source: str = "cli") -> str:
    """Commit a print job for a configured printer or station into the gateway's database; return its id."""
    from devices.escpos import render
    from gateway.printing import PrintError, queue

    target, station_name = queue.resolve_target(queue.printers_of(cfg.devices), printer, station)
    blocks = doc if doc is not None else render.text_doc(text, title=title)
    try:
        blocks = render.validate_doc(blocks)
    except render.DocumentError as err:
        raise PrintError(str(err)) from err
    conn = _connect(cfg)
    try:
        job_id = immediate(conn, lambda c: queue.insert_job(c, printer=target, station=station_name, doc=blocks,
                                                             source=source))
    finally:
        conn.close()
    return job_id


def _wait(cfg: Any, job_id: str, timeout: float) -> str:
    from gateway.printing import queue

    conn = _connect(cfg)
    try:
        deadline = time.monotonic() + timeout
        while True:
            job = queue.get_job(conn, job_id)
            state = job.state if job else "missing"
            if state in ("confirmed", "failed", "missing") or time.monotonic() > deadline:
                return state
            time.sleep(0.2)
    finally:
        conn.close()


@click.command("print")
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False),
              help="The gateway's TOML configuration file.")
@click.option("--printer", help="Printer id ([[devices]] id with kind = \"escpos\").")
@click.option("--station", help="Station instead of a printer: its first printer gets the job.")
@click.option("--title", default="", help="A large centred title line above the text.")
@click.option("--doc", "as_doc", is_flag=True,
              help="stdin is a JSON print document (a list of blocks), not text.")
@click.option("--wait", "wait_s", type=float, default=0, metavar="SECONDS",
              help="Wait up to this long for the printer to confirm; exit 1 if it did not.")
@_handle_errors
def print_cmd(config_path: str, printer: str | None, station: str | None, title: str, as_doc: bool,
              wait_s: float) -> None:
    """Put a job on the gateway's durable print queue (text on stdin); print the job id.

    The job is committed to the gateway's database; the running gateway prints it (status check,
    print, confirm) within about a second, or when the printer is fixed. Control bytes in the text
    are removed before printing.

    \b
    Examples:
      echo "Table 12: 2x 宫保鸡丁" | storegw print --config /etc/storegw/storegw.toml --printer kitchen
      storegw print --config /etc/storegw/storegw.toml --station bar --title "TEST" < note.txt
      echo '[{"t":"text","text":"Hi","size":"double"},{"t":"cut"}]' | \\
          storegw print --config /etc/storegw/storegw.toml --printer kitchen --doc --wait 30
    """
    cfg = _load(config_path)
    data = sys.stdin.buffer.read().decode("utf-8", errors="replace")
    if not data.strip():
        raise ConfigError("nothing to print: give the text on stdin, e.g. echo hello | storegw print ...")
    doc = None
    if as_doc:
        try:
            doc = json.loads(data)
        except ValueError as err:
            raise ConfigError(f"--doc: stdin is not JSON: {err}") from None
    job_id = enqueue_text(cfg, text=data, doc=doc, printer=printer, station=station, title=title)
    click.echo(job_id)
    if wait_s > 0:
        state = _wait(cfg, job_id, wait_s)
        if state != "confirmed":
            raise GatewayError(f"job {job_id} is {state}, not confirmed, after {wait_s:g}s "
                               f"(is the gateway running? see `storegw jobs` and `storegw status`)")


def format_jobs(jobs: list[dict[str, Any]], tz: str) -> str:
    """Render job summaries as an aligned table with local times."""
    from datetime import datetime

    zone = ZoneInfo(tz)
    rows = [("ID", "PRINTER", "STATE", "TRIES", "CREATED", "SOURCE", "NOTE")]
    for j in jobs:
        created = datetime.fromisoformat(j["created_at"].replace("Z", "+00:00")).astimezone(zone)
        note = "; ".join(n for n in (
            "REPRINT" if j["reprint"] else "",
            f"REROUTED from {j['rerouted_from']}" if j["rerouted_from"] else "",
            j["error"] or "") if n)
        source = j["source"] + (f":{j['source_id']}" if j["source_id"] else "")
        rows.append((j["id"], j["printer"], j["state"], str(j["attempts"]),
                     created.strftime("%m-%d %H:%M:%S"), source, note))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r[:-1], widths, strict=True)) + "  " + r[-1]
                     for r in rows).rstrip()


@click.command("jobs")
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False),
              help="The gateway's TOML configuration file.")
@click.option("--printer", help="Only this printer's jobs.")
@click.option("--state", type=click.Choice(_STATES), help="Only jobs in this state.")
@click.option("--limit", type=int, default=50, show_default=True, help="Newest jobs to show.")
@click.option("--json", "as_json", is_flag=True, help="One JSON array of jobs (no contents).")
@_handle_errors
def jobs_cmd(config_path: str, printer: str | None, state: str | None, limit: int, as_json: bool) -> None:
    """List print jobs, newest first, with their states (queued, sent, confirmed, failed).

    \b
    Examples:
      storegw jobs --config /etc/storegw/storegw.toml
      storegw jobs --config /etc/storegw/storegw.toml --printer kitchen --state queued
      storegw jobs --config /etc/storegw/storegw.toml --json
    """
    from gateway.printing import queue

    cfg = _load(config_path)
    conn = _connect(cfg)
    try:
        jobs = [j.summary() for j in queue.list_jobs(conn, limit=limit, printer=printer, state=state)]
    finally:
        conn.close()
    if as_json:
        click.echo(json.dumps(jobs, ensure_ascii=False, indent=2))
    elif jobs:
        click.echo(format_jobs(jobs, cfg.store.timezone))
    else:
        click.echo("no print jobs")
