"""``storegw stock`` and ``storegw report``: ingredients and recipes, and the daily store report, from a shell.

Commands open the gateway's database directly (creating and migrating it on first use), so they work
with or without a running gateway; a running gateway notices a stock import (``stk_meta.rev``)
within about two seconds and reloads its ingredients and recipes.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from gateway.cli.db import database
from gateway.clikit import CONFIG, handle_errors, load_config
from gateway.core.errors import OrderingError
from gateway.store.db import immediate


@click.group("stock")
def stock() -> None:
    """Ingredients, stock counts and recipes (BOM) that drive 估清 (docs/store-health.md)."""


@stock.command("import")
@click.argument("file", type=click.Path(dir_okay=False, exists=True))
@CONFIG
@handle_errors
def stock_import(file: str, config_path: str) -> None:
    """Load ingredients (unit, safety, min/max/multiple, optional on_hand count) and replace the recipes.

    \b
    Example:
      storegw stock import stock.json --config /etc/storegw/storegw.toml
    """
    from gateway.stock.model import parse_doc
    from gateway.stock.service import write_doc

    try:
        doc = json.loads(Path(file).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise OrderingError(f"cannot read {file}: {err}") from err
    parsed = parse_doc(doc)
    with database(load_config(config_path)) as conn:
        immediate(conn, lambda c: write_doc(c, parsed))
    click.echo(f"imported {len(parsed.ingredients)} ingredients and {len(parsed.recipes)} recipes")


@stock.command("export")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="File to write (default: stdout).")
@CONFIG
@handle_errors
def stock_export(output: str | None, config_path: str) -> None:
    """Print the ingredients (with what is on hand) and recipes in the import format.

    \b
    Example:
      storegw stock export -o stock.json --config /etc/storegw/storegw.toml
    """
    from gateway.stock.service import export_doc

    with database(load_config(config_path)) as conn:
        text = json.dumps(export_doc(conn), ensure_ascii=False, indent=1)
    if output:
        Path(output).write_text(text + "\n", encoding="utf-8")
    else:
        click.echo(text)
