"""The only code that talks to the HQ broker: drains the outbox, deletes a row only on PUBACK.

One thread owns the paho client (connect, network loop, publish, acks), so no paho call is made
from two threads. Each connection attempt gets a fresh client: whatever was in flight on a lost
connection is simply read from the outbox again (HQ dedupes by ``id``). Reconnects follow
``ReconnectPolicy`` (decorrelated jitter, at most one CONNECT a second and a dozen a minute, a longer
pause when the broker says it is busy); a token bucket bounds the drain rate.
"""

from __future__ import annotations

import collections
import json
import logging
import random
import threading
import time
from collections.abc import Callable

import paho.mqtt.client as paho

from gateway import __version__
from gateway.config import Config
from gateway.core.models import iso_ms, now_ms
from gateway.spine.mqtt import ReconnectPolicy, configure_auth, describe_rc, is_busy, new_client
from gateway.store.db import Connection
from gateway.store.outbox import Lane, acknowledged, dumps, enqueue, fetch, purge_sent, resend, sent_items
from gateway.store.writer import Writer

_LOGGER = logging.getLogger(__name__)

RESEND_PER_MINUTE = 12  # P/cmd/resend commands acted on per minute at most (HQ asks again later)
RESEND_MAX_IDS = 500  # ids per command at most (docs/schemas/cmd-resend.json)


class Uplink:
    """Store-and-forward publisher to HQ."""

    def __init__(self, cfg: Config, writer: Writer, read_conn: Connection, *, started_ms: int,
                 on_state: Callable[[bool], None] | None = None) -> None:
        self.cfg = cfg
        self.up = cfg.uplink
        self.writer = writer
        self.read_conn = read_conn
        self.started_ms = started_ms
        self.on_state = on_state
        self.prefix = cfg.prefix
        self.connected = False
        self.sent = 0
        self.acked = 0
        self.last_progress = time.monotonic()
        self.last_error = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._client: paho.Client | None = None
        self._inflight: dict[int, int] = {}  # mid -> outbox seq
        self._deleting: set[int] = set()  # acked seqs whose delete has not committed yet
        self._acked: collections.deque[int] = collections.deque()  # mids, from the paho callback
        self._deleted: collections.deque[list[int]] = collections.deque()  # from the writer's on_commit
        self._tokens = 0.0
        self._rng = random.Random()
        self._busy = False  # the broker refused or dropped us as overloaded (MQTT 5 reason code)
        self._resend_times: collections.deque[float] = collections.deque(maxlen=RESEND_PER_MINUTE)
        self.resent = 0
        self._wake = threading.Event()
        self._more = True  # the last read filled every free slot: there may be more to send
        self._last_fetch = 0.0

    # -- status messages
    def _status(self, state: str) -> tuple[str, bytes]:
        ts = now_ms()
        msg = {"id": f"{self.cfg.store.id}:status:{self.started_ms}:{state}:{ts}", "state": state,
               "ts": iso_ms(ts), "version": __version__, "started_at": iso_ms(self.started_ms)}
        return f"{self.prefix}/status", dumps(msg)

    def heartbeat(self) -> None:
        """Ask the uplink thread to refresh the retained online status."""
        self._heartbeat_due = True
        self._wake.set()

    def wake(self) -> None:
        """Tell the uplink there is something new in the outbox (called after each commit that queued one)."""
        self._wake.set()

    # -- paho callbacks (this thread, inside client.loop): one thing each
    def _on_connect(self, client: paho.Client, userdata: object, flags: object, rc: object,
                    props: object = None) -> None:
        if getattr(rc, "is_failure", False):
            self.last_error = f"HQ refused the connection: {describe_rc(rc)}"
            self._busy = is_busy(rc)
            return
        self.connected = True
        self.last_error = ""
        client.subscribe(f"{self.prefix}/cmd/resend", qos=1)

    def _on_message(self, client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        """HQ's ``P/cmd/resend``: put what HQ is missing back in the outbox (bounded, rate-limited)."""
        now = time.monotonic()
        if len(self._resend_times) == RESEND_PER_MINUTE and now - self._resend_times[0] < 60:
            _LOGGER.warning("Uplink: more than %d re-send requests from HQ in a minute; ignoring one "
                            "(HQ asks again)", RESEND_PER_MINUTE)
            return
        try:
            doc = json.loads(msg.payload)
            ids = doc.get("ids", [])
            manifests = doc.get("manifests", [])
            if not (isinstance(ids, list) and isinstance(manifests, list) and len(ids) <= RESEND_MAX_IDS
                    and len(manifests) <= RESEND_MAX_IDS and all(isinstance(i, str) for i in ids)
                    and all(isinstance(m, int) and not isinstance(m, bool) for m in manifests)):
                raise ValueError("ids must be at most 500 strings and manifests at most 500 integers")
        except (ValueError, AttributeError) as err:
            _LOGGER.warning("Uplink: ignored a malformed re-send request from HQ: %s", err)
            return
        self._resend_times.append(now)
        names = [f"{self.cfg.store.id}:manifest:{m}" for m in manifests]
        self.writer.submit(lambda conn: resend(conn, ids, names),
                           on_commit=lambda n: self._resent(n, len(ids), len(manifests)))

    def _resent(self, n: int, ids: int, manifests: int) -> None:
        self.resent += n
        _LOGGER.info("Uplink: HQ asked again for %d message id(s) and %d manifest(s); %d message(s) queued",
                     ids, manifests, n)

    def write_manifest(self, conn: Connection) -> dict[str, object]:
        """Close the manifest window: enqueue ``P/manifest`` with the ids and revs HQ's broker
        acknowledged since the last one, and forget what is older than ``uplink.resend_keep``
        (runs on the writer, every ``uplink.manifest_every``)."""
        meta = dict(conn.execute("SELECT key, value FROM meta WHERE key IN ('uplink.manifest_seq', "
                                 "'uplink.manifest_until')").fetchall())
        seq = int(meta.get("uplink.manifest_seq", 0)) + 1
        since = int(meta.get("uplink.manifest_until", 0))
        until = now_ms()
        doc = {"id": f"{self.cfg.store.id}:manifest:{seq}", "ts": iso_ms(until), "store": self.cfg.store.id,
               "seq": seq, "window_start": iso_ms(since or until - int(self.up.manifest_every * 1000)),
               "window_s": max(1, round((until - since) / 1000) if since else round(self.up.manifest_every)),
               "ids": sent_items(conn, since, until)}
        enqueue(conn, Lane.ALERTS, f"{self.prefix}/manifest", doc["id"], "manifest", doc)
        conn.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                         [("uplink.manifest_seq", str(seq)), ("uplink.manifest_until", str(until))])
        purge_sent(conn, until - int(self.up.resend_keep * 1000))
        return doc

    def _on_disconnect(self, client: paho.Client, userdata: object, flags: object, rc: object,
                       props: object = None) -> None:
        self.connected = False
        self._busy = is_busy(rc)
        self.last_error = f"disconnected: {describe_rc(rc)}"

    def _on_publish(self, client: paho.Client, userdata: object, mid: int, rc: object = None,
                    props: object = None) -> None:
        self._acked.append(mid)

    # -- lifecycle
    def start(self) -> None:
        """Start the uplink thread."""
        self._heartbeat_due = False
        self._thread = threading.Thread(target=self._run, name="storegw-uplink", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Publish offline status if connected, then stop."""
        self._stop.set()
        self._wake.set()
        if self._thread:
            self._thread.join(10)

    def _make_client(self) -> paho.Client:
        client = new_client(self.up.client_id or f"storegw-{self.cfg.store.id}", clean=True,
                            protocol=self.up.protocol)
        configure_auth(client, tls=self.up.tls, ca_file=self.up.ca_file, cert_file=self.up.cert_file,
                       key_file=self.up.key_file, username=self.up.username, password_file=self.up.password_file)
        topic, lwt = self._status("offline")
        client.will_set(topic, lwt, qos=1, retain=True)
        client.max_inflight_messages_set(max(1, self.up.max_inflight))
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        return client

    def _run(self) -> None:
        attempt = 0
        policy = ReconnectPolicy(self.up.reconnect_min, self.up.reconnect_max, rng=self._rng)
        while not self._stop.is_set():
            if not self.up.enabled:
                self._stop.wait(1)
                continue
            client = self._make_client()
            self._client = client
            self._busy = False
            policy.attempted(time.monotonic())
            try:
                client.connect(self.up.host, self.up.port, keepalive=int(self.up.keepalive))
                deadline = time.monotonic() + 10
                while not self.connected and time.monotonic() < deadline and not self._stop.is_set():
                    rc = client.loop(0.1)
                    if rc != paho.MQTT_ERR_SUCCESS:
                        break
            except (OSError, ValueError) as err:
                self.last_error = f"cannot reach HQ {self.up.host}:{self.up.port}: {err}"
            if not self.connected:
                self._drop(client)
                delay = policy.delay(time.monotonic(), busy=self._busy)
                if attempt in (0, 5) or attempt % 20 == 0:
                    _LOGGER.warning("Uplink: %s; retrying (backoff up to %.0fs)", self.last_error or "not connected",
                                    self.up.reconnect_max)
                attempt += 1
                self._stop.wait(delay)
                continue
            if attempt:
                _LOGGER.info("Uplink connected to %s:%s", self.up.host, self.up.port)
            attempt = 0
            policy.connected()
            if self.on_state:
                self.on_state(True)
            topic, birth = self._status("online")
            client.publish(topic, birth, qos=1, retain=True)
            self._serve(client)
            if self.on_state:
                self.on_state(False)
            if not self._stop.is_set():
                _LOGGER.warning("Uplink lost HQ: %s; reconnecting", self.last_error)
                self._stop.wait(policy.delay(time.monotonic(), busy=self._busy))
        self._client = None

    def _drop(self, client: paho.Client) -> None:
        try:
            client.disconnect()
        except OSError:
            pass
        self.connected = False
        self._inflight.clear()
        self._acked.clear()
        self._more = True

    def _serve(self, client: paho.Client) -> None:
        last_fill = time.monotonic()
        rate = self.up.drain_rate
        self._tokens = float(self.up.max_inflight)
        while not self._stop.is_set() and self.connected:
            rc = client.loop(0.02)
            if rc != paho.MQTT_ERR_SUCCESS:
                self.connected = False
                break
            now = time.monotonic()
            if rate > 0:
                self._tokens = min(float(max(self.up.max_inflight, rate)), self._tokens + (now - last_fill) * rate)
            last_fill = now
            self._handle_acks()
            if self._heartbeat_due:
                self._heartbeat_due = False
                topic, payload = self._status("online")
                client.publish(topic, payload, qos=1, retain=True)
            # Read the outbox only when something was committed to it, a read left rows behind, or
            # as a once-a-second safety net; an idle store does not query it 50 times a second.
            if self._wake.is_set() or self._more or now - self._last_fetch >= 1.0:
                self._wake.clear()
                self._fill(client, rate)
            self.last_progress = now
        if self._stop.is_set() and self.connected:
            topic, payload = self._status("offline")
            info = client.publish(topic, payload, qos=1, retain=True)
            end = time.monotonic() + 2
            while not info.is_published() and time.monotonic() < end:
                client.loop(0.05)
            self._handle_acks()
        self._drop(client)

    def _handle_acks(self) -> None:
        while self._deleted:
            self._deleting.difference_update(self._deleted.popleft())
        seqs = []
        while self._acked:
            seq = self._inflight.pop(self._acked.popleft(), None)
            if seq is not None:
                seqs.append(seq)
        if seqs:
            self.acked += len(seqs)
            self._deleting.update(seqs)
            keep = self.up.manifest_every > 0
            self.writer.submit(lambda conn, s=seqs: acknowledged(conn, s, keep=keep),
                               on_commit=lambda _, s=seqs: self._deleted.append(s))

    def _fill(self, client: paho.Client, rate: float) -> None:
        room = self.up.max_inflight - len(self._inflight)
        if rate > 0:
            room = min(room, int(self._tokens))
        if room <= 0:
            self._more = True  # try again once acks or tokens free a slot
            return
        self._last_fetch = time.monotonic()
        rows = fetch(self.read_conn, room, exclude=set(self._inflight.values()) | self._deleting)
        self._more = len(rows) >= room
        for row in rows:
            info = client.publish(row.topic, row.payload, qos=1, retain=row.retain)
            if info.rc != paho.MQTT_ERR_SUCCESS:
                self.connected = False
                return
            self._inflight[info.mid] = row.seq
            self.sent += 1
            if rate > 0:
                self._tokens -= 1
            if row.lane == Lane.ALERTS:
                _LOGGER.debug("Sent alert %s", row.msg_id)
