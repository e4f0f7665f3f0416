"""``storegw hq consume``: one member of a shared subscription, from the HQ broker into HQ's database.

Run as many as needed: each joins ``$share/GROUP/PREFIX/+/#`` (MQTT 5), so the broker hands each
message to one member. A member reads messages with manual acknowledgements, validates each
against its published JSON Schema (``gateway.hq.contract``), writes a batch (up to ``batch``
messages or ``flush_s`` seconds) in one transaction (``gateway.hq.sink``) and only then sends the
PUBACKs: a member killed mid-batch has acknowledged nothing of it, and the broker re-sends it
(EMQX re-dispatches to another member; Mosquitto may lose it, which gap repair covers).

Gap repair: each store publishes ``P/manifest`` (the ids and revs the broker acknowledged in a
window). Every ``repair_every`` seconds a member compares due manifests with the database and
publishes ``P/cmd/resend`` to the stores with something missing (``Sink.repair``); manifests are
locked while checked, so two members never ask twice for the same window.

Members use a fixed client id, Clean Start = false and a session expiry (120 s), so a restarted
member resumes its session and its unacknowledged window. It also subscribes (not shared) to
``PREFIX/+/status``: retained messages are never sent to shared subscriptions, and the fleet view
needs every store's retained status.
"""

from __future__ import annotations

import collections
import json
import logging
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from gateway.core.errors import UplinkError
from gateway.hq.contract import Contract, Invalid
from gateway.hq.sink import Incoming, Resend, Sink, WriteResult, iso
from gateway.spine.mqtt import configure_auth, describe_rc, fast_property_decoding, new_client

_LOGGER = logging.getLogger(__name__)

SESSION_EXPIRY_S = 120
RECEIVE_MAXIMUM = 2000  # messages the broker may have in flight to one member (batches are up to `batch`)
RESEND_CHUNK = 500  # ids per P/cmd/resend message
BATCH_BYTES = 1 << 20  # a batch stops at this much payload: a backlog of 100-item messages makes ~4,000-row batches
LATENCY_BUCKETS_MS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 30000)


@dataclass(slots=True)
class _Pending:
    msg: Incoming
    mid: int
    qos: int
    gen: int  # the connection it came on: a PUBACK belongs on that connection only


class Stats:
    """The member's counters (written to ``hq_consumers`` for ``/metrics`` and the bench)."""

    def __init__(self) -> None:
        self.messages = self.rows = self.written = self.absorbed = self.dead = self.batches = 0
        self.manifests = self.resend_ids = self.resend_manifests = 0
        self.lag_ms = 0
        self.latency = [0] * (len(LATENCY_BUCKETS_MS) + 1)
        self.latency_sum_ms = 0.0
        self._rate_at, self._rate_n, self.rate = time.monotonic(), 0, 0.0

    def batch(self, res: WriteResult, n: int, ms: float, lag_ms: int) -> None:
        """Count one committed batch of ``n`` messages that took ``ms``."""
        self.messages += n
        self.rows += res.rows
        self.written += res.written
        self.absorbed += res.absorbed
        self.dead += res.dead
        self.manifests += res.manifests
        self.batches += 1
        self.lag_ms = lag_ms
        self.latency_sum_ms += ms
        i = next((i for i, b in enumerate(LATENCY_BUCKETS_MS) if ms <= b), len(LATENCY_BUCKETS_MS))
        self.latency[i] += 1

    def snapshot(self) -> dict[str, Any]:
        """Return the counters as JSON-able data, with messages/s since the last snapshot."""
        now = time.monotonic()
        if now > self._rate_at:
            self.rate = (self.messages - self._rate_n) / (now - self._rate_at)
        self._rate_at, self._rate_n = now, self.messages
        return {"messages": self.messages, "rows": self.rows, "written": self.written, "absorbed": self.absorbed,
                "dead_letters": self.dead, "batches": self.batches, "manifests": self.manifests,
                "resend_ids": self.resend_ids, "resend_manifests": self.resend_manifests, "lag_ms": self.lag_ms,
                "messages_per_s": round(self.rate, 2), "upsert_ms_buckets": list(LATENCY_BUCKETS_MS),
                "upsert_ms_counts": list(self.latency), "upsert_ms_sum": round(self.latency_sum_ms, 3)}


def percentile_ms(buckets: list[int], counts: list[int], q: float) -> float:
    """The upper bound of the latency bucket holding quantile ``q`` (as Prometheus' histogram_quantile, roughly)."""
    total = sum(counts)
    if not total:
        return 0.0
    seen = 0
    for i, n in enumerate(counts):
        seen += n
        if seen >= q * total:
            return float(buckets[i]) if i < len(buckets) else float(buckets[-1]) * 2
    return float(buckets[-1]) * 2


class Consumer:
    """A shared-subscription member writing batches to a ``Sink``."""

    def __init__(self, sink: Sink, host: str, port: int, *, group: str = "hq", prefix: str = "storegw/v1",
                 client_id: str = "", batch: int = 500, flush_s: float = 0.2, repair_every: float = 2.0,
                 stats_every: float = 2.0, keepalive: int = 30, tls: bool = False, ca_file: str = "",
                 username: str = "", password_file: str = "") -> None:
        self.sink = sink
        self.host, self.port = host, port
        self.group = group
        self.contract = Contract(prefix)
        self.prefix = self.contract.prefix
        self.client_id = client_id or f"hq-{group}-{socket.gethostname()}"
        self.batch_max = max(1, batch)
        self.flush_s = flush_s
        self.repair_every = repair_every
        self.stats_every = stats_every
        self.keepalive = keepalive
        self.stats = Stats()
        self.connected = threading.Event()
        self._stop = threading.Event()
        self._queue: collections.deque[_Pending] = collections.deque()
        self._arrived = threading.Condition()
        self._gen = 0
        fast_property_decoding()
        self.client = new_client(self.client_id, clean=False, protocol="5", manual_ack=True, read_buffer=True)
        configure_auth(self.client, tls=tls, ca_file=ca_file, username=username, password_file=password_file,
                       section="hq")
        self.client.reconnect_delay_set(1, 30)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message

    # -- paho's thread
    def _on_connect(self, client: paho.Client, userdata: object, flags: object, rc: object,
                    props: object = None) -> None:
        if getattr(rc, "is_failure", False):
            _LOGGER.warning("HQ broker refused %s: %s", self.client_id, describe_rc(rc))
            return
        with self._arrived:
            self._gen += 1
        client.subscribe([(f"$share/{self.group}/{self.prefix}/+/#", SubscribeOptions(qos=1)),
                          (f"{self.prefix}/+/status", SubscribeOptions(qos=1))])
        self.connected.set()
        _LOGGER.info("Consumer %s joined $share/%s/%s/+/# on %s:%s", self.client_id, self.group, self.prefix,
                     self.host, self.port)

    def _on_disconnect(self, client: paho.Client, userdata: object, flags: object, rc: object,
                       props: object = None) -> None:
        self.connected.clear()
        _LOGGER.warning("Consumer %s lost the broker: %s", self.client_id, describe_rc(rc))

    def _on_message(self, client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        item = Incoming(msg.topic, bytes(msg.payload), int(time.time() * 1000))
        with self._arrived:
            self._queue.append(_Pending(item, msg.mid, msg.qos, self._gen))
            if len(self._queue) >= self.batch_max:
                self._arrived.notify()

    # -- lifecycle
    def start(self, timeout: float = 10.0) -> Consumer:
        """Connect (Clean Start false, session expiry) and start paho's network thread."""
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = SESSION_EXPIRY_S
        props.ReceiveMaximum = RECEIVE_MAXIMUM
        try:
            self.client.connect(self.host, self.port, keepalive=self.keepalive, clean_start=False, properties=props)
        except OSError as err:
            raise UplinkError(f"cannot reach the HQ broker {self.host}:{self.port}: {err}") from err
        self.client.loop_start()
        if not self.connected.wait(timeout):
            raise UplinkError(f"no connection to {self.host}:{self.port} within {timeout:.0f}s")
        return self

    def stop(self) -> None:
        """Write and acknowledge what was read, then disconnect (the session stays for a restart)."""
        self._flush_all()
        self.client.disconnect()
        self.client.loop_stop()

    def run(self, stop: threading.Event) -> None:
        """Write batches until ``stop`` is set; also runs gap repair and publishes the counters."""
        self._stop = stop
        next_repair = next_stats = time.monotonic()
        while not stop.is_set():
            batch = self._take(self.flush_s)
            if batch:
                self._commit(batch)
            now = time.monotonic()
            if now >= next_repair:
                next_repair = now + self.repair_every
                self._repair()
            if now >= next_stats:
                next_stats = now + self.stats_every
                self._publish_stats()
        self._publish_stats()

    # -- the worker
    def _take(self, wait: float) -> list[_Pending]:
        with self._arrived:
            if len(self._queue) < self.batch_max:
                self._arrived.wait(wait)
            out: list[_Pending] = []
            size = 0
            while self._queue and len(out) < self.batch_max and size < BATCH_BYTES:
                item = self._queue.popleft()
                size += len(item.msg.payload)
                out.append(item)
            return out

    def _flush_all(self) -> None:
        while True:
            batch = self._take(0)
            if not batch:
                return
            self._commit(batch)

    def _parse(self, item: Incoming) -> None:
        try:
            item.store = self.contract.split_topic(item.topic)[0]
            item.parsed = self.contract.parse(item.topic, item.payload)
        except Invalid as err:
            item.reason = str(err)
            item.parsed = None

    def _commit(self, batch: list[_Pending]) -> None:
        for p in batch:
            self._parse(p.msg)
        msgs = [p.msg for p in batch]
        delay = 0.5
        while True:
            started = time.perf_counter()
            try:
                res = self.sink.write(msgs)
                break
            except Exception as err:  # noqa: BLE001 - classified below; nothing is acknowledged
                if self.sink.transient(err):
                    if self._stop.is_set():
                        return  # stopping with the database down: nothing acknowledged, the broker re-sends
                    _LOGGER.warning("HQ database unavailable (%s); retrying the batch in %.1fs", err, delay)
                    time.sleep(delay)
                    delay = min(delay * 2, 10.0)
                    continue
                res = self._isolate(msgs, err)
                break
        ms = (time.perf_counter() - started) * 1000
        now_ms = int(time.time() * 1000)
        lag = max((now_ms - int(r.ts.timestamp() * 1000) for m in msgs if m.parsed for r in m.parsed.rows),
                  default=0)
        self.stats.batch(res, len(msgs), ms, lag)
        with self._arrived:
            gen = self._gen
        for p in batch:  # committed: now, and only now, the broker may forget them
            if p.gen == gen and p.qos > 0:
                self.client.ack(p.mid, p.qos)

    def _isolate(self, msgs: list[Incoming], err: Exception) -> WriteResult:
        """The database refused the batch: write message by message; what it still refuses is a dead letter."""
        _LOGGER.warning("HQ database refused a batch (%s); writing its %d messages one by one", err, len(msgs))
        total = WriteResult()
        for m in msgs:
            try:
                res = self.sink.write([m])
            except Exception as one:  # noqa: BLE001 - the refusal becomes the dead letter's reason
                if self.sink.transient(one):
                    raise
                m.parsed, m.reason = None, f"database refused it: {str(one)[:300]}"
                res = self.sink.write([m])
            for key in ("rows", "written", "absorbed", "dead", "manifests"):
                setattr(total, key, getattr(total, key) + getattr(res, key))
        return total

    def _repair(self) -> None:
        try:
            requests = self.sink.repair()
        except Exception as err:  # noqa: BLE001 - retried at the next round
            _LOGGER.warning("Gap repair failed this round: %s", err)
            return
        for req in requests:
            self.publish_resend(req)

    def publish_resend(self, req: Resend) -> None:
        """Ask one store to publish again what HQ is missing (``P/cmd/resend``, QoS 1)."""
        ids = req.ids or []
        chunks = [ids[i:i + RESEND_CHUNK] for i in range(0, len(ids), RESEND_CHUNK)] or [[]]
        for n, chunk in enumerate(chunks):
            doc = {"id": f"hq:resend:{uuid.uuid4().hex}", "ts": iso_now(), "ids": chunk,
                   "manifests": req.manifests if n == 0 else []}
            self.client.publish(f"{self.prefix}/{req.store}/cmd/resend",
                                json.dumps(doc, separators=(",", ":")), qos=1)
        self.stats.resend_ids += len(ids)
        self.stats.resend_manifests += len(req.manifests)
        _LOGGER.info("Asked store %s to re-send %d message(s) and %d manifest(s)", req.store, len(ids),
                     len(req.manifests))

    def _publish_stats(self) -> None:
        try:
            self.sink.record_stats(self.client_id, self.stats.snapshot())
        except Exception as err:  # noqa: BLE001 - counters only
            _LOGGER.debug("Cannot record consumer stats: %s", err)


def iso_now() -> str:
    """The current time in the contract's format."""
    return iso(datetime.now(UTC))
