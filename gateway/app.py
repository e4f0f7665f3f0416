"""Wiring and lifecycle: ``build(config)`` makes a Gateway; nothing starts on import.

Start order: store (quarantine + migrations) → writer → alerts/telemetry state → hub and device
drivers → ingest → uplink → scheduler → web. Stop order is the reverse, so every acknowledged
write is committed before the process ends.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from gateway import __version__, domains
from gateway.config import Config
from gateway.core import pii
from gateway.core.models import now_ms, utcnow
from gateway.privacy import audit
from gateway.privacy.keys import Keyring, database_key
from gateway.privacy.service import KeyService
from gateway.spine import upstream
from gateway.spine.alerts import AlertManager
from gateway.spine.context import Periodic, ServiceContext
from gateway.spine.hub import Hub
from gateway.spine.ingest import Ingest
from gateway.spine.telemetry import Telemetry
from gateway.spine.uplink import Uplink
from gateway.store import Store, open_store, outbox
from gateway.store.outbox import depths

_LOGGER = logging.getLogger(__name__)

QUARANTINE_KEY = "gateway:db-quarantined"

# Open HTTP connections waitress accepts; every one may hold a request in memory while it arrives.
WEB_CONNECTIONS = 1000
WEB_MAX_HEADER = 8 * 1024  # request line + headers per request (waitress default: 256 KiB)
WEB_INBUF = 8 * 1024  # request body bytes kept in memory; the rest of a body goes to a temporary file


def web_buffer_limits(max_body: int) -> dict[str, int]:
    """Return waitress's per-connection buffer settings (docs/architecture.md, Memory).

    waitress's defaults let each connection hold up to 256 KiB of headers and 512 KiB of body in
    memory while the request arrives (``inbuf_overflow``) and read bodies of up to 1 GiB, all
    before the app sees the request: 300 slow uploads took RSS from 57 to 215 MB, and it stayed
    at 182 MB after they closed. Here a connection holds at most 8 KiB of headers and 8 KiB of
    body; a body over ``max_body`` (the app's MAX_CONTENT_LENGTH) is refused with 413 as soon as
    its Content-Length is read, without reading it.
    """
    return {"max_request_header_size": WEB_MAX_HEADER, "inbuf_overflow": WEB_INBUF,
            "max_request_body_size": max_body + 1,
            # select() cannot watch a descriptor above 1023: with hundreds of connections, each with a
            # temporary body file, waitress's loop raised ValueError and the web thread died
            "asyncore_use_poll": True}


def capped_channel(per_address: int, exempt: tuple[Any, ...]) -> type:
    """Return a waitress channel class that closes a connection at once when its address already holds
    ``per_address`` open ones (addresses in the ``exempt`` networks: no cap but the server's own).

    waitress caps connections only in total (``connection_limit``) and keeps an idle one for
    ``channel_timeout``: one phone that opened 1,100 idle connections locked every other client out
    (bench/attack.py). Counted per source address, which the client cannot choose.
    """
    import ipaddress
    from collections import Counter

    from waitress.channel import HTTPChannel

    def is_exempt(host: str) -> bool:
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(ip in net for net in exempt)

    class AddressCappedChannel(HTTPChannel):
        def __init__(self, server: Any, sock: Any, addr: Any, adj: Any, map: Any = None) -> None:  # noqa: A002
            counts = server.__dict__.setdefault("storegw_per_address", Counter())
            self.storegw_host = str(addr[0] if isinstance(addr, tuple | list) else addr)
            counts[self.storegw_host] += 1
            super().__init__(server, sock, addr, adj, map)
            if counts[self.storegw_host] > per_address and not is_exempt(self.storegw_host):
                self.close()

        def del_channel(self, map: Any = None) -> None:  # noqa: A002 - every way a channel closes ends here
            host = self.__dict__.pop("storegw_host", None)
            if host is not None:
                counts = self.server.storegw_per_address
                counts[host] -= 1
                if counts[host] <= 0:
                    del counts[host]
            super().del_channel(map)

    return AddressCappedChannel


class Gateway:
    """One running storegw: its store, loops, devices, jobs and web server."""

    def __init__(self, cfg: Config, store: Store) -> None:
        self.cfg = cfg
        self.store = store
        self.started_ms = now_ms()
        self.started_at = utcnow()
        self._t0 = time.monotonic()
        self.alerts = AlertManager(cfg.store.id, cfg.prefix)
        self.telemetry = Telemetry(cfg, self.alerts)
        self.hub = Hub(cfg, store.writer, self.alerts, self.telemetry)
        self.ingest = Ingest(cfg, self.telemetry, store.writer)
        self.uplink = Uplink(cfg, store.writer, store.read(), started_ms=self.started_ms)
        upstream.install()  # every outbox message is allowlisted per HQ's schema, free text redacted
        # Whatever commits a message to the outbox wakes the uplink; no caller has to remember to.
        store.writer.add_post_commit_hook(lambda: self.uplink.wake() if outbox.take_enqueued() else None)
        self.drivers: list[Any] = []
        self.services: dict[str, Any] = {}
        self.broker: Any = None
        self.scheduler: Any = None
        self.web_server: Any = None
        self.audit: audit.Checkpointer | None = None
        self.privacy_signer: Any = None
        self.privacy_restored = False
        self._notifier: Any = None
        self._stopping = threading.Event()
        self._on_stop: list[Callable[[], None]] = []
        self.privacy: KeyService | None = None  # keys, field cipher, rotation (set by build)
        self.tech: Any = None  # the technician page's service (provisioning/tech.py), set at start

    # -- lifecycle
    def start(self, *, web: bool = True, devices: bool = True) -> None:
        """Start every part; returns once they run in their threads."""
        from gateway import jobs

        if self.cfg.local_mqtt.embedded:
            from gateway.spine.broker import EmbeddedBroker

            self.broker = EmbeddedBroker(self.cfg.local_mqtt.host, self.cfg.local_mqtt.port)
            self.broker.start()
        self.store.start()
        if self.privacy is not None:
            self.privacy.start()
        from gateway.store import ensure_secret

        # Device ids and metric names that look like personal data get pseudonyms stable across restarts.
        pii.use_pseudonym_key(self.store.writer.call(lambda c: ensure_secret(c, "secret:pseudonym")))
        self.store.writer.call(self._load_state)
        if self.store.quarantined:
            self.store.writer.call(lambda c: self.alerts.raise_(
                c, QUARANTINE_KEY, kind="gateway", rule="db-quarantined", device="gateway", severity="critical",
                text=f"damaged database moved aside to {self.store.quarantined.name}; a fresh one was created"))
        self._start_audit()
        self._start_privacy()
        self._build_services()
        self._build_tech()
        self.hub.start()
        if devices:
            self._start_drivers()
        self.ingest.start()
        self.uplink.start()
        self.scheduler = jobs.build_scheduler(self)
        self.scheduler.start()
        if web:
            self._start_web()
        self.notify("READY=1")
        _LOGGER.info("storegw %s running for store %s", __version__, self.cfg.store.id)

    def stop(self) -> None:
        """Stop in reverse order; every acknowledged write is committed before returning."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        self.notify("STOPPING=1")
        if self.privacy is not None:
            self.privacy.stop()  # no rotation while stopping
        if self.web_server is not None:
            self.web_server.close()
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=False)
        for driver in self.drivers:
            try:
                driver.stop()
            except Exception:
                _LOGGER.exception("Stopping device %s failed", getattr(driver, "device_id", "?"))
        for fn in reversed(self._on_stop):
            fn()
        self.ingest.stop()
        self.hub.stop()
        self.uplink.stop()
        self.store.close()
        if self.privacy is not None:
            self.privacy.close()
        if self.broker is not None:
            self.broker.stop()

    def on_stop(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` when the gateway stops (before the store closes)."""
        self._on_stop.append(fn)

    def _load_state(self, conn: Any) -> None:
        self.alerts.load(conn)
        self.telemetry.load(conn)

    def _start_audit(self) -> None:
        """Sign audit checkpoints with the keyring's Ed25519 key: every ``audit.checkpoint_entries``
        appends on the writer (``audit.bind``), and periodically (``periodic``)."""
        if self.privacy is None:  # a Gateway made without ``build`` (no keyring): entries, no checkpoints
            _LOGGER.warning("No keyring: audit checkpoints are not signed or sent")
            return
        self.audit = audit.Checkpointer(self.cfg.prefix, self.cfg.store.id, self.privacy.ring.signer(),
                                        every_entries=self.cfg.audit.checkpoint_entries)
        checkpointer = self.audit

        def bind(c: Any) -> None:
            checkpointer.record_key(c)
            audit.bind(c, checkpointer)

        self.store.writer.call(bind)
        self.on_stop(lambda: self.store.writer.call(audit.unbind))

    def periodic(self) -> tuple[Periodic, ...]:
        """The gateway's own periodic jobs that are not a domain's (``gateway/jobs.py`` schedules them)."""
        jobs = []
        if self.audit is not None:
            jobs.append(Periodic("audit-checkpoint", self.cfg.audit.checkpoint_every,
                                 lambda: self.store.writer.submit(self.audit.periodic)))
        return tuple(jobs)
    def _start_privacy(self) -> None:
        """The retention job's signer; erasures re-applied to a database restored from an older backup."""
        from gateway.privacy.dsr import Tombstones

        ring = self.privacy.ring if self.privacy is not None else None
        self.privacy_signer = ring.signer() if ring is not None else _interim_signer(self.store)
        self.tombstones = Tombstones(self.cfg.data_path, key=ring.index_key("tombstone") if ring else None)
        self.privacy_restored = self.store.writer.call(self.tombstones.restored)
        if self.privacy_restored:
            again = self.store.writer.call(lambda c: self.tombstones.reapply(c, domains.INVENTORY, now_ms()))
            _LOGGER.warning("The database is older than the erasures and retention runs recorded beside it (a "
                            "restored backup): erasures re-applied (%s); retention runs at once", again or "none")

    def retention_run(self, now: int | None = None) -> Any:
        """One retention run through the writer, in batches (``gateway/privacy/retention.py``)."""
        from gateway.privacy import report, retention

        now = now_ms() if now is None else now
        w = self.store.writer
        result = retention.run(w.call, w.run_exclusive, domains.INVENTORY, now_ms=now, prefix=self.cfg.prefix,
                               store=self.cfg.store.id, signer=self.privacy_signer,
                               audit_head=audit.head,
                               next_run=report.next_run(self.cfg.privacy.retention_at, self.cfg.store.timezone, now))
        self.tombstones.record_run(now)
        return result

    def privacy_report(self, now: int | None = None) -> dict[str, Any]:
        """``storegw privacy report`` of the running gateway, for the auditor's page: counts and oldest
        record per category, next retention run, last receipt, unmasks this week (by reference), key
        versions. Never a value."""
        from gateway.privacy import report

        conn = self.store.read()
        versions = self.privacy.versions(conn) if self.privacy is not None else None
        return report.build(conn, domains.INVENTORY, now_ms=now_ms() if now is None else now,
                            tz=self.cfg.store.timezone, at=self.cfg.privacy.retention_at, key_versions=versions)

    def _build_services(self) -> None:
        """Build and start the domain services, in order (later ones may use earlier ones)."""
        for name, factory in domains.SERVICES:
            ctx = ServiceContext(self.cfg, self.store, self.hub, self.alerts, dict(self.services), self.privacy)
            svc = factory(ctx)
            self.services[name] = svc
            svc.start()
            self.on_stop(svc.stop)

    def _build_tech(self) -> None:
        """The technician page's service; doctor's checks run in it on demand (web cannot import provisioning)."""
        from provisioning.tech import TechService

        cfg = self.cfg

        def doctor() -> list[Any]:
            from provisioning.doctor import run_checks

            return run_checks(cfg, timeout=3.0)

        self.tech = TechService(cfg, self.hub, self.telemetry, self.ingest, self.alerts, self.store.writer,
                                self.services, doctor=doctor)

    def _start_drivers(self) -> None:
        from devices import cardref, registry
        from gateway.store import ensure_secret

        # Card readers turn card ids into refs with this gateway's secret (unless the chain's is set).
        cardref.use_gateway_secret(self.store.writer.call(lambda c: ensure_secret(c, "secret:card-ref")))
        for dev in self.cfg.devices:
            spec = registry.spec(dev.kind)
            if spec is None or spec.factory is None:
                continue  # e.g. printers: the print service runs them
            driver = spec.factory(dev)
            driver.start(self.hub)
            self.drivers.append(driver)

    def _start_web(self) -> None:
        from waitress import create_server

        from web import create_app

        host, _, port = self.cfg.web.listen.rpartition(":")
        app = create_app(self)
        self.web_server = create_server(app, host=host.strip("[]"), port=int(port), threads=self.cfg.web.threads,
                                        ident="storegw", clear_untrusted_proxy_headers=True,
                                        # a dinner rush keeps hundreds of phones connected (waitress default: 100)
                                        connection_limit=WEB_CONNECTIONS, channel_timeout=60,
                                        **web_buffer_limits(app.config["MAX_CONTENT_LENGTH"]))
        import ipaddress

        # exempt: NAT routers (many phones behind one address) and the board's own loopback address (a
        # TLS terminator in front of the gateway, ordering.https, connects from it for every phone)
        exempt = tuple(ipaddress.ip_network(n, strict=False) for n in (*self.cfg.ordering.nat_addresses,
                                                                           "127.0.0.1", "::1"))
        self.web_server.channel_class = capped_channel(self.cfg.web.connections_per_address, exempt)
        threading.Thread(target=self.web_server.run, name="storegw-web", daemon=True).start()

    # -- systemd
    def notify(self, state: str) -> None:
        """Send an sd_notify message when running under systemd (no-op otherwise)."""
        if self._notifier is None:
            import sdnotify

            self._notifier = sdnotify.SystemdNotifier()
        self._notifier.notify(state)

    def stalled_loops(self, max_age: float) -> list[str]:
        """Return the loops that made no progress within ``max_age`` seconds."""
        now = time.monotonic()
        stale = []
        w = self.store.writer
        if not w.alive or (w.pending and now - w.stats.last_commit_monotonic > max_age):
            stale.append("writer")
        if now - self.ingest.last_progress > max_age:
            stale.append("ingest")
        if self.uplink.connected and now - self.uplink.last_progress > max_age:
            stale.append("uplink")
        return stale

    def ingest_stats_sample(self) -> None:
        """Sample the ingest counter for the rate in health."""
        self.telemetry.stats.sample()

    # -- views
    def health(self) -> dict[str, Any]:
        """Return the C5 health document: states and counters, no personal data."""
        conn = self.store.read()
        lanes = depths(conn)
        w = self.store.writer
        stats = self.telemetry.stats
        stale = self.stalled_loops(60)
        status = "ok"
        if stale or not w.alive:
            status = "failing"
        elif self.cfg.uplink.enabled and not self.uplink.connected:
            status = "degraded"
        doc: dict[str, Any] = {
            "status": status,
            "version": __version__,
            "store": self.cfg.store.id,
            "started_at": self.started_at.isoformat().replace("+00:00", "Z"),
            "uptime_s": round(time.monotonic() - self._t0, 1),
            "db": {"ok": w.alive, "pending_writes": w.pending, "transactions": w.stats.transactions,
                   "failed_writes": w.stats.failed,
                   "quarantined": self.store.quarantined.name if self.store.quarantined else None},
            "local_mqtt": {"connected": self.ingest.connected},
            "uplink": {"connected": self.uplink.connected, "sent": self.uplink.sent, "acked": self.uplink.acked,
                       "last_error": self.uplink.last_error or None},
            "outbox": {lane.lane: {"depth": lane.depth, "bytes": lane.bytes, "oldest_age_s": lane.oldest_age_s}
                       for lane in lanes},
            "ingest": {"rate_per_s": stats.rate(), "committed": stats.committed, "duplicates": stats.duplicates,
                       "invalid": stats.invalid_summary(), "invalid_total": sum(stats.invalid.values()),
                       "dropped": stats.dropped + self.hub.dropped},
            "alerts": {"active": len(self.alerts.active), "raised": self.alerts.raised_total,
                       "cleared": self.alerts.cleared_total, "last": self.alerts.last},
            "devices": [d.as_dict() for d in self.hub.devices.values()],
            "stalled": stale,
        }
        if self.privacy is not None:
            doc["keys"] = self.privacy.health()
        for name, svc in self.services.items():
            fn = getattr(svc, "health", None)
            if fn is not None:
                doc[name] = fn()
        # Tripwire counts by kind (never values): input masking, log and upstream filters, pseudonyms.
        privacy = doc.setdefault("privacy", {})
        privacy["redacted"] = pii.redacted_counts()
        privacy["dropped_members"] = upstream.dropped_total()
        return doc


def _interim_signer(store: Store) -> Any:
    """A Gateway built without the keyring (tests): an Ed25519 seed in the store's secrets."""
    from gateway.privacy.retention import InterimSigner
    from gateway.store import ensure_secret

    return InterimSigner(store.writer.call(lambda c: ensure_secret(c, "secret:privacy-receipt-key")))


def build(cfg: Config) -> Gateway:
    """Open the keyring and the store and wire a Gateway for this config (nothing runs until ``start``).

    The database key comes from the keyring (``gateway.privacy.keys``), outside the data dir; the
    gateway holds the keys directory's lock until it stops, so no offline rotation runs beside it.
    """
    ring = Keyring.open(cfg.keys_path)
    ring.acquire(wait=60)
    try:
        key = database_key(ring, cfg.data_path, cfg.store.key_file)
        store = open_store(cfg.data_path, cfg.store.key_file, domains.SCHEMAS, key=key)
    except BaseException:
        ring.release()
        raise
    gw = Gateway(cfg, store)
    gw.privacy = KeyService(cfg, ring, store)
    return gw
