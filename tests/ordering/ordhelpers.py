"""Helpers for the ordering tests (a module of its own: `conftest` names clash across folders)."""

from __future__ import annotations

import re
import socket
import time
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gateway.config import parse

TABLES = ("A1", "A2", "B1")


def free_port() -> int:
    """Return a free TCP port on loopback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(pred: Callable[[], Any], timeout: float = 30.0, interval: float = 0.05, what: str = "condition") -> Any:
    """Poll ``pred`` until it returns a truthy value (a bounded wait, not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(interval)


def gateway_config(tmp_path: Path, extra: str = "", store_id: str = "sh-001") -> Any:
    """Return a config for an in-process gateway (no brokers needed: uplink off)."""
    text = f"""
[store]
id = "{store_id}"
data_dir = "{(tmp_path / 'data').as_posix()}"

[local_mqtt]
port = {free_port()}

[uplink]
enabled = false

[web]
listen = "127.0.0.1:{free_port()}"
public_host = "order.test"
{extra}
"""
    return parse(tomllib.loads(text))


class Diner:
    """A phone at a table, driven through the no-JS forms of the test client."""

    def __init__(self, client: Any, svc: Any, table: str, d: str = "phone01", lang: str = "en") -> None:
        self.client, self.svc, self.table, self.d, self.lang = client, svc, table, d, lang
        self.token = svc.token_for(table)

    @property
    def url(self) -> str:
        return f"/t/{self.token}?d={self.d}&lang={self.lang}"

    def page(self) -> Any:
        return self.client.get(self.url)

    def form(self, **fields: Any) -> dict[str, Any]:
        return {"csrf": self.svc.form_token(self.token), "d": self.d, "lang": self.lang, **fields}

    def add(self, item: str, qty: int = 1, note: str = "", extra: dict[str, str] | None = None, **opts: Any) -> Any:
        data = self.form(item=item, qty=str(qty), note=note, **(extra or {}))
        for group, choice in opts.items():
            data[f"opt_{group}"] = choice
        return self.client.post(f"/t/{self.token}/add", data=data)

    def idem(self) -> str:
        html = self.page().get_data(as_text=True)
        m = re.search(r'name="idem" value="([^"]+)"', html)
        assert m, "no send form on the page"
        return m.group(1)

    def send(self, idem: str | None = None) -> Any:
        return self.client.post(f"/t/{self.token}/submit", data=self.form(idem=idem or self.idem()))

    def state(self) -> dict[str, Any]:
        return self.client.get(f"/t/{self.token}/state.json").get_json()


