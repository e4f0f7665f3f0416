"""The technician page, ``/tech``: devices live, tests, last frames, the broker's equipment, doctor, stickers.

Signed in as a technician (``tech``; raw bytes ``tech-raw``, gateway/staff/matrix.py), with the staff
pages' session, CSRF and CSP (the staff blueprint's guard and headers run here too). Everything goes
through the gateway's technician service (``gateway.tech``, provisioning/tech.py): web never imports
the hub, the store or provisioning. ``tech.js`` refreshes the live columns from ``/tech/live.json``;
without it the page is complete and reloads by hand.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, abort, current_app, g, jsonify, redirect, request, url_for

from gateway.core.errors import GatewayError
from gateway.core.text import free_text
from web.kit import services_of
from web.staff import views as staff_views
from web.staff.views import flash, need

bp = Blueprint("tech", __name__, url_prefix="/tech")
bp.before_request(staff_views._guard)  # the staff session, CSRF on every POST
bp.after_request(staff_views._headers)  # CSP, no-store, the session cookie
INPUT_KINDS = frozenset({"scanner", "em4100", "magstripe", "idcard", "mrz", "camera"})


def tech() -> Any:
    """The gateway's technician service, or 404 in a build without one."""
    svc = getattr(services_of(current_app), "tech", None)
    if svc is None:
        abort(404)
    return svc


def _who() -> str:
    return g.staff.name


def _known(device_id: str) -> dict[str, Any]:
    dev = next((d for d in tech().devices() if d["id"] == device_id), None)
    if dev is None:
        abort(404)
    return dev


@bp.get("/")
@need("tech")
def page() -> Any:
    """Devices, the broker's equipment, doctor's last run and the sticker sheet."""
    svc = tech()
    when, findings = svc.doctor_result()
    return staff_views._render("tech/page.html", devices=svc.devices(), equipment=svc.equipment(),
                               doctor_at=when, findings=findings, input_kinds=INPUT_KINDS)


@bp.get("/live.json")
@need("tech")
def live() -> Any:
    """What the page's live columns show, for tech.js."""
    svc = tech()
    return jsonify({"devices": svc.devices(), "equipment": svc.equipment()})


@bp.post("/print/<device_id>")
@need("tech")
def test_print(device_id: str) -> Any:
    """Queue the printer's self-test page (audited)."""
    dev = _known(device_id)
    if dev["kind"] != "escpos":
        flash(f"{device_id} is not a printer. 不是打印机。", "error")
    else:
        try:
            job = tech().test_print(device_id, _who())
            flash(f"Test page queued on {device_id} (job {job}). 测试页已发送。", "ok")
        except (GatewayError, KeyError) as err:
            flash(f"Test print failed: {err}", "error")
    return redirect(url_for("tech.page") + f"#dev-{device_id}", code=303)


@bp.post("/scan-test/<device_id>")
@need("tech")
def scan_test(device_id: str) -> Any:
    """Start a live scan test: the device's next event shows on the page."""
    dev = _known(device_id)
    tech().arm_scan_test(dev["id"])
    flash(f"Scan test on {device_id}: scan a barcode, place a card or swipe now. 请现在扫码/刷卡。", "ok")
    return redirect(url_for("tech.page") + f"#dev-{device_id}", code=303)


@bp.get("/device/<device_id>")
@need("tech")
def device(device_id: str) -> Any:
    """The device's last frames, decoded and masked; raw bytes on request."""
    dev = _known(device_id)
    return staff_views._render("tech/device.html", dev=dev, frames=tech().frames(device_id), raw=None)


@bp.post("/device/<device_id>/raw/<int:n>")
@need("tech-raw")
def raw(device_id: str, n: int) -> Any:
    """One frame's raw bytes, with a typed reason; audited (who, device, frame, reason; never the bytes)."""
    dev = _known(device_id)
    try:
        reason = free_text(request.form.get("reason", ""), 200)
    except (GatewayError, ValueError) as err:
        flash(str(err), "error")
        return redirect(url_for("tech.device", device_id=device_id), code=303)
    if len(reason) < 4:
        flash("Give a reason to see raw bytes (they can hold personal data). 请填写查看原因。", "error")
        return redirect(url_for("tech.device", device_id=device_id), code=303)
    try:
        shown = tech().raw_frame(device_id, n, _who(), reason)
    except KeyError as err:
        flash(str(err.args[0]), "error")
        return redirect(url_for("tech.device", device_id=device_id), code=303)
    return staff_views._render("tech/device.html", dev=dev, frames=tech().frames(device_id), raw=shown)


@bp.post("/doctor")
@need("tech")
def doctor() -> Any:
    """Run doctor's checks now (a few seconds) and show them with their fixes."""
    findings = tech().run_doctor()
    failed = sum(1 for f in findings if f["level"] == "FAIL")
    flash(f"Doctor: {failed} problem(s). 检查完成。", "error" if failed else "ok")
    return redirect(url_for("tech.page") + "#doctor", code=303)


@bp.get("/stickers.svg")
@need("tech")
def stickers() -> Any:
    """The A4 sheet of every table's QR sticker (SVG; `storegw tables sheet` makes the PDF)."""
    data = tech().sticker_sheet()
    if data is None:
        return Response("No tables yet: storegw tables add A1 A2 --config ...", status=404, mimetype="text/plain")
    return Response(data, mimetype="image/svg+xml",
                    headers={"Content-Disposition": 'inline; filename="stickers.svg"'})
