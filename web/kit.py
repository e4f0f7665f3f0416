"""What every page module shares: the gateway the app was created with, URL numbers, safe redirects."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from flask import Flask, request
from werkzeug.routing import BaseConverter, ValidationError

from gateway.core.errors import OrderingError
from gateway.core.text import parse_uint, parse_uint_or


def services_of(app: Flask) -> Any:
    """Return the gateway the app was created with (``create_app(services)``)."""
    return app.extensions["storegw"]


class AsciiIntConverter(BaseConverter):
    """``<int:...>`` in every route: ASCII digits only, no leading zero (``gateway.core.text.parse_uint``).

    Werkzeug's own accepts any Unicode digit its regex matches ("١", "１") and leading zeros.
    """

    regex = r"(?:0|[1-9][0-9]{0,17})"
    weight = 50

    def to_python(self, value: str) -> int:
        try:
            return parse_uint(value)
        except ValueError as err:
            raise ValidationError() from err

    def to_url(self, value: Any) -> str:
        return str(int(value))


def url_int(source: Any, name: str, default: int | None = None) -> int | None:
    """A number from the query string or a form (``request.args``/``request.form``): ASCII digits or ``default``."""
    return parse_uint_or(source.get(name), default)


def allowed_hosts(services: Any) -> set[str]:
    """Hosts a redirect may name: ``web.public_host`` (and ``web.listen``) of this gateway."""
    web = services.cfg.web
    return {h.lower() for h in (web.public_host, web.listen) if h}


def safe_path(target: Any, default: str, *, prefix: str = "/") -> str:
    """Return ``target`` when it is a same-origin relative path under ``prefix``, else ``default``.

    Refused: absolute and scheme-relative URLs (``//host``, ``/\\host``), anything with a control
    character, a space or a backslash (browsers treat ``\\`` as ``/``), and paths outside ``prefix``.
    """
    if not isinstance(target, str) or not target.startswith(prefix) or len(target) > 2000:
        return default
    if target.startswith(("//", "/\\")) or any(ch in target for ch in "\\ ") or not target.isprintable():
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path.startswith(prefix):
        return default
    return target


def same_origin_location(location: str, hosts: set[str]) -> str:
    """Keep a redirect on this gateway: a URL naming another host keeps only its path and query.

    Werkzeug builds the absolute URLs of its own redirects (``/t//x`` -> ``/t/x``, ``/staff`` ->
    ``/staff/``) from the request's ``Host`` header, which the client chooses.
    """
    try:
        parts = urlsplit(location)
    except ValueError:
        return "/"
    if not parts.netloc and not parts.scheme:
        return safe_path(location, "/")
    if parts.scheme in ("http", "https") and parts.netloc.lower() in hosts:
        return location
    path = parts.path if parts.path.startswith("/") else "/" + parts.path
    return safe_path(path + (f"?{parts.query}" if parts.query else ""), "/")


def client_address() -> str:
    """The requesting client's address (waitress clears proxy headers: this is the TCP peer)."""
    return request.remote_addr or "?"


def json_error(err: OrderingError) -> tuple[dict[str, Any], int]:
    """The JSON answer for a refused request: ``{"ok": false, "error", "code"}`` with the error's status."""
    return {"ok": False, "error": str(err), "code": err.code}, err.status
