"""Local MQTT ingest: subscribe to equipment topics, PUBACK only after the reading is committed.

One thread (``storegw-ingest``) owns the paho client and drives it with paho's external event loop
(``loop_read``/``loop_write``/``loop_misc`` on one ``select``): it reads every packet that has
arrived, parses the messages (``gateway.spine.payload``) into a batch, hands the batch to the writer as
one write, and acknowledges the batch's messages when the writer's on-commit callback tells it
the transaction committed (a queue plus a wake-up socket: paho is only ever touched by this thread).
A crash before the commit means the broker delivers the messages again (persistent session,
QoS 1) and the idempotent insert ignores what was already stored.

Why not ``loop_start()``: paho's own loop does one ``select`` per packet and wakes its thread
through a socket pair for every acknowledgement from another thread; on a Pi-class board that was
most of the ingest's CPU, all of it holding the interpreter lock the writer needs. Reading every
waiting packet per wake-up (from 64 KiB reads, ``gateway.spine.mqtt.ReadBufferedSocket``) and writing
the PUBACKs of a whole batch in one pass removes it (``bench/ingest.py``; docs/architecture.md,
"Ingest").

A batch whose write fails (an exception in the transaction) is written again message by message:
the good messages commit and are acknowledged; a message that fails on its own is dropped,
acknowledged and counted as ``write_failed`` in health (it would fail forever). When not one
message can be written, a one-row probe write tells bad data from a database that cannot write
(disk full, I/O error); in the second case nothing is acknowledged and the ingest reconnects (with
backoff), so the broker delivers everything again once the writer can write.

At most ``MAX_PENDING`` batches wait for the writer at once: while one commits, messages pile up
and the next batch takes them all, so under load transactions get bigger instead of the writer
queue filling with tiny batches. Past ``max_buffer`` waiting messages the thread stops reading the
socket and the broker holds the rest (backpressure).
"""

from __future__ import annotations

import collections
import hashlib
import logging
import select
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as paho

from gateway.config import Config
from gateway.core import pii
from gateway.core.errors import StoreError
from gateway.core.models import DEVICE_ID_RE, Reading, now_ms
from gateway.spine.mqtt import configure_auth, describe_rc, new_client, skip_topic_callbacks
from gateway.spine.payload import InvalidPayload, parse, parse_status
from gateway.spine.telemetry import Telemetry
from gateway.store.writer import Writer

_LOGGER = logging.getLogger(__name__)

TOPICS = [("devices/+/telemetry", 1), ("devices/+/status", 1)]
MAX_PENDING = 2  # batches handed to the writer and not yet committed
TICK_S = 1.0
RECONNECT_MAX_S = 30.0

_Item = tuple[str, "Reading | str", int, int]  # (device, reading or status state, mid, qos)
_PROBE = object()  # marks the one-row write that tells bad data from a database that cannot write
MAX_NAMES = 10000  # device ids and metric names remembered as checked (a flood of made-up ones is checked each time)
INVALID_ID = "(invalid id)"  # what logs and counters show for a device id that breaks C3 (never the raw topic)


@dataclass(slots=True)
class _Retry:
    """A failed batch written again message by message: how many came back, and which failed."""

    size: int
    written: int = 0
    failed: list[_Item] = field(default_factory=list)

    @property
    def done(self) -> bool:
        return self.written + len(self.failed) == self.size


def _receipt_stamped(r: Reading, payload: bytes, mid: int, dup: bool) -> Reading:
    """A reading without its own ts, stamped on receipt: its digest also covers the MQTT packet id.

    Two messages with the same payload in one batch share the receipt stamp; the packet id keeps
    them apart. And a redelivery (DUP) keeps its packet id, so the writer can recognise it under
    its new stamp (``Telemetry.seen_before``).
    """
    digest = hashlib.blake2b(payload + mid.to_bytes(2, "big"), digest_size=8).hexdigest()
    return Reading(r.device, r.ts_ms, r.metrics, digest, dup, stamped=True)


def reading(device: str, payload: bytes, received: int, mid: int, qos: int, dup: bool,
            max_payload: int = 65536) -> Reading:
    """Parse one telemetry message as received; a QoS 1+ payload without ``ts`` is stamped on receipt.

    Whether it has a ts is the payload's business, never ``ts == received``: a device's own ts can
    equal the receipt time to the millisecond, and its redelivery after a crash (received later)
    then got another digest and was counted twice at HQ (bench/crash.py found it).
    """
    r = parse(device, payload, received, max_payload)
    if r.stamped and qos:
        r = _receipt_stamped(r, payload, mid, dup)
    return r


def _probe_write(conn: Any) -> None:
    """A one-row write: does the database write at all?"""
    conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('ingest:probe', ?)", (str(now_ms()),))


class Ingest:
    """The local broker's session, the parsing and the hand-over to the writer."""

    def __init__(self, cfg: Config, telemetry: Telemetry, writer: Writer, *, batch: int = 1000,
                 max_buffer: int = 20000) -> None:
        self.cfg = cfg
        self.telemetry = telemetry
        self.writer = writer
        self.batch = batch
        self.max_buffer = max_buffer
        self.max_payload = cfg.telemetry.max_payload
        self.connected = False  # subscribed: from then on nothing published is missed
        self.last_progress = time.monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._buffer: list[tuple[str, bytes, int, int, bool]] = []
        self._delivered = 0
        # batch → (connection it came on, its messages, the retry group when written one by one)
        self._pending: dict[int, tuple[int, list[_Item], _Retry | object | None]] = {}
        self._done: collections.deque[tuple[int, bool]] = collections.deque()  # appended by the writer thread
        self._next_batch = 1
        self._conn_gen = 0
        # Device ids and metric names as stored and sent: themselves, or a keyed pseudonym when they
        # hold something personal (a phone number as a device id); checked once each.
        self._devices: dict[str, str] = {}
        self._safe_metrics: set[str] = set()
        self._metric_names: dict[str, str] = {}
        # A socket pair, not a pipe: once closed, a late wake-up from the writer fails on the closed
        # socket object instead of writing into whatever file reuses the descriptor number.
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        lm = cfg.local_mqtt
        self.client = new_client(lm.client_id or f"storegw-{cfg.store.id}-local", clean=False, manual_ack=True,
                                 read_buffer=True)
        configure_auth(self.client, tls=False, username=lm.username, password_file=lm.password_file,
                       section="local_mqtt")
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        # PUBACKs are queued and written in one pass when the socket is writable, not one send each.
        self.client.on_socket_register_write = lambda *a: None
        skip_topic_callbacks(self.client)

    # -- paho callbacks (ingest thread): one thing each, never raise
    def _on_connect(self, client: paho.Client, userdata: object, flags: object, rc: object,
                    props: object = None) -> None:
        if getattr(rc, "is_failure", False):
            _LOGGER.warning("Local broker refused the connection: %s", describe_rc(rc))
            return
        self._conn_gen += 1
        client.subscribe(TOPICS)

    def _on_subscribe(self, client: paho.Client, userdata: object, mid: int, reason_codes: list,
                      props: object = None) -> None:
        if any(getattr(rc, "is_failure", False) for rc in reason_codes):
            _LOGGER.error("The local broker refused the subscription to %s: check its ACL",
                          ", ".join(t for t, _ in TOPICS))
            return
        self.connected = True
        lm = self.cfg.local_mqtt
        _LOGGER.info("Connected to the local broker %s:%s", lm.host, lm.port)

    def _on_disconnect(self, client: paho.Client, userdata: object, flags: object, rc: object,
                       props: object = None) -> None:
        if self.connected and not self._stop.is_set():
            _LOGGER.warning("Lost the local broker: %s; reconnecting", describe_rc(rc))
        self.connected = False

    def _on_message(self, client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        self._buffer.append((msg.topic, msg.payload, msg.mid, msg.qos, msg.dup))
        self._delivered += 1

    # -- lifecycle
    def start(self) -> None:
        """Start the ingest thread (it connects, and reconnects, by itself)."""
        self._thread = threading.Thread(target=self._run, name="storegw-ingest", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Disconnect and stop the thread (unacknowledged messages stay with the broker)."""
        self._stop.set()
        self._wake()
        if self._thread:
            self._thread.join(10)
        self.connected = False
        self._wake_r.close()
        self._wake_w.close()

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"!")
        except OSError:
            pass  # a wake-up is already waiting (buffer full), or we are closed

    # -- the loop
    def _run(self) -> None:
        client = self.client
        lm = self.cfg.local_mqtt
        delay, next_try, up_since = 1.0, 0.0, 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            self.last_progress = now
            sock = client.socket()
            if sock is None and now >= next_try:
                try:
                    client.connect(lm.host, lm.port, keepalive=30)
                    sock, up_since = client.socket(), now
                except OSError as err:
                    if delay == 1.0:
                        _LOGGER.warning("Cannot reach the local broker %s:%s: %s; retrying", lm.host, lm.port,
                                        err.strerror or err)
                    next_try, delay = now + delay, min(delay * 2, RECONNECT_MAX_S)
            rlist: list[Any] = [self._wake_r]
            wlist: list[Any] = []
            if sock is not None:
                if len(self._buffer) < self.max_buffer:
                    rlist.append(sock)
                if client.want_write():
                    wlist.append(sock)
                timeout = 0.0 if sock.pending() else TICK_S
            else:
                timeout = max(0.05, min(TICK_S, next_try - now))
            readable, _, _ = select.select(rlist, wlist, [], timeout)
            if self._wake_r in readable:
                try:
                    self._wake_r.recv(4096)
                except BlockingIOError:
                    pass
            if sock is not None and (sock in readable or sock.pending()):
                for _ in range(1000):  # loop_read reads one packet per call: read all that arrived
                    before = self._delivered
                    if client.loop_read() != paho.MQTT_ERR_SUCCESS:
                        break
                    if self._delivered == before and not (client.socket() is sock and sock.pending()):
                        break
            self._settle()
            self._flush()
            if client.socket() is not None:
                if client.want_write():
                    client.loop_write()
                client.loop_misc()
            if sock is not None and client.socket() is None:  # lost just now
                self._conn_gen += 1  # what came on it is never acknowledged on another connection
                self._buffer.clear()  # not acknowledged: the broker delivers them again after reconnecting
                if self.connected:
                    self._on_disconnect(client, None, None, "connection lost")
                if time.monotonic() - up_since > 60:
                    delay = 1.0  # it had been up a while: reconnect soon; else back off (flapping)
                next_try, delay = time.monotonic() + delay, min(delay * 2, RECONNECT_MAX_S)
        try:
            client.disconnect()  # clean: the session and everything unacknowledged stay with the broker
            if client.socket() is not None and client.want_write():
                client.loop_write()
        except OSError:
            pass

    def _settle(self) -> None:
        """Act on the writes the writer finished: PUBACK what committed, isolate what failed."""
        while self._done:
            batch, ok = self._done.popleft()
            entry = self._pending.pop(batch, None)
            if entry is None:
                continue
            gen, items, group = entry
            current = gen == self._conn_gen  # still the connection these messages came on
            if group is _PROBE:
                if current:
                    self._probed(items, ok)
                continue
            if ok:
                if isinstance(group, _Retry):
                    group.written += 1
                if current:
                    self._ack(items)
                # else: the broker delivers them again on the new connection; the insert ignores them
            elif group is None and current:
                self._retry_one_by_one(items)
            elif isinstance(group, _Retry):
                group.failed.append(items[0])
            if isinstance(group, _Retry) and group.done:  # every single write is back
                self._failed_singly(group, current)

    def _retry_one_by_one(self, items: list[_Item]) -> None:
        """A batch's write failed: write each message on its own to keep the good ones."""
        group = _Retry(len(items))
        for item in items:
            self._submit([item], group)

    def _failed_singly(self, group: _Retry, current: bool) -> None:
        committed, failed = group.written, group.failed
        if not failed or not current:
            return  # all written; or the new connection gets the failed ones again anyway
        if committed:
            self._drop(failed)  # the others could be written: these messages are what breaks the write
            return
        # Not one could be written: the data, or the database (disk full, I/O error)? A write of one
        # small row tells them apart.
        self._submit(failed, _PROBE, write=_probe_write)

    def _probed(self, failed: list[_Item], database_ok: bool) -> None:
        if database_ok:
            self._drop(failed)
            return
        # The database cannot write: keep the messages with the broker and have it deliver them
        # again after a reconnect (with backoff), by which time the writer may write again.
        _LOGGER.error("Telemetry could not be written (%d messages); reconnecting to the local broker "
                      "to have them delivered again", len(failed))
        self.client.disconnect()

    def _drop(self, failed: list[_Item]) -> None:
        """Acknowledge and count messages that fail to write on their own (they would fail forever)."""
        for device, _value, _mid, _qos in failed:
            self.telemetry.stats.note_invalid(device, "write_failed")
        self._ack(failed)

    def _ack(self, items: list[_Item]) -> None:
        for _device, _value, mid, qos in items:
            if qos:
                self.client.ack(mid, qos)

    def _flush(self) -> None:
        """Parse buffered messages into batches while fewer than MAX_PENDING await their commit."""
        while self._buffer and len(self._pending) < MAX_PENDING:
            msgs = self._buffer[:self.batch]
            del self._buffer[:self.batch]
            received = now_ms()
            items: list[_Item] = []
            note = self.telemetry.stats.note_invalid
            devices, safe_metrics = self._devices, self._safe_metrics
            for topic, payload, mid, qos, dup in msgs:
                parts = topic.split("/")
                raw = parts[1] if len(parts) == 3 else ""
                device = devices.get(raw)
                if device is None:
                    device = self._device_name(raw)
                try:
                    if parts[2:] == ["status"]:
                        items.append((device, parse_status(device, payload), mid, qos))
                        continue
                    r = reading(device, payload, received, mid, qos, dup, self.max_payload)
                    if not safe_metrics.issuperset(r.metrics):
                        r = self._rename_metrics(r)
                    items.append((device, r, mid, qos))
                except InvalidPayload as err:
                    note(device or INVALID_ID, err.reason)
                    if qos:  # nothing to keep; acknowledging stops redelivery of a poison message
                        self.client.ack(mid, qos)
            if items and not self._submit(items, None):
                return

    def _device_name(self, raw: str) -> str:
        """Return the device id to store and send for a topic's id: '' when invalid (C3), else itself or its
        pseudonym when it holds personal data (``redacted-<8 hex>``, stable: HQ still tells devices apart)."""
        name = pii.pseudonymize(raw) if DEVICE_ID_RE.match(raw) else ""
        if len(self._devices) < MAX_NAMES:
            self._devices[raw] = name
        return name

    def _rename_metrics(self, r: Reading) -> Reading:
        """Return the reading with metric names that hold personal data replaced by their pseudonyms."""
        renamed: dict[str, Any] = {}
        for key, value in r.metrics.items():
            name = self._metric_names.get(key)
            if name is None:
                name = pii.pseudonymize(key)
                if name == key and len(self._safe_metrics) < MAX_NAMES:
                    self._safe_metrics.add(key)
                elif name != key and len(self._metric_names) < MAX_NAMES:
                    self._metric_names[key] = name
            elif name != key:
                pii.count(pii.scan(key))  # every occurrence counts
            renamed[name] = value
        return Reading(r.device, r.ts_ms, renamed, r.digest, r.dup, stamped=r.stamped)

    def _submit(self, items: list[_Item], group: _Retry | object | None,
                 write: Callable[[Any], object] | None = None) -> bool:
        """Hand one write to the writer; its outcome comes back through ``_done``."""
        batch = self._next_batch
        self._next_batch += 1
        self._pending[batch] = (self._conn_gen, items, group)
        try:
            future = self.writer.submit(write or (lambda conn: self._write(conn, items)),
                                        on_commit=lambda _: self._finished(batch, True))
        except StoreError as err:  # not acknowledged: the broker keeps them; the watchdog sees the writer
            self._pending.pop(batch, None)
            _LOGGER.error("Cannot store telemetry: %s", err)
            return False
        future.add_done_callback(lambda f: None if f.cancelled() or f.exception() is None
                                 else self._finished(batch, False))
        return True

    def _finished(self, batch: int, ok: bool) -> None:
        """Writer thread: the write committed (or failed); the ingest thread acts on it."""
        self._done.append((batch, ok))
        self._wake()

    def _write(self, conn: Any, items: list[_Item]) -> int:
        readings = [value for _, value, _, _ in items if type(value) is Reading]
        n = self.telemetry.write_batch(conn, readings) if readings else 0
        for device, value, _, _ in items:
            if type(value) is str:
                self.telemetry.status(conn, device, value)
        return n
