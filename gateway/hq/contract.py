"""What HQ accepts from a store: topic parsing, JSON Schema validation and rows to upsert.

Every message a consumer reads is checked against the published JSON Schema of its topic kind
(``docs/schemas``, shipped in the package as ``gateway/hq/schemas``); a kind without a published
schema (a store newer than HQ, e.g. ``P/reports/daily`` before its schema lands) is held to the
envelope every upstream message keeps (an object, or an array of objects, each with a string
``id`` and ``ts``) and stored generically by its kind. Whatever fails goes to the dead-letter table
with the reason: nothing is dropped silently.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

SCHEMA_DIR = Path(__file__).resolve().parent / "schemas"
MAX_REV = 2**63 - 1

# The envelope of a kind without a published schema.
ENVELOPE = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$defs": {"item": {"type": "object", "required": ["id", "ts"],
                       "properties": {"id": {"type": "string", "minLength": 1, "maxLength": 512},
                                      "ts": {"type": "string"}, "rev": {"type": "integer", "minimum": 0}}}},
    "anyOf": [{"$ref": "#/$defs/item"}, {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/item"}}],
}


class Invalid(ValueError):
    """A message HQ cannot accept; the text is the dead-letter reason."""


@dataclass(frozen=True, slots=True)
class Row:
    """One item to upsert: a row per ``id``, kept at its highest ``rev``."""

    id: str
    store: str
    kind: str
    rev: int
    ts: datetime
    payload: dict[str, Any]


@dataclass(slots=True)
class Parsed:
    """What one MQTT message becomes."""

    store: str
    kind: str
    rows: list[Row] = field(default_factory=list)
    status: dict[str, Any] | None = None  # P/status: the store's state
    manifest: dict[str, Any] | None = None  # P/manifest: ids and revs sent in a window
    ignored: bool = False  # not for the sink (HQ's own commands to stores)


def parse_time(value: Any, what: str) -> datetime:
    """Parse an ISO-8601 time (``Z`` or an offset) into an aware datetime, or raise Invalid."""
    if not isinstance(value, str):
        raise Invalid(f"{what} is not a string")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise Invalid(f"{what} {value[:40]!r} is not an ISO-8601 time") from None
    if parsed.tzinfo is None:
        raise Invalid(f"{what} {value[:40]!r} has no UTC offset")
    return parsed.astimezone(UTC)


class Contract:
    """Validates and splits messages under ``prefix`` (``storegw/v1``) into rows."""

    def __init__(self, prefix: str = "storegw/v1", schema_dir: Path = SCHEMA_DIR) -> None:
        self.prefix = prefix.strip("/")
        self.schema_dir = schema_dir
        self._validators: dict[str, Any] = {}
        self._lock = threading.Lock()

    def validator(self, kind: str) -> Any:
        """Return the JSON Schema validator of a topic kind (``telemetry/summary`` → telemetry-summary.json)."""
        with self._lock:
            found = self._validators.get(kind)
            if found is None:
                import jsonschema

                path = self.schema_dir / f"{kind.replace('/', '-')}.json"
                schema = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else ENVELOPE
                found = self._validators[kind] = jsonschema.Draft202012Validator(
                    schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
            return found

    def split_topic(self, topic: str) -> tuple[str, str]:
        """Return (store, kind) of ``PREFIX/STORE/KIND...``, or raise Invalid."""
        head = self.prefix + "/"
        if not topic.startswith(head):
            raise Invalid(f"topic {topic[:120]!r} is not under {head}")
        store, _, kind = topic[len(head):].partition("/")
        if not store or not kind:
            raise Invalid(f"topic {topic[:120]!r} has no STORE/KIND")
        return store, kind

    def parse(self, topic: str, payload: bytes) -> Parsed:
        """Validate one message and return its rows; raise Invalid with the reason."""
        store, kind = self.split_topic(topic)
        if kind.startswith("cmd/"):
            return Parsed(store, kind, ignored=True)
        try:
            doc = json.loads(payload)
        except (ValueError, UnicodeDecodeError) as err:
            raise Invalid(f"not JSON: {err}") from None
        validator = self.validator(kind)
        errors = [] if validator.is_valid(doc) else sorted(validator.iter_errors(doc),
                                                           key=lambda e: list(e.absolute_path))
        if errors:
            where = "/".join(str(p) for p in errors[0].absolute_path) or "(top)"
            raise Invalid(f"{kind} schema: {errors[0].message[:300]} at {where}")
        out = Parsed(store, kind)
        items = doc if isinstance(doc, list) else [doc]
        for item in items:
            rev = item.get("rev", 0)
            if not isinstance(rev, int) or isinstance(rev, bool) or not 0 <= rev <= MAX_REV:
                raise Invalid(f"{kind}: rev {str(rev)[:30]} is not an integer in 0..2^63-1")
            out.rows.append(Row(str(item["id"]), store, kind, rev, parse_time(item.get("ts"), f"{kind} ts"), item))
        if kind == "status":
            out.status = doc
        elif kind == "manifest":
            if doc.get("store") != store:
                raise Invalid(f"manifest of store {str(doc.get('store'))[:40]!r} published under store {store!r}")
            out.manifest = doc
            out.rows = []  # manifests are kept in their own table
        return out
