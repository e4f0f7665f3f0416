"""Local MQTT ingest: subscribe to equipment topics, PUBACK only after the reading is committed.

The paho callback does one thing (hand the message to a bounded queue); the ingest thread
parses a batch, hands it to the writer, and acknowledges each message to the broker from the
writer's on-commit callback. A crash before commit means the broker redelivers (persistent
session, QoS 1) and the idempotent insert ignores what was already stored.

At most ``MAX_PENDING`` batches wait for the writer at once: while one commits, messages pile
up in the queue and the next batch takes them all, so under load transactions get bigger
instead of the writer queue filling with tiny batches.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from dataclasses import dataclass

import paho.mqtt.client as paho

from gateway.config import DEVICE_ID_RE, Config
from gateway.models import now_ms
from gateway.mqtt import configure_auth, describe_rc, new_client
from gateway.store.writer import Writer
from gateway.telemetry import InvalidPayload, Telemetry, parse

_LOGGER = logging.getLogger(__name__)

TOPICS = [("devices/+/telemetry", 1), ("devices/+/status", 1)]
MAX_PENDING = 2  # batches handed to the writer and not yet committed


@dataclass(slots=True)
class _Msg:
    topic: str
    payload: bytes
    mid: int
    qos: int


class Ingest:
    """Subscriber + ingest thread for the local broker."""

    def __init__(self, cfg: Config, telemetry: Telemetry, writer: Writer, *, batch: int = 1000,
                 max_queue: int = 20000) -> None:
        self.cfg = cfg
        self.telemetry = telemetry
        self.writer = writer
        self.batch = batch
        # SimpleQueue (C, no per-item condition variables) bounded by hand in _on_message.
        self.queue: queue.SimpleQueue[_Msg] = queue.SimpleQueue()
        self.max_queue = max_queue
        self._room = threading.Event()
        self._slots = threading.BoundedSemaphore(MAX_PENDING)
        self.connected = False
        self.last_progress = time.monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        lm = cfg.local_mqtt
        self.client = new_client(lm.client_id or f"storegw-{cfg.store.id}-local", clean=False, manual_ack=True)
        configure_auth(self.client, tls=False, username=lm.username, password_file=lm.password_file,
                       section="local_mqtt")
        self.client.max_inflight_messages_set(1000)
        self.client.reconnect_delay_set(1, 30)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message

    # -- paho callbacks (network thread): one thing each, never raise
    def _on_connect(self, client: paho.Client, userdata: object, flags: object, rc: object,
                    props: object = None) -> None:
        if getattr(rc, "is_failure", False):
            _LOGGER.warning("Local broker refused the connection: %s", describe_rc(rc))
            return
        self.connected = True
        client.subscribe(TOPICS)
        _LOGGER.info("Connected to the local broker %s:%s", self.cfg.local_mqtt.host, self.cfg.local_mqtt.port)

    def _on_disconnect(self, client: paho.Client, userdata: object, flags: object, rc: object,
                       props: object = None) -> None:
        if self.connected and not self._stop.is_set():
            _LOGGER.warning("Lost the local broker: %s; reconnecting", describe_rc(rc))
        self.connected = False

    def _on_message(self, client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        # Blocking when full is the backpressure: the broker holds what we have not acknowledged.
        if self.queue.qsize() >= self.max_queue:
            self._wait_for_room()
        self.queue.put(_Msg(msg.topic, msg.payload, msg.mid, msg.qos))

    def _wait_for_room(self) -> None:
        while self.queue.qsize() >= self.max_queue and not self._stop.is_set():
            self._room.clear()
            if self.queue.qsize() < self.max_queue:
                break
            self._room.wait(0.1)  # set by the ingest thread after each batch; the timeout covers a race

    # -- lifecycle
    def start(self) -> None:
        """Connect (in the background, retrying) and start the ingest thread."""
        self._thread = threading.Thread(target=self._run, name="storegw-ingest", daemon=True)
        self._thread.start()
        self.client.connect_async(self.cfg.local_mqtt.host, self.cfg.local_mqtt.port, keepalive=30)
        self.client.loop_start()

    def stop(self) -> None:
        """Disconnect and stop the thread (unacknowledged messages stay with the broker)."""
        self._stop.set()
        self.connected = False
        try:
            self.client.disconnect()
            self.client.loop_stop()
        except OSError:
            pass
        if self._thread:
            self._thread.join(5)

    def _ack(self, mids: list[tuple[int, int]]) -> None:
        for mid, qos in mids:
            if qos:
                self.client.ack(mid, qos)

    def _run(self) -> None:
        while not self._stop.is_set():
            # Room at the writer first, then the batch: it then holds whatever arrived meanwhile.
            if not self._slots.acquire(timeout=0.5):
                self.last_progress = time.monotonic()
                continue
            try:
                submitted = self._take_batch()
            except BaseException:
                self._slots.release()
                raise
            if not submitted:
                self._slots.release()
            self.last_progress = time.monotonic()

    def _take_batch(self) -> bool:
        """Parse one batch from the queue and hand it to the writer; return whether a write was submitted."""
        try:
            first = self.queue.get(timeout=0.5)
        except queue.Empty:
            return False
        msgs = [first]
        get = self.queue.get_nowait
        while len(msgs) < self.batch:
            try:
                msgs.append(get())
            except queue.Empty:
                break
        if not self._room.is_set():
            self._room.set()
        max_payload = self.cfg.telemetry.max_payload
        received = now_ms()
        readings = []
        statuses: list[tuple[str, str]] = []
        acks: list[tuple[int, int]] = []
        bad: list[tuple[int, int]] = []
        for m in msgs:
            parts = m.topic.split("/")
            device = parts[1] if len(parts) == 3 else ""
            try:
                if parts[2:] == ["status"]:
                    statuses.append((device, _parse_status(device, m.payload)))
                else:
                    readings.append(parse(device, m.payload, received, max_payload))
                acks.append((m.mid, m.qos))
            except InvalidPayload as err:
                self.telemetry.stats.note_invalid(device or "?", err.reason)
                bad.append((m.mid, m.qos))
        self._ack(bad)  # nothing to keep; acknowledging stops redelivery of poison messages
        if not (readings or statuses):
            return False
        future = self.writer.submit(lambda conn, r=readings, s=statuses: self._write(conn, r, s),
                                    on_commit=lambda _, a=acks: self._ack(a))
        # Resolved (committed or failed) before on_commit runs: the next batch may start forming.
        future.add_done_callback(lambda _: self._slots.release())
        return True

    def _write(self, conn: object, readings: list, statuses: list[tuple[str, str]]) -> int:
        n = self.telemetry.write_batch(conn, readings) if readings else 0  # type: ignore[arg-type]
        for device, state in statuses:
            self.telemetry.status(conn, device, state)  # type: ignore[arg-type]
        return n


def _parse_status(device: str, payload: bytes) -> str:
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
