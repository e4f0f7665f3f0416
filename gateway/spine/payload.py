"""Telemetry payloads: validate one ``devices/{id}/telemetry`` or ``/status`` message (C3).

Pure functions on bytes, stdlib only, so the ingest process (``gateway.ingest_proc``) can parse
without importing the store or the rules.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
from typing import Any

from gateway.core.models import DEVICE_ID_RE, Reading

_MIN_TS = 946684800000  # 2000-01-01
_MAX_TS = 4102444800000  # 2100-01-01


class InvalidPayload(ValueError):
    """A telemetry message that cannot be used; ``reason`` is a short counter name."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(detail or reason)
        self.reason = reason


def _reject_constant(name: str) -> float:
    raise InvalidPayload("non_finite", f"{name} is not a number")


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def _loads(payload: bytes | str) -> Any:
    """Do ``json.loads(payload, parse_constant=_reject_constant)`` without building a decoder per call."""
    if isinstance(payload, (bytes, bytearray)):
        # An object starting "{" then a non-zero byte is UTF-8 (UTF-16/32 put zero bytes there,
        # a BOM comes first): skip json.detect_encoding, which is Python, on almost every message.
        utf8 = payload[:1] == b"{" and payload[1:2] != b"\x00"
        return _DECODER.decode(payload.decode("utf-8" if utf8 else json.detect_encoding(payload), "surrogatepass"))
    return json.loads(payload, parse_constant=_reject_constant)


def _parse_ts(value: Any) -> int:
    if isinstance(value, bool):
        raise InvalidPayload("bad_ts", "ts must be epoch milliseconds or ISO-8601")
    if isinstance(value, (int, float)):
        ts = int(value)
    elif isinstance(value, str):
        try:
            d = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise InvalidPayload("bad_ts", "ts is not ISO-8601") from None
        if d.tzinfo is None:
            d = d.replace(tzinfo=dt.UTC)
        ts = int(d.timestamp() * 1000)
    else:
        raise InvalidPayload("bad_ts", "ts must be epoch milliseconds or ISO-8601")
    if not _MIN_TS <= ts <= _MAX_TS:
        raise InvalidPayload("bad_ts", "ts out of range (epoch milliseconds expected)")
    return ts


def parse(device: str, payload: bytes, received_ms: int, max_payload: int = 65536) -> Reading:
    """Turn one ``devices/{id}/telemetry`` payload into a Reading or raise InvalidPayload."""
    if not DEVICE_ID_RE.match(device):
        raise InvalidPayload("bad_device_id")
    if len(payload) > max_payload:
        raise InvalidPayload("oversize", f"{len(payload)} bytes > {max_payload}")
    try:
        obj = _loads(payload)
    except InvalidPayload:
        raise
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise InvalidPayload("not_json") from None
    if not isinstance(obj, dict):
        raise InvalidPayload("not_object")
    ts = _parse_ts(obj["ts"]) if "ts" in obj else received_ms
    metrics: dict[str, float | bool] = {}
    for key, value in obj.items():
        if key == "ts":
            continue
        if isinstance(value, bool):
            metrics[key] = value
        elif isinstance(value, (int, float)):
            if not math.isfinite(value):
                raise InvalidPayload("non_finite")
            metrics[key] = float(value)
    if not metrics:
        raise InvalidPayload("no_metrics")
    digest = hashlib.blake2b(payload, digest_size=8).hexdigest()
    return Reading(device, ts, metrics, digest, stamped="ts" not in obj)


def parse_status(device: str, payload: bytes) -> str:
    """Turn one ``devices/{id}/status`` payload into ``online`` or ``offline`` or raise InvalidPayload."""
    if not DEVICE_ID_RE.match(device):
        raise InvalidPayload("bad_device_id")
    try:
        obj = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        raise InvalidPayload("not_json") from None
    state = obj.get("state") if isinstance(obj, dict) else None
    if state not in ("online", "offline"):
        raise InvalidPayload("bad_status")
    return state
