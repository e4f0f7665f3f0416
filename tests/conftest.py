"""Fixtures with real parts: Mosquitto brokers, config files, gateway processes (see realparts.py)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from realparts import CHROMIUM, CHROMIUM_ARGS, GatewayProcess, Mosquitto, config_text, free_port, validate_hq_message

_schema_problems: list[str] = []


@pytest.fixture
def chromium():
    """A headless Debian Chromium driven by Playwright (skips where Playwright is not installed)."""
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def mosquitto_factory(tmp_path: Path) -> Iterator[Callable[..., Mosquitto]]:
    """Start real Mosquitto brokers; all are stopped after the test."""
    brokers: list[Mosquitto] = []

    def make(name: str = "broker", *, persistence: bool = False) -> Mosquitto:
        b = Mosquitto(tmp_path / f"mosq-{name}-{len(brokers)}", persistence=persistence).start()
        brokers.append(b)
        return b

    yield make
    for b in brokers:
        b.stop()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Any]:
    """A started, empty encrypted store in ``tmp_path / "data"`` (closed after the test)."""
    from gateway.store import open_store

    s = open_store(tmp_path / "data")
    s.start()
    yield s
    s.close()


@pytest.fixture
def broker(mosquitto_factory: Callable[..., Mosquitto]) -> Mosquitto:
    """One real Mosquitto broker for the test."""
    return mosquitto_factory("local")


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[..., Path]:
    """Write a config file for real brokers; returns its path."""
    def write(*, local_port: int, hq_port: int, web_port: int | None = None, name: str = "storegw.toml",
              **kw: Any) -> Path:
        path = tmp_path / name
        path.write_text(config_text(tmp_path / "data", local_port=local_port, hq_port=hq_port,
                                    web_port=web_port or free_port(), **kw))
        return path
    return write


@pytest.fixture
def gateway_process(tmp_path: Path) -> Iterator[Callable[[Path], GatewayProcess]]:
    """Start real `storegw run` processes; all are stopped after the test."""
    procs: list[GatewayProcess] = []

    def make(config: Path) -> GatewayProcess:
        gp = GatewayProcess(config, tmp_path / f"gateway-{len(procs)}.log")
        procs.append(gp)
        return gp

    yield make
    for p in procs:
        p.stop()


@pytest.fixture(autouse=True)
def _validate_upstream_messages(monkeypatch):
    """Check every message any HQCollector receives against its schema; fail the test if one is off."""
    from gateway.hq.watch import HQCollector

    original = HQCollector._on_message

    def checked(self, client, userdata, msg):
        try:
            doc = json.loads(msg.payload)
        except ValueError:
            _schema_problems.append(f"{msg.topic}: not JSON")
        else:
            problem = validate_hq_message(msg.topic, doc)
            if problem:
                _schema_problems.append(problem)
        original(self, client, userdata, msg)

    def on_enqueue(topic, payload):
        problem = validate_hq_message(topic, payload)
        if problem:
            _schema_problems.append(f"(enqueued) {problem}")

    import gateway.store.outbox

    monkeypatch.setattr(HQCollector, "_on_message", checked)
    monkeypatch.setattr(gateway.store.outbox, "on_enqueue", on_enqueue)
    _schema_problems.clear()
    yield
    problems = list(_schema_problems)
    _schema_problems.clear()
    assert not problems, "upstream messages that do not match docs/schemas:\n" + "\n".join(problems[:10])
