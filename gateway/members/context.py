"""What the members helpers read from the members service (they never import the service)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from zoneinfo import ZoneInfo

    from gateway.config import Config, MembersConfig
    from gateway.privacy.fields import FieldCipher


class MembersContext(Protocol):
    """The members state a helper may read while it writes in the caller's transaction."""

    cfg: Config
    mcfg: MembersConfig
    store_id: str
    secret: bytes
    tz: ZoneInfo
    alerts: Any

    @property
    def cipher(self) -> FieldCipher:
        """The field cipher (phone, allergies)."""
        ...
