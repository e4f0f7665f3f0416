"""The daily store report (on the staff blueprint): the day's numbers with SVG charts (sales by hour
against the baseline, the served-time distribution), a print-ready view, and the receipt summary on
the receipt printer. Today's report is computed as of now; a past day shows the report stored at close
(or is computed when none was)."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from flask import abort, current_app, request, url_for
from markupsafe import Markup

from gateway.core.errors import OrderingError
from web import report_charts
from web.kit import services_of
from web.staff.views import _done, _render, bp, flash, need

_DAY = re.compile(r"^20[0-9]{2}-[01][0-9]-[0-3][0-9]$")


def health() -> Any:
    """The store-health service (404 in a build without one)."""
    svc = services_of(current_app).services.get("health")
    if svc is None:
        abort(404)
    return svc


def _day(svc: Any, text: str | None) -> str:
    from gateway.core.models import now_ms

    if not text:
        return svc.report_day(now_ms())
    if not _DAY.match(text):
        abort(404)
    try:
        dt.date.fromisoformat(text)
    except ValueError:
        abort(404)
    return text


def _report(svc: Any, day: str) -> dict[str, Any]:
    return svc.stored(day) or svc.build_report(day)


def _charts(rep: dict[str, Any]) -> dict[str, Markup]:
    edges = rep["served_buckets_min"]
    labels = [f"<{edges[0]}"] + [f"{a}-{b}" for a, b in zip(edges, edges[1:], strict=False)] + [f">={edges[-1]}"]
    return {
        "sales": Markup(report_charts.sales_by_hour(  # noqa: S704 - built from numbers and escaped labels
            rep["dishes_by_hour"], rep["baseline_by_hour"],
            f"Dishes per hour on {rep['day']} (bars) against the same weekday's usual (line)")),
        "served": Markup(report_charts.distribution(  # noqa: S704
            rep["served_histogram"], [f"{s} min" for s in labels], "Minutes from order to served, dishes per bucket")),
    }


@bp.get("/report")
@need("reports")
def report_home() -> Any:
    """The day's report (``?day=YYYY-MM-DD``; default: the business day now)."""
    return _report_page(printable=False)


@bp.get("/report/print")
@need("reports")
def report_print() -> Any:
    """The print-ready page of a day's report (the browser's Print; a print stylesheet drops the navigation)."""
    return _report_page(printable=True)


def _report_page(*, printable: bool) -> str:
    svc = health()
    day = _day(svc, request.args.get("day"))
    rep = _report(svc, day)
    return _render("staff/report.html", r=rep, charts=_charts(rep), days=[] if printable else svc.days(),
                   stored=svc.stored(day) is not None, printable=printable)


@bp.post("/report/receipt")
@need("reports")
def report_receipt() -> Any:
    """Print the day's summary on the receipt printer."""
    svc = health()
    day = _day(svc, request.form.get("day"))
    back = url_for("staff.report_home", day=day)
    try:
        svc.print_summary(day)
    except OrderingError as err:
        return _done(back, err)
    flash("Sent to the receipt printer. 已发送到小票打印机。", "ok")
    return _done(back)
