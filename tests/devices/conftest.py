"""Shared protocol test vectors and helpers for the device parser tests.

A test that takes a ``vec`` argument and carries ``@pytest.mark.vectors("file.json", ...)`` runs once
per matching entry, with the entry's ``id`` as the test id; ``vec["bytes"]`` is its input as bytes.
The vector files are the design docs' ``vectors/*.json``, found through ``$STOREGW_VECTORS``,
``tests/devices/vectors/`` or the shared docs folder next to the checkout. Without them those tests
are skipped with a reason, never silently.
"""

from __future__ import annotations

import json
import os
from functools import cache
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
_CANDIDATES = [HERE / "vectors", HERE.parent.parent.parent / "shared" / "vectors"]


def vectors_dir() -> Path | None:
    """Return the folder holding the vector files, or None if there is none."""
    env = os.environ.get("STOREGW_VECTORS")
    for candidate in ([Path(env)] if env else []) + _CANDIDATES:
        if (candidate / "README.md").exists():
            return candidate
    return None


@cache
def load(name: str) -> tuple[dict[str, Any], ...]:
    """Return the entries of one vector file (empty if the files are not available)."""
    folder = vectors_dir()
    if folder is None:
        return ()
    return tuple(json.loads((folder / name).read_text(encoding="utf-8")))


def as_bytes(entry: dict[str, Any]) -> bytes:
    """Return an entry's input as bytes (hex-decoded when ``input_encoding`` is hex)."""
    value = entry["input"]
    if isinstance(value, dict):  # ESC/POS: the request and the printer's reply
        return bytes.fromhex(value["command"] + value["response"])
    return bytes.fromhex(value) if entry.get("input_encoding") == "hex" else value.encode("utf-8")


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``vectors`` marker."""
    config.addinivalue_line(
        "markers", "vectors(*files, valid=None, kind=None): run the test once per entry of shared vector "
                   "files (argument `vec`); kind=None selects frame entries, kind='x' helper entries")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize ``vec`` from the test's ``vectors`` marker, one param per entry id."""
    marker = metafunc.definition.get_closest_marker("vectors")
    if marker is None or "vec" not in metafunc.fixturenames:
        return
    names = marker.args
    valid = marker.kwargs.get("valid")
    kinds = marker.kwargs.get("kind")
    kinds = kinds if isinstance(kinds, tuple) else (kinds,)
    params = []
    for name in names:
        for e in load(name):
            if (valid is None or e["valid"] is valid) and e.get("kind") in kinds:
                # With several files the id names the file too, e.g. "em4100:invalid-non-hex".
                test_id = e["id"] if len(names) == 1 else f"{name.removesuffix('.json')}:{e['id']}"
                params.append(pytest.param({**e, "bytes": as_bytes(e), "file": name}, id=test_id))
    if not params:
        reason = (f"no {', '.join(names)} entries match" if vectors_dir() else
                  "protocol vectors not found: set STOREGW_VECTORS to the design docs' vectors/ folder")
        params = [pytest.param(None, id="no-vectors", marks=pytest.mark.skip(reason=reason))]
    metafunc.parametrize("vec", params)


def subset_mismatches(actual: dict[str, Any], expected: dict[str, Any]) -> dict[str, Any]:
    """Return the expected keys whose values differ in ``actual`` (nested dicts compared key-wise)."""
    out: dict[str, Any] = {}
    for key, want in expected.items():
        got = actual.get(key, "<missing>")
        if isinstance(want, dict) and isinstance(got, dict):
            inner = subset_mismatches(got, want)
            if inner:
                out[key] = inner
        elif got != want:
            out[key] = (got, want)
    return out


def feed_in_pieces(proto: Any, stream: bytes, cuts: list[int]) -> list[Any]:
    """Feed ``stream`` to a protocol object in pieces cut at ``cuts``; return all it produced."""
    bounds = [0, *sorted(c for c in cuts if c <= len(stream)), len(stream)]
    pieces = [stream[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]
    return [item for piece in pieces for item in proto.data_received(piece)]


# Session-scoped so that Hypothesis tests may use them (test modules do not import conftest).
@pytest.fixture(scope="session")
def mismatches() -> Any:
    """Provide :func:`subset_mismatches`."""
    return subset_mismatches


@pytest.fixture(scope="session")
def feed() -> Any:
    """Provide :func:`feed_in_pieces`."""
    return feed_in_pieces
