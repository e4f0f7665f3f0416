"""What a domain service is given by the gateway: its config, the store, the device hub and alerts."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway.config import Config
from gateway.privacy.service import KeyService
from gateway.spine.alerts import AlertManager
from gateway.spine.hub import Hub
from gateway.store import Store


@dataclass(frozen=True)
class ServiceContext:
    """The parts of a running gateway a domain service may use (built by ``gateway.app``).

    ``services`` holds the domain services built before this one, by name (printing before
    ordering), so a service names what it depends on instead of reaching into the gateway.
    ``privacy`` holds the keys: ``privacy.cipher`` (a ``FieldCipher``) encrypts and decrypts the
    fields declared in ``gateway/privacy/fields.py`` and computes their blind indexes.
    """

    cfg: Config
    store: Store
    hub: Hub
    alerts: AlertManager
    services: Mapping[str, Any] = field(default_factory=dict)
    privacy: KeyService | None = None  # ``privacy.cipher`` encrypts fields declared in gateway/privacy/fields.py


@dataclass(frozen=True)
class Periodic:
    """A service's periodic job, run on the gateway's scheduler (``gateway/jobs.py``)."""

    id: str
    every_s: float
    fn: Callable[[], None]
