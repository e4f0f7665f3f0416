"""Simulated stores speaking the HQ contract (C4) over real MQTT, many per thread (tests, bench/fleet.py).

Each ``SimStore`` is one paho client as a store's uplink is: a retained ``online`` status on connect
and an ``offline`` LWT, telemetry summaries with ids and revs (a later rev of an earlier id now and
then, as a late reading does), alerts, kept in an outbox until the broker's PUBACK and re-sent after
a reconnect; every window a ``P/manifest`` of the ids and revs the broker acknowledged in it; and
``P/cmd/resend`` answered from its history. Reconnects follow the gateway's ``ReconnectPolicy``
(decorrelated jitter, rate limits). ``SimLoop`` drives hundreds of them on one epoll loop.
"""

from __future__ import annotations

import collections
import json
import random
import selectors
import threading
import time
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as paho

from gateway.spine.mqtt import ReconnectPolicy, new_client


def iso_ms(ms: int) -> str:
    """Epoch milliseconds as the contract's ISO-8601 UTC."""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def _dumps(doc: Any) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


class SimStore:
    """One simulated store (see the module docstring)."""

    def __init__(self, store: str, host: str, port: int, *, prefix: str = "storegw/v1", rate: float = 1.0,
                 manifest_s: float = 10.0, keepalive: int = 30, seed: int = 0, late_p: float = 0.05,
                 alert_p: float = 0.01, base: float = 1.0, cap: float = 30.0) -> None:
        self.store, self.host, self.port, self.keepalive = store, host, port, keepalive
        self.p = f"{prefix}/{store}"
        self.rate, self.manifest_s, self.late_p, self.alert_p = rate, manifest_s, late_p, alert_p
        self.rng = random.Random(seed)
        self.policy = ReconnectPolicy(base, cap, rng=self.rng)
        self.started_ms = int(time.time() * 1000)
        self.client: paho.Client | None = None
        self.connected = False
        self.connects = 0
        self.next_connect = time.monotonic() + self.rng.uniform(0, 1.0)  # stores do not all start at once
        self.next_msg = time.monotonic() + self.rng.uniform(0, 1 / rate) if rate > 0 else float("inf")
        self.next_manifest = time.monotonic() + manifest_s
        self.window_start_ms = int(time.time() * 1000)
        self.pending: collections.deque[tuple[str, bytes, list[tuple[str, int]], bool]] = collections.deque()
        self.inflight: dict[int, tuple[str, bytes, list[tuple[str, int]], bool]] = {}
        self.history: dict[str, tuple[str, bytes]] = {}  # id -> the message holding its highest rev
        self.expected: dict[str, int] = {}  # id -> highest rev produced
        self.acked_window: dict[str, int] = {}
        self.manifests: dict[int, bytes] = {}
        self.seq = 0
        self.n = 0
        self.resent = 0
        self.resend_requests = 0
        self._recent: list[str] = []
        self._alert_open: str | None = None

    # -- what a store produces
    def status(self, state: str) -> bytes:
        now = int(time.time() * 1000)
        return _dumps({"id": f"{self.store}:status:{self.started_ms}:{state}:{now}", "state": state,
                       "ts": iso_ms(now), "version": "0.1.0", "started_at": iso_ms(self.started_ms)})

    def summary_item(self, window_ms: int, rev: int, count: int, window_s: int = 1) -> dict[str, Any]:
        """One telemetry summary item of the contract."""
        mean = round(3.5 + self.rng.random(), 2)
        return {"id": f"{self.store}:fridge-1:temp_c:{window_s}:{window_ms}", "rev": rev,
                "ts": iso_ms(int(time.time() * 1000)), "device": "fridge-1", "metric": "temp_c",
                "window_start": iso_ms(window_ms), "window_s": window_s, "count": count, "type": "number",
                "min": mean - 0.2, "max": mean + 0.2, "mean": mean, "last": mean}

    def send(self, kind: str, doc: Any, *, retain: bool = False) -> None:
        """Put one message in the outbox (published now when connected)."""
        items = doc if isinstance(doc, list) else [doc]
        topic, body = f"{self.p}/{kind}", _dumps(doc)
        revs = [(i["id"], i.get("rev", 0)) for i in items]
        if kind != "manifest":
            for msg_id, rev in revs:
                if rev >= self.expected.get(msg_id, -1):
                    self.expected[msg_id] = rev
                    self.history[msg_id] = (topic, body)
        self.pending.append((topic, body, revs if kind != "manifest" else [], retain))
        self._drain()

    def produce(self, now_ms: int) -> None:
        """One second's worth of a store: a summary (sometimes a later rev of an earlier one), sometimes an alert."""
        self.n += 1
        if self._recent and self.rng.random() < self.late_p:
            msg_id = self.rng.choice(self._recent)
            window_ms = int(msg_id.rsplit(":", 1)[1])
            item = self.summary_item(window_ms, self.expected[msg_id] + 1, 2)
        else:
            window_ms = now_ms - now_ms % 1000 + self.n % 1000  # unique per message even at > 1 msg/s
            item = self.summary_item(window_ms, 1, 1)
            self._recent = (self._recent + [item["id"]])[-20:]
        self.send("telemetry/summary", [item])
        if self.rng.random() < self.alert_p:
            if self._alert_open is None:
                self._alert_open = f"{self.store}:rule:fridge-warm:fridge-1:{now_ms}"
                state = "raised"
            else:
                state = "cleared"
            self.send("alerts", {"id": f"{self._alert_open}:{state}", "episode": self._alert_open,
                                 "device": "fridge-1", "rule": "fridge-warm", "kind": "threshold", "state": state,
                                 "severity": "major", "value": 9.4, "ts": iso_ms(now_ms)})
            if state == "cleared":
                self._alert_open = None

    def manifest(self, now_ms: int) -> None:
        """Close the window: publish what the broker acknowledged in it."""
        self.seq += 1
        doc = {"id": f"{self.store}:manifest:{self.seq}", "ts": iso_ms(now_ms), "store": self.store, "seq": self.seq,
               "window_start": iso_ms(self.window_start_ms), "window_s": max(1, round(self.manifest_s)),
               "ids": dict(self.acked_window)}
        self.acked_window.clear()
        self.window_start_ms = now_ms
        self.manifests[self.seq] = _dumps(doc)
        self.send("manifest", doc)

    # -- MQTT
    def _on_connect(self, client: paho.Client, userdata: object, flags: object, rc: object,
                    props: object = None) -> None:
        if getattr(rc, "is_failure", False):
            return
        self.connected = True
        self.connects += 1
        self.policy.connected()
        client.subscribe(f"{self.p}/cmd/resend", qos=1)
        client.publish(f"{self.p}/status", self.status("online"), qos=1, retain=True)
        self._drain()

    def _on_publish(self, client: paho.Client, userdata: object, mid: int, rc: object = None,
                    props: object = None) -> None:
        sent = self.inflight.pop(mid, None)
        if sent is not None:
            for msg_id, rev in sent[2]:
                if rev >= self.acked_window.get(msg_id, -1):
                    self.acked_window[msg_id] = rev

    def _on_message(self, client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        try:
            doc = json.loads(msg.payload)
        except ValueError:
            return
        self.resend_requests += 1
        seen: set[bytes] = set()
        for msg_id in doc.get("ids", []):
            found = self.history.get(msg_id)
            if found and found[1] not in seen:
                seen.add(found[1])
                revs = [(i["id"], i.get("rev", 0)) for i in (lambda d: d if isinstance(d, list) else [d])(
                    json.loads(found[1]))]
                self.pending.append((found[0], found[1], revs, False))
                self.resent += 1
        for seq in doc.get("manifests", []):
            if seq in self.manifests:
                self.pending.append((f"{self.p}/manifest", self.manifests[seq], [], False))
                self.resent += 1
        self._drain()

    def _drain(self) -> None:
        if not self.connected or self.client is None:
            return
        while self.pending:
            topic, body, revs, retain = self.pending[0]
            info = self.client.publish(topic, body, qos=1, retain=retain)
            if info.rc != paho.MQTT_ERR_SUCCESS:
                return
            self.pending.popleft()
            self.inflight[info.mid] = (topic, body, revs, retain)

    def lost_connection(self, now: float) -> None:
        """The connection dropped: what was in flight goes back to the outbox; schedule a reconnect."""
        self.connected = False
        for entry in sorted(self.inflight.items()):
            self.pending.appendleft(entry[1])
        self.inflight.clear()
        self.client = None
        self.next_connect = self.policy.next_attempt(now)

    def try_connect(self, now: float) -> paho.Client | None:
        """Open a fresh connection (as the uplink does: a new client per attempt)."""
        client = new_client(f"sim-{self.store}", clean=True)
        client.will_set(f"{self.p}/status", self.status("offline"), qos=1, retain=True)
        client.max_inflight_messages_set(50)
        client.on_connect = self._on_connect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        self.policy.attempted(now)
        try:
            client.connect(self.host, self.port, keepalive=self.keepalive)
        except OSError:
            self.next_connect = self.policy.next_attempt(now)
            return None
        self.client = client
        return client

    @property
    def idle(self) -> bool:
        """Nothing waits in the outbox or in flight."""
        return self.connected and not self.pending and not self.inflight


class SimLoop:
    """Drive many ``SimStore``s on one epoll loop in a thread (or in the caller's, with ``run``)."""

    def __init__(self, stores: list[SimStore]) -> None:
        self.stores = stores
        self.sel = selectors.DefaultSelector()
        self.stop_event = threading.Event()
        self.producing = threading.Event()
        self.producing.set()
        self.manifesting = threading.Event()
        self.manifesting.set()
        self._thread: threading.Thread | None = None
        self._socks: dict[str, Any] = {}
        self._calls: collections.deque[Any] = collections.deque()

    TICK = 0.05

    def call(self, fn: Any) -> None:
        """Run ``fn()`` on the loop's thread (stores are not thread-safe)."""
        self._calls.append(fn)

    def connected(self) -> int:
        """How many stores are connected now."""
        return sum(1 for s in self.stores if s.connected)

    def start(self) -> SimLoop:
        """Run the loop in a background thread."""
        self._thread = threading.Thread(target=self.run, name="fleetsim", daemon=True)
        self._thread.start()
        return self

    def stop(self, *, clean: bool = True) -> None:
        """Stop the loop and disconnect every store (no LWT: a clean disconnect); ``clean=False``
        leaves the connections open and silent, as a store that lost power behind a NAT: the broker
        publishes each one's LWT after 1.5 × keepalive."""
        self._clean = clean
        self.stop_event.set()
        if self._thread:
            self._thread.join(10)

    def _drop(self, store: SimStore, now: float) -> None:
        sock = self._socks.pop(store.store, None)
        if sock is not None:
            try:
                self.sel.unregister(sock)
            except (KeyError, ValueError, OSError):
                pass
        store.lost_connection(now)

    def run(self) -> None:
        """The loop: connect when due, produce, read, write, keep alive.

        Every store is visited once per ``TICK`` (connect, produce, manifest, flush writes, once a
        second paho's keepalive); in between, only the stores with something to read are touched.
        """
        next_misc = next_tick = 0.0
        while not self.stop_event.is_set():
            while self._calls:
                self._calls.popleft()()
            now = time.monotonic()
            if now >= next_tick:
                next_tick = now + self.TICK
                misc = now >= next_misc
                if misc:
                    next_misc = now + 1.0
                self._visit_all(now, misc)
            for key, _ in self.sel.select(max(0.0, min(0.02, next_tick - time.monotonic()))):
                s = key.data
                if s.client is None:
                    continue
                for _ in range(100):
                    rc = s.client.loop_read()
                    if rc != paho.MQTT_ERR_SUCCESS or s.client is None or s.client.socket() is None:
                        break
                    if not getattr(s.client.socket(), "pending", lambda: 0)():
                        break
                c = s.client
                if c is None or c.socket() is None:
                    self._drop(s, now)
                elif c.want_write():
                    c.loop_write()
        self._close()

    def _visit_all(self, now: float, misc: bool) -> None:
        wall_ms = int(time.time() * 1000)
        for s in self.stores:
            if s.client is None and now >= s.next_connect:
                client = s.try_connect(now)
                if client is not None and client.socket() is not None:
                    sock = client.socket()
                    self._socks[s.store] = sock
                    self.sel.register(sock, selectors.EVENT_READ, s)
            if self.producing.is_set() and now >= s.next_msg:
                s.next_msg += 1 / s.rate
                if s.next_msg < now:
                    s.next_msg = now + 1 / s.rate
                s.produce(wall_ms)
            if self.manifesting.is_set() and now >= s.next_manifest:
                s.next_manifest = now + s.manifest_s
                s.manifest(wall_ms)
            c = s.client
            if c is None:
                continue
            if c.socket() is None:
                self._drop(s, now)
                continue
            if c.want_write():
                c.loop_write()
            if misc:
                c.loop_misc()
            if c.socket() is None:
                self._drop(s, now)

    def _close(self) -> None:
        """Disconnect every store cleanly (no LWT), unless ``stop(clean=False)``."""
        for s in self.stores:
            if s.client is not None and getattr(self, "_clean", True):
                try:
                    s.client.disconnect()
                    s.client.loop_write()
                except OSError:
                    pass
