"""What HQ sees: a subscriber that prints, and a collector that dedupes by ``id`` (tests, benches).

The collector applies the HQ contract (C4): keep the highest ``rev`` per summary ``id``, count
each alert ``id`` once.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho

from gateway.core.errors import UplinkError
from gateway.spine.mqtt import configure_auth, new_client


class HQCollector:
    """Subscribe to every store topic under a prefix and keep deduplicated state."""

    def __init__(self, host: str, port: int, prefix: str = "storegw/v1", store: str = "+", *,
                 on_message: Callable[[str, Any], None] | None = None, client_id: str = "",
                 tls: bool = False, ca_file: str = "", persistent: bool = False) -> None:
        self.host, self.port = host, port
        self.topic = f"{prefix.rstrip('/')}/{store}/#"
        self.on_message_cb = on_message
        self.lock = threading.Lock()
        self.raw: list[tuple[str, Any]] = []
        self.summaries: dict[str, dict[str, Any]] = {}
        self.alerts: dict[str, dict[str, Any]] = {}
        self.other: dict[str, list[Any]] = {}
        self.received = 0
        self.invalid = 0
        self.subscribed = threading.Event()
        # persistent: a durable HQ consumer (clean_session false) that misses nothing across reconnects
        self.client = new_client(client_id, clean=not persistent)
        self.client.reconnect_delay_set(0.2, 2)
        configure_auth(self.client, tls=tls, ca_file=ca_file, section="hq")
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a, **k: self.subscribed.set()

    def _on_connect(self, client: paho.Client, userdata: object, flags: object, rc: object,
                    props: object = None) -> None:
        client.subscribe(self.topic, qos=1)

    def _on_message(self, client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        try:
            doc = json.loads(msg.payload)
        except ValueError:
            self.invalid += 1
            return
        with self.lock:
            self.received += 1
            self.raw.append((msg.topic, doc))
            kind = msg.topic.rsplit("/", 1)[-1]
            if msg.topic.endswith("/telemetry/summary"):
                for item in doc:
                    have = self.summaries.get(item["id"])
                    if have is None or item["rev"] > have["rev"]:
                        self.summaries[item["id"]] = item
            elif kind == "alerts":
                self.alerts.setdefault(doc["id"], doc)
            else:
                key = msg.topic.split("/", 3)[-1] if msg.topic.count("/") >= 3 else kind
                self.other.setdefault(key, []).append(doc)
        if self.on_message_cb is not None:
            self.on_message_cb(msg.topic, doc)

    def start(self, timeout: float = 10.0) -> HQCollector:
        """Connect, subscribe and process messages in the background."""
        try:
            self.client.connect(self.host, self.port, keepalive=30)
        except OSError as err:
            raise UplinkError(f"cannot reach HQ broker {self.host}:{self.port}: {err}") from err
        self.client.loop_start()
        if not self.subscribed.wait(timeout):
            raise UplinkError(f"no subscription at {self.host}:{self.port} within {timeout:.0f}s")
        return self

    def stop(self) -> None:
        """Disconnect."""
        self.client.disconnect()
        self.client.loop_stop()

    def summary_count(self, metric: str | None = None) -> int:
        """Sum ``count`` over the highest rev of every summary id (optionally one metric)."""
        with self.lock:
            return sum(s["count"] for s in self.summaries.values() if metric is None or s["metric"] == metric)

    def alert_states(self, rule: str | None = None) -> list[dict[str, Any]]:
        """Return deduplicated alert messages, optionally for one rule."""
        with self.lock:
            return [a for a in self.alerts.values() if rule is None or a["rule"] == rule]


def keep_checkpoint(directory: Path, topic: str, doc: Any) -> str | None:
    """Keep a store's audit checkpoint as HQ: ``DIR/STORE.json`` is the latest (by length),
    ``DIR/STORE.jsonl`` every one received (deduplicated by ``id``). Return a warning line for a
    checkpoint that goes backwards or forks (same length, another head), else None.

    ``storegw audit verify --checkpoint DIR/STORE.json`` (or the .jsonl) checks the store's chain
    against them.
    """
    parts = topic.split("/")
    if len(parts) < 4 or not isinstance(doc, dict) or not isinstance(doc.get("length"), int):
        return f"# ignored a malformed checkpoint on {topic}"
    store = parts[-3]
    directory.mkdir(parents=True, exist_ok=True)
    history = directory / f"{store}.jsonl"
    seen = [json.loads(line) for line in history.read_text().splitlines() if line.strip()] \
        if history.exists() else []
    if any(m.get("id") == doc.get("id") for m in seen):
        return None  # a redelivery
    warning = None
    for m in seen:
        if m.get("length") == doc["length"] and m.get("head") != doc.get("head"):
            warning = f"# FORK: store {store} signed two heads for length {doc['length']}"
    with history.open("a") as fh:
        fh.write(json.dumps(doc, separators=(",", ":")) + "\n")
    latest = directory / f"{store}.json"
    current = json.loads(latest.read_text()) if latest.exists() else None
    if current is not None and doc["length"] < current.get("length", 0):
        return warning or (f"# store {store} sent a checkpoint of length {doc['length']} after one of "
                           f"{current['length']}: its chain went backwards (kept the longer one)")
    tmp = latest.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=1) + "\n")
    os.replace(tmp, latest)
    return warning


def watch(host: str, port: int, prefix: str, store: str, *, tls: bool, ca_file: str, count: int,
          out: Callable[[str], None], checkpoints: str = "") -> None:
    """Print each message (topic and compact JSON) until Ctrl-C or ``count`` messages; with
    ``checkpoints`` a directory, keep each store's audit checkpoints there (``keep_checkpoint``)."""
    done = threading.Event()
    seen = [0]

    def show(topic: str, doc: Any) -> None:
        out(f"{topic} {json.dumps(doc, ensure_ascii=False, separators=(',', ':'))}")
        if checkpoints and topic.endswith("/audit/checkpoint"):
            warning = keep_checkpoint(Path(checkpoints), topic, doc)
            if warning:
                out(warning)
        seen[0] += 1
        if count and seen[0] >= count:
            done.set()

    collector = HQCollector(host, port, prefix, store, on_message=show, tls=tls, ca_file=ca_file)
    collector.start()
    out(f"# watching {collector.topic} on {host}:{port}")
    try:
        while not done.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        collector.stop()
