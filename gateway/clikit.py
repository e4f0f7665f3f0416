"""What every `storegw` command shares: error handling, the --config option, config loading.

Kept apart from gateway/cli.py so command modules in other packages can import it without a
circular import (gateway.cli imports them to register their commands).
"""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from typing import Any

import click

from gateway.errors import GatewayError

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
            click.echo(f"storegw: error: {err}", err=True)
            sys.exit(err.exit_code)
    return wrapper


def load_config(path: str) -> Any:
    """Load and fully validate a config file (device options and service checks included)."""
    from devices import registry
    from gateway import config, services

    cfg = registry.validate(config.load(path))
    services.check_config(cfg)
    return cfg
