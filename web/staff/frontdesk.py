"""Front-desk pages (``[guests] enabled = true``): register guests from the ID or MRZ reader, stays,
checkout, and the manager's authority-report outbox.

Routes on the staff blueprint (same sign-in, CSRF and roles). ``guests`` lets a cashier or manager
register and check out; ``authority`` (managers) sends and settles police reports. Every value the
pages show is masked by the service; the form shows a read document's name in full so staff can
compare it with the guest (an MRZ name has no check digit), never its number. Labels follow the
page language (``?lang=zh|en``, else Accept-Language); refusals are in both.
"""

from __future__ import annotations

import time
from typing import Any

from flask import Response, abort, current_app, g, redirect, request, url_for

from gateway.core.errors import GuestError, OrderingError
from gateway.core.text import parse_uint_or
from gateway.guests.rules import DOC_TYPES, LABELS
from web.kit import services_of
from web.staff.views import _act, _render, bp, flash, need, staff


def guests() -> Any:
    """The guest service, or 404 when guest registration is off."""
    svc = services_of(current_app).services.get("guests")
    if svc is None or not svc.enabled:
        abort(404)
    return svc


def _lang() -> str:
    return request._storegw_lang  # type: ignore[attr-defined]


def _t(en: str, zh: str) -> str:
    return zh if _lang() == "zh" else en


def _label(name: str) -> str:
    en, zh = LABELS.get(name, (name, name))
    return _t(en, zh)


def _doc(name: str) -> str:
    en, zh = DOC_TYPES.get(name, (name, name))
    return _t(en, zh)


def _when(ms: int | None) -> str:
    return time.strftime("%m-%d %H:%M", time.localtime(ms / 1000)) if ms else "-"


def _page(template: str, status: int = 200, **kw: Any) -> Response:
    html = _render(template, t=_t, L=_label, doc=_doc, when=_when, lang_q=_lang(), **kw)
    return Response(html, status=status)


def _form_page(status: int = 200, error: str = "", bad: tuple[str, ...] = (), values: Any = None) -> Response:
    svc = guests()
    scan_id = request.values.get("scan", "")
    stay_id = request.values.get("stay", "")
    stay_no = parse_uint_or(stay_id)  # "²".isdigit() is true and int("²") raises: a 500
    stay = svc.stay(stay_no) if stay_no is not None else None
    if stay is not None and stay["checked_out_ms"] is not None:
        stay = None
    scan = svc.scan_form(scan_id) if scan_id else None
    now = svc.now()
    defaults = {"check_in": svc.local_input(now), "expected_out": svc.local_input(now + 86_400_000)}
    return _page("staff/frontdesk.html", status, scans=svc.scans(), scan=scan, scan_id=scan_id if scan else "",
                 stay=stay, adults=svc.adults(stay["id"]) if stay else [], stays=svc.stays(),
                 values=values if values is not None else defaults, error=error, bad=set(bad),
                 doc_types=list(DOC_TYPES), fields_of=FORM_FIELDS)


# Inputs of a manual entry (or the fields a reader did not give), in order.
FORM_FIELDS = ("name", "sex", "birth_date", "doc_number", "nationality", "ethnicity", "address", "issuer",
               "valid_from", "valid_to", "expiry", "visa_type", "visa_valid_to")


@bp.get("/frontdesk")
@need("guests")
def frontdesk() -> Any:
    """Documents read at the desk, the registration form, guests in house."""
    return _form_page()


@bp.get("/frontdesk/scans.json")
@need("guests")
def frontdesk_scans() -> Any:
    """Documents read and not yet saved (masked), for the page's script."""
    return {"scans": [{"id": s["id"], "kind": s["kind"], "doc": _doc(s["doc_type"]), "name": s["name"],
                       "number": s["number"]} for s in guests().scans()]}


@bp.post("/frontdesk/register")
@need("guests")
def frontdesk_register() -> Any:
    """Save a registration; refused (with the form kept) while a required field is missing."""
    svc = guests()
    stay_id = request.form.get("stay", "")
    try:
        sid, _ = svc.register(request.form, g.staff.name, parse_uint_or(stay_id))
    except GuestError as err:
        return _form_page(400, str(err), err.fields, request.form)
    except OrderingError as err:
        return _form_page(err.status, str(err), (), request.form)
    flash(_t("Guest registered.", "登记成功。"), "ok")
    return redirect(url_for("staff.frontdesk_stay", stay_id=sid, lang=_lang()), code=303)


@bp.get("/frontdesk/stays/<int:stay_id>")
@need("guests")
def frontdesk_stay(stay_id: int) -> Any:
    """One stay: its guests (masked), add a co-occupant, checkout."""
    svc = guests()
    found = svc.stay(stay_id)
    if found is None:
        abort(404)
    return _page("staff/frontdesk_stay.html", stay=found, scans=svc.scans() if found["checked_out_ms"] is None else [],
                 reveal=_reveal_kind)


def _reveal_kind(doc_type: str) -> str | None:
    """The unmask page (``id`` or ``passport``) for a guest's document number, when this member's role
    may reveal it (a manager: reason and a fresh authenticator code, audited); else None."""
    kind = staff().unmask_kind("guest_people.doc_number_ct", doc_type)
    return kind if kind is not None and g.staff.can(f"unmask-{kind}") else None


@bp.post("/frontdesk/stays/<int:stay_id>/checkout")
@need("guests")
def frontdesk_checkout(stay_id: int) -> Any:
    """Checkout: the stay closes; retention counts from now."""
    return _act(url_for("staff.frontdesk", lang=_lang()), guests().checkout, stay_id, g.staff.name)


@bp.get("/frontdesk/reports")
@need("authority")
def frontdesk_reports() -> Any:
    """The authority outbox (managers): states, deadlines, attempts; never a value."""
    return _page("staff/frontdesk_reports.html", reports=guests().reports())


@bp.post("/frontdesk/reports/<int:report_id>/<action>")
@need("authority")
def frontdesk_report_action(report_id: int, action: str) -> Any:
    """Send (or resend), mark acknowledged, or mark refused; audited."""
    svc = guests()
    back = url_for("staff.frontdesk_reports", lang=_lang())
    if action == "send":
        return _act(back, svc.send_report, report_id, g.staff.name)
    if action == "ack":
        return _act(back, svc.ack_report, report_id, g.staff.name)
    if action == "fail":
        return _act(back, svc.fail_report, report_id, g.staff.name, request.form.get("why", "")[:120])
    return abort(404)


@bp.app_context_processor
def _guests_nav() -> dict[str, Any]:
    """``guests_on`` for the staff bar's Front desk link."""
    svc = services_of(current_app).services.get("guests")
    return {"guests_on": bool(svc is not None and svc.enabled)}
