"""One error tree for storegw; stdlib only.

Third-party exceptions never leave the package that imported the library: they are
converted to these errors with readable text (``raise DeviceUnavailable(...) from err``).
"""

from __future__ import annotations


class GatewayError(Exception):
    """Base of every error storegw raises on purpose; the CLI prints it as one line."""

    exit_code = 1


class ConfigError(GatewayError):
    """Invalid configuration or usage: names the dotted key, the expectation and the fix."""

    exit_code = 2

    def __init__(self, message: str, *, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


class StoreError(GatewayError):
    """The encrypted database could not be used."""


class WrongKeyError(StoreError):
    """The database key does not open the database file (the file is left untouched)."""


class CorruptDatabaseError(StoreError):
    """The database file is not a database (or is damaged beyond use)."""


class UplinkError(GatewayError):
    """The HQ broker refused or dropped the connection."""


class DeviceError(GatewayError):
    """Base for device problems."""


class DeviceUnavailable(DeviceError):
    """The device's port could not be opened or went away."""


class ProtocolError(DeviceError, ValueError):
    """Bytes that do not form a valid frame for the family's protocol."""


class DecodeError(ProtocolError):
    """Input given to ``storegw decode`` is not valid for the KIND."""


class PaymentCardRefused(DeviceError):
    """A payment card was presented to a membership reader; its data is never kept."""


class OrderingError(GatewayError):
    """A diner or staff action that cannot be done, with a message fit to show."""

    def __init__(self, message: str, *, code: str = "invalid", status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


class GuestError(OrderingError):
    """A guest registration that cannot be saved; ``fields`` names what is missing or wrong."""

    def __init__(self, message: str, *, code: str = "invalid", status: int = 400,
                 fields: tuple[str, ...] = ()) -> None:
        super().__init__(message, code=code, status=status)
        self.fields = fields


class CardNumberRefused(OrderingError):
    """A payment card number typed into a free-text field: never stored, printed or shown (PCI DSS)."""

    def __init__(self) -> None:
        super().__init__("Please do not enter card numbers here; remove it and try again. "
                         "请勿在此填写银行卡号，请删除后重试。", code="card_number", status=400)
