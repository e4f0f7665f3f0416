"""The guest service (``[guests] enabled = true``): what the front-desk pages and the jobs call.

Reader events (``idcard`` from the SAM ID readers, ``mrz`` from passport readers) arrive on the
hub's dispatch thread with their decoded fields in ``sensitive``; they are kept **in memory only**
(at most ``MAX_SCANS``, for ``guests.scan_ttl``) to pre-fill the registration form, and stored only
when staff save the registration, encrypted. Pages see masked values only (server-side masking,
GB/T 35273 7.2); the audited unmask comes from the staff branch.

``clock`` is the service's time source (epoch ms): the tests advance it to check deadlines,
alerts and retention.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from gateway.core.errors import GuestError
from gateway.core.models import DeviceEvent, now_ms
from gateway.guests import authority, register, retention, rules, summary
from gateway.spine.context import Periodic, ServiceContext
from gateway.store.db import Connection

_LOGGER = logging.getLogger(__name__)

MAX_SCANS = 20
# Reader fields a form may not change (checked by the card's chip or the MRZ check digits); MRZ
# names have no check digit, so staff may correct ``name`` of an MRZ read.
_LOCKED = ("doc_type", "sex", "ethnicity", "birth_date", "doc_number", "address", "issuer", "valid_from",
           "valid_to", "nationality", "expiry", "photo")


def build(ctx: ServiceContext) -> GuestService:
    """Build the guest service for a gateway (``gateway.domains.SERVICES``)."""
    return GuestService(ctx)


class GuestService:
    """Hotel guest registration of one store."""

    def __init__(self, ctx: ServiceContext) -> None:
        self.cfg = ctx.cfg
        self.gcfg = ctx.cfg.guests
        self.enabled = self.gcfg.enabled
        self.store_id = ctx.cfg.store.id
        self.alerts = ctx.alerts
        self.hub = ctx.hub
        self._store = ctx.store
        self.writer = ctx.store.writer
        if ctx.privacy is None:
            raise GuestError("guest registration needs the keyring's field cipher")
        self.cipher = ctx.privacy.cipher
        self.tz: dt.tzinfo = ZoneInfo(ctx.cfg.store.timezone)
        self.drop_dir = ctx.cfg.authority_path
        self.ack_dir = Path(self.gcfg.ack_dir) if self.gcfg.ack_dir else self.drop_dir / "ack"
        self.clock: Callable[[], int] = now_ms
        self._scans: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._lock = threading.Lock()
        self.counters = {"scans": 0, "registered": 0, "refused": 0, "purged": 0}

    def now(self) -> int:
        """The service's clock (epoch ms)."""
        return self.clock()

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Listen to the ID and MRZ readers (only when enabled)."""
        if self.enabled:
            self.hub.subscribe("idcard", self._on_document)
            self.hub.subscribe("mrz", self._on_document)

    def stop(self) -> None:
        """Forget the documents read but not saved."""
        with self._lock:
            self._scans.clear()

    def periodic(self) -> tuple[Periodic, ...]:
        """Authority outbox and alerts (30 s), summaries (5 min), retention purge (hourly)."""
        if not self.enabled:
            return ()
        return (Periodic("guests-tick", 30.0, self.tick),
                Periodic("guests-summary", 300.0, self.send_summaries),
                Periodic("guests-purge", 3600.0, self.purge))

    def health(self) -> dict[str, Any]:
        """Counts for /api/v1/health (no personal data)."""
        if not self.enabled:
            return {"enabled": False}
        conn = self._read()
        in_house = conn.execute("SELECT count(*) FROM guest_stays WHERE checked_out_ms IS NULL").fetchone()[0]
        unsent = conn.execute("SELECT count(*) FROM guest_reports WHERE state IN ('due', 'failed')").fetchone()[0]
        return {"enabled": True, "in_house_stays": in_house, "reports_unsent": unsent, **self.counters}

    def _read(self) -> Connection:
        return self._store.read()

    def _need(self) -> None:
        if not self.enabled:
            raise GuestError("Guest registration is off ([guests] enabled = false). 未启用宾客登记。",
                             code="disabled", status=404)

    # ------------------------------------------------------------------ reader events (hub thread)
    def _on_document(self, event: DeviceEvent) -> None:
        today = dt.datetime.fromtimestamp(self.now() / 1000, self.tz).date()
        if event.kind == "idcard":
            values = rules.from_idcard(event.sensitive)
        else:
            values = rules.from_mrz(event.sensitive, today)
        values["source"] = event.kind
        scan_id = secrets.token_urlsafe(9)
        with self._lock:
            self._scans[scan_id] = {"values": values, "ts": self.now(), "device": event.device, "kind": event.kind}
            while len(self._scans) > MAX_SCANS:
                self._scans.popitem(last=False)
        self.counters["scans"] += 1

    def _live_scans(self) -> list[tuple[str, dict[str, Any]]]:
        cutoff = self.now() - int(self.gcfg.scan_ttl * 1000)
        with self._lock:
            for key in [k for k, v in self._scans.items() if v["ts"] < cutoff]:
                del self._scans[key]
            return list(self._scans.items())

    def scans(self) -> list[dict[str, Any]]:
        """Documents read at the desk and not yet saved, newest first, masked."""
        self._need()
        out = []
        for scan_id, s in reversed(self._live_scans()):
            v = s["values"]
            out.append({"id": scan_id, "kind": s["kind"], "device": s["device"], "ts_ms": s["ts"],
                        "doc_type": v["doc_type"], "name": rules.masked_name(v.get("name", "")),
                        "number": rules.masked_number(v["doc_type"], v.get("doc_number", ""))})
        return out

    def scan_form(self, scan_id: str) -> dict[str, Any] | None:
        """What the form shows of a read document: the name in full (staff compare it with the person
        and, for an MRZ, correct it), the number and address masked, the other details as read."""
        self._need()
        found = dict(self._live_scans()).get(scan_id)
        if found is None:
            return None
        v = found["values"]
        show = {k: v[k] for k in ("doc_type", "name", "sex", "ethnicity", "birth_date", "issuer", "valid_from",
                                  "valid_to", "nationality", "expiry") if v.get(k)}
        show["number"] = rules.masked_number(v["doc_type"], v.get("doc_number", ""))
        if v.get("address"):
            show["address"] = rules.masked_address(v["address"])
        show["photo"] = bool(v.get("photo"))
        show["kind"] = found["kind"]
        return show

    # ------------------------------------------------------------------ front desk (staff pages)
    def register(self, form: Mapping[str, Any], who: str, stay_id: int | None = None) -> tuple[int, int]:
        """Register a guest from the front-desk form (with the read document ``scan`` if any); a new stay
        when ``stay_id`` is None, else a co-occupant. Refused with a message naming every missing field."""
        self._need()
        values = {k: v for k, v in form.items() if isinstance(v, str)}
        values.pop("photo", None)  # only a reader provides the photo
        values["source"] = "manual"
        scan_id = form.get("scan") or ""
        if scan_id:
            found = dict(self._live_scans()).get(scan_id)
            if found is None:
                raise GuestError("读取的证件已过期，请重新读卡。The document read has expired; read it again.",
                                 code="scan_expired", status=409)
            read = found["values"]
            for key in _LOCKED:
                if read.get(key):
                    values[key] = read[key]
            if found["kind"] == "idcard" or not values.get("name"):
                values["name"] = read.get("name", "")
            values["source"] = found["kind"]
        try:
            result = self.writer.call(lambda c: register.register(self, c, values, who, stay_id))
        except GuestError:
            self.counters["refused"] += 1
            raise
        if scan_id:
            with self._lock:
                self._scans.pop(scan_id, None)
        self.counters["registered"] += 1
        return result

    def checkout(self, stay_id: int, who: str) -> int:
        """Close a stay; audited."""
        self._need()
        return self.writer.call(lambda c: register.checkout(self, c, stay_id, who))

    def stays(self, *, open_only: bool = True) -> list[dict[str, Any]]:
        """In-house (or recent) stays with masked guests."""
        self._need()
        return register.stays(self, self._read(), open_only=open_only)

    def stay(self, stay_id: int) -> dict[str, Any] | None:
        """One stay with masked guests."""
        self._need()
        return register.stay(self, self._read(), stay_id)

    def adults(self, stay_id: int) -> list[dict[str, Any]]:
        """The adults of a stay (masked), for a minor's relationships."""
        found = self.stay(stay_id)
        if found is None:
            return []
        return [g for g in found["guests"] if not g["minor"] and not g["purged"]]

    def local_input(self, ms: int) -> str:
        """``YYYY-MM-DDTHH:MM`` in the store's zone, for datetime-local inputs."""
        return dt.datetime.fromtimestamp(ms / 1000, self.tz).strftime("%Y-%m-%dT%H:%M")

    # ------------------------------------------------------------------ authority reports (manager)
    def reports(self) -> list[dict[str, Any]]:
        """The authority outbox, newest first (no values)."""
        self._need()
        return authority.reports(self, self._read())

    def send_report(self, report_id: int, who: str) -> str:
        """Hand a due or failed report to the adapter; audited."""
        self._need()
        return self.writer.call(lambda c: authority.send(self, c, report_id, who))

    def ack_report(self, report_id: int, who: str) -> None:
        """Mark a sent report acknowledged (its payload copy is discarded); audited."""
        self._need()
        self.writer.call(lambda c: authority.acknowledge(self, c, report_id, who))

    def fail_report(self, report_id: int, who: str, why: str) -> None:
        """Mark a sent report refused by the police system; audited."""
        self._need()
        self.writer.call(lambda c: authority.fail(self, c, report_id, who, why or "refused"))

    # ------------------------------------------------------------------ jobs
    def tick(self) -> dict[str, int]:
        """Answers from the police system, automatic sends, deadline alerts."""
        if not self.enabled:
            return {}
        return self.writer.call(lambda c: authority.tick(self, c))

    def send_summaries(self) -> int:
        """Queue the hourly P/guests/summary messages."""
        if not self.enabled:
            return 0
        return self.writer.call(lambda c: summary.hourly(self, c))

    def purge(self) -> dict[str, Any]:
        """Delete what is past its retention (the retention job will call this); return the receipt."""
        receipt = self.writer.call(lambda c: retention.purge(self, c))
        if any(receipt["counts"].values()):
            self.writer.run_exclusive(retention.scrub_wal)
            self.counters["purged"] += sum(receipt["counts"].values())
        return receipt
