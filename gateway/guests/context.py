"""What the guest helpers (registration, authority reports, retention, summaries) read from the service.

They take this small view instead of importing the service, so the service imports them and never
the other way round.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from gateway.config import Config, GuestsConfig
    from gateway.privacy.fields import FieldCipher
    from gateway.spine.alerts import AlertManager


class GuestsContext(Protocol):
    """The guest service's state a helper may read while it writes in the caller's transaction."""

    cfg: Config
    gcfg: GuestsConfig
    store_id: str
    cipher: FieldCipher
    alerts: AlertManager
    tz: dt.tzinfo
    drop_dir: Path
    ack_dir: Path

    def now(self) -> int:
        """The service's clock (epoch ms); tests advance it."""
        ...
