"""What every `storegw` command shares: error handling, the --config option, config loading.

Kept apart from gateway/cli.py so command modules in other packages can import it without a
circular import (gateway.cli imports them to register their commands).
"""

from __future__ import annotations

import functools
import json
import logging
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import click

from gateway.core import pii
from gateway.core.errors import GatewayError

CONFIG = click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False),
                      help="The gateway's TOML configuration file.")


def handle_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn GatewayError into one line on stderr and its exit code; tracebacks only with --verbose."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except GatewayError as err:
            if logging.getLogger().isEnabledFor(logging.DEBUG):
                raise
            click.echo(f"storegw: error: {pii.redact(str(err))[0]}", err=True)
            sys.exit(err.exit_code)
    return wrapper


def load_config(path: str) -> Any:
    """Load and fully validate a config file (device options and cross-device checks included)."""
    from gateway import config

    return config.load(path)


def db_key(cfg: Any, *, create: bool = False) -> Any:
    """The database key of this config's board, through the keyring (``gateway.privacy.keys``), for
    commands that open the database themselves (backup, restore, print, menu...)."""
    from gateway.privacy.keys import current_db_key

    return current_db_key(cfg.data_path, cfg.keys_path, cfg.store.key_file, create=create)


def field_cipher(cfg: Any) -> Any:
    """The keyring's field cipher (``gateway.privacy.fields.FieldCipher``) for commands that write
    field-encrypted values themselves (``storegw staff add`` of a manager: the TOTP secret)."""
    from gateway.privacy.fields import FieldCipher
    from gateway.privacy.keys import Keyring

    return FieldCipher(Keyring.open(cfg.keys_path, create=True))


def health_url(cfg: Any) -> str:
    """Return the running gateway's health URL on this board, from ``web.listen``."""
    host, _, port = cfg.web.listen.rpartition(":")
    if host.strip("[]") in ("", "0.0.0.0", "::"):  # noqa: S104 - a listen address, not a bind
        host = "127.0.0.1"
    return f"http://{host}:{port}/api/v1/health"


def get_health(url: str, timeout: float = 5.0) -> dict[str, Any]:
    """GET the health document (a 503 while failing still carries it); OSError when nobody answers,
    ValueError when what answers is not storegw's JSON."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - the local health URL
            return json.load(resp)
    except urllib.error.HTTPError as err:
        return json.load(err)
