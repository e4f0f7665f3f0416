"""Domain services that plug into the gateway (printing, ordering, members, guests, ...).

Each entry is ``name -> "module:factory"``; ``factory(gateway)`` returns the service object
(with optional ``start()``, ``stop()`` and ``health()``). Missing modules are skipped so a
service can land in its own change.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

_LOGGER = logging.getLogger(__name__)

SERVICES: dict[str, str] = {
    "printing": "gateway.printing.service:build",
    "ordering": "gateway.ordering.service:build",
}


# Service-level config checks run by `storegw config check` and at start: "module:function(cfg)".
CONFIG_CHECKS: tuple[str, ...] = (
    "gateway.printing.service:check_config",
)


def _resolve(target: str) -> Any:
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name and module_name.startswith(err.name):
            return None
        raise
    return getattr(module, attr, None)


def check_config(cfg: Any) -> None:
    """Run every service's config checks (raise ConfigError naming the key and the fix)."""
    for target in CONFIG_CHECKS:
        fn = _resolve(target)
        if fn is not None:
            fn(cfg)


def build_all(gw: Any) -> dict[str, Any]:
    """Build and start every available service, in order."""
    out: dict[str, Any] = {}
    for name, target in SERVICES.items():
        module_name, _, attr = target.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            if err.name and module_name.startswith(err.name):
                continue
            raise
        svc = getattr(module, attr)(gw)
        out[name] = svc
        gw.services = out  # later services may look up earlier ones
        start = getattr(svc, "start", None)
        if start is not None:
            start()
        stop = getattr(svc, "stop", None)
        if stop is not None:
            gw.on_stop(stop)
    return out
