"""Tables, their signed QR tokens, and QR images and sticker sheets (segno; the PDF through reportlab).

A token is ``TABLE.VERSION.SIG`` where SIG is an HMAC-SHA256 over (store, table, version) with a
per-store secret kept in the database (never in config). Rotating a table bumps its version, so a
leaked photo of the old sticker stops working.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import re
from dataclasses import dataclass

from gateway.core import text as textclean
from gateway.core.errors import OrderingError
from gateway.core.text import same_secret
from gateway.store import ensure_secret as store_secret
from gateway.store.db import Connection

TABLE_RE = re.compile(r"^[A-Za-z0-9_-]{1,16}$")
SECRET_KEY = "secret"


@dataclass(frozen=True)
class Table:
    """A table and its current token version."""

    id: str
    label: str
    version: int
    area: str = ""
    seats: int = 4


def ensure_secret(conn: Connection) -> bytes:
    """Return the per-store signing secret, creating it on first run (inside a write transaction)."""
    return store_secret(conn, SECRET_KEY, table="ord_meta")


def _sig(secret: bytes, store: str, table: str, version: int) -> str:
    mac = hmac.new(secret, f"table|{store}|{table}|{version}".encode(), hashlib.sha256).digest()[:16]
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def make_token(secret: bytes, store: str, table: Table) -> str:
    """Return the signed token printed in a table's QR code."""
    return f"{table.id}.{table.version}.{_sig(secret, store, table.id, table.version)}"


def parse_token(secret: bytes, store: str, token: str) -> tuple[str, int]:
    """Verify a token's signature; return (table id, version) or raise OrderingError."""
    parts = token.split(".")
    version = textclean.parse_uint_or(parts[1], max_digits=9) if len(parts) == 3 else None
    if version is None or not TABLE_RE.fullmatch(parts[0]):
        raise OrderingError("This table code is not valid. 桌码无效。", code="bad_token", status=404)
    table = parts[0]
    if not same_secret(parts[2], _sig(secret, store, table, version)):
        raise OrderingError("This table code is not valid. 桌码无效。", code="bad_token", status=404)
    return table, version


def sign(secret: bytes, purpose: str, value: str) -> str:
    """Return a short MAC binding ``value`` to a purpose (diner form tokens, ticket codes)."""
    mac = hmac.new(secret, f"{purpose}|{value}".encode(), hashlib.sha256).digest()[:12]
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def list_tables(conn: Connection) -> list[Table]:
    """Return every table in display order."""
    return [Table(*r) for r in conn.execute(
        "SELECT id, label, version, area, seats FROM ord_tables ORDER BY pos, id")]


def upsert_table(conn: Connection, table_id: str, label: str = "", area: str = "", seats: int = 4) -> None:
    """Create a table (or update its label) inside the caller's transaction."""
    if not TABLE_RE.fullmatch(table_id):
        raise OrderingError(f"table id {table_id!r}: expected 1-16 of A-Z a-z 0-9 _ -")
    label, area = textclean.free_text(label, 32), textclean.free_text(area, 32)
    pos = conn.execute("SELECT coalesce(max(pos), 0) + 1 FROM ord_tables").fetchone()[0]
    conn.execute("INSERT INTO ord_tables (id, pos, label, area, seats) VALUES (?, ?, ?, ?, ?) "
                 "ON CONFLICT (id) DO UPDATE SET label = excluded.label, area = excluded.area, "
                 "seats = excluded.seats", (table_id, pos, label or table_id, area, seats))


def rotate(conn: Connection, table_id: str) -> int:
    """Bump a table's token version (old stickers stop working); return the new version."""
    cur = conn.execute("UPDATE ord_tables SET version = version + 1 WHERE id = ?", (table_id,))
    if cur.rowcount != 1:
        raise OrderingError(f"no table {table_id!r}", code="no_table", status=404)
    return int(conn.execute("SELECT version FROM ord_tables WHERE id = ?", (table_id,)).fetchone()[0])


def table_url(public_host: str, token: str, *, https: bool = False) -> str:
    """Return the URL a table's QR code points at."""
    return f"{'https' if https else 'http'}://{public_host}/t/{token}"


def qr_bytes(url: str, kind: str, scale: int = 8) -> bytes:
    """Render one QR code as PNG or SVG bytes."""
    import segno  # here: the daemon draws QR codes only when staff print stickers (docs/architecture.md, Memory)

    buf = io.BytesIO()
    segno.make(url, error="m", micro=False).save(buf, kind=kind, scale=scale, border=2)
    return buf.getvalue()


# -- sticker sheets: A4, 3 x 4 stickers a page; every QR code comes from segno, the PDF from reportlab.

PAGE_W, PAGE_H = 210.0, 297.0  # A4, mm
COLS, ROWS = 3, 4
MARGIN_X, MARGIN_Y, GAP = 9.0, 10.0, 3.0
CELL_W = (PAGE_W - 2 * MARGIN_X - (COLS - 1) * GAP) / COLS  # 62 mm
CELL_H = (PAGE_H - 2 * MARGIN_Y - (ROWS - 1) * GAP) / ROWS  # 67 mm
QR_BOX = 46.0  # mm, quiet zone included
QR_BORDER = 4  # modules of quiet zone inside QR_BOX (the standard's minimum)
HEADING_MM, CAPTION_MM, STORE_MM = 7.0, 3.8, 3.0  # font sizes (em height)
CAPTION = "扫码点餐 Scan to order"
PDF_FONT = "STSong-Light"  # Adobe's standard Chinese font: readers supply it, nothing is embedded


def sticker_heading(label: str) -> str:
    """Return the bilingual heading for a table's sticker: ``桌 Table A1`` for a table code, else the label."""
    label = label.strip()
    return f"桌 Table {label}" if TABLE_RE.match(label) else label


def _slot(i: int) -> tuple[int, float, float]:
    """Return (page, x, y) in mm, from the page's top left, of sticker ``i``."""
    page, slot = divmod(i, COLS * ROWS)
    row, col = divmod(slot, COLS)
    return page, MARGIN_X + col * (CELL_W + GAP), MARGIN_Y + row * (CELL_H + GAP)


def _approx_width(text: str, size: float) -> float:
    """Return a rough rendered width (CJK and full-width glyphs 1 em, others 0.6 em)."""
    return sum(size if ord(ch) >= 0x2E80 else 0.6 * size for ch in text)


def _fit(text: str, size: float, width: float = CELL_W - 6) -> float:
    """Return the font size, shrunk if needed, at which the text fits the sticker's width (estimated widths)."""
    w = _approx_width(text, size)
    return size if w <= width else max(size * width / w, 2.0)


def _esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def sheet_svg(stickers: list[tuple[str, str]], store_name: str = "") -> bytes:
    """Return an SVG sheet of labelled QR stickers, (label, url) each: A4 pages stacked top to bottom.

    Each QR code is segno's own SVG, nested at its sticker's place.
    """
    import segno

    pages = max(1, -(-len(stickers) // (COLS * ROWS)))
    h = PAGE_H * pages
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{PAGE_W:g}mm" height="{h:g}mm" '
             f'viewBox="0 0 {PAGE_W:g} {h:g}" font-family="sans-serif">',
             f'<rect width="{PAGE_W:g}" height="{h:g}" fill="#fff"/>']
    for i, (label, url) in enumerate(stickers):
        page, x, y = _slot(i)
        y += page * PAGE_H
        heading = sticker_heading(label)
        qr = segno.make(url, error="m", micro=False)
        scale = QR_BOX / qr.symbol_size(scale=1, border=QR_BORDER)[0]
        qr_svg = qr.svg_inline(scale=scale, border=QR_BORDER, svgclass=None, lineclass=None)
        cx = CELL_W / 2
        parts.append(f'<g class="sticker" transform="translate({x:g},{y:g})">')
        parts.append(f'<rect width="{CELL_W:g}" height="{CELL_H:g}" fill="none" stroke="#999" stroke-width="0.3" '
                     'stroke-dasharray="2,1"/>')
        parts.append(f'<text x="{cx:g}" y="9" font-size="{_fit(heading, HEADING_MM):.2f}" text-anchor="middle" '
                     f'font-weight="bold">{_esc(heading)}</text>')
        parts.append(f'<g transform="translate({(CELL_W - QR_BOX) / 2:g},11.5)">{qr_svg}</g>')
        parts.append(f'<text x="{cx:g}" y="{CELL_H - 6.5:g}" font-size="{CAPTION_MM:g}" text-anchor="middle">'
                     f"{CAPTION}</text>")
        if store_name:
            parts.append(f'<text x="{cx:g}" y="{CELL_H - 2.5:g}" font-size="{_fit(store_name, STORE_MM):.2f}" '
                         f'text-anchor="middle">{_esc(store_name)}</text>')
        parts.append("</g>")
    parts.append("</svg>")
    return "\n".join(parts).encode()


def sheet_pdf(stickers: list[tuple[str, str]], store_name: str = "") -> bytes:
    """Return a multi-page A4 PDF of labelled QR stickers, (label, url) each.

    reportlab is imported here, not at module level: only ``storegw tables sheet`` pays for it, never
    the running gateway. Labels use the CID font STSong-Light (Chinese and Latin; no font file needed).
    QR modules are segno's matrix drawn as vector rectangles.
    """
    import segno
    from reportlab.lib.units import mm
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.cidfonts import UnicodeCIDFont
    from reportlab.pdfgen import canvas

    if PDF_FONT not in pdfmetrics.getRegisteredFontNames():
        pdfmetrics.registerFont(UnicodeCIDFont(PDF_FONT))
    buf = io.BytesIO()
    c = canvas.Canvas(buf, pagesize=(PAGE_W * mm, PAGE_H * mm), invariant=True, pageCompression=1)
    c.setTitle(f"{store_name} 桌码 Table QR stickers".strip())
    c.setCreator("storegw")

    def text(s: str, size_mm: float, x_mm: float, y_mm: float, *, max_w: float = CELL_W - 6) -> None:
        size = size_mm * mm
        width = pdfmetrics.stringWidth(s, PDF_FONT, size)
        if width > max_w * mm:
            size *= max_w * mm / width
        c.setFont(PDF_FONT, size)
        c.drawCentredString(x_mm * mm, (PAGE_H - y_mm) * mm, s)

    for i, (label, url) in enumerate(stickers):
        page, x, y = _slot(i)
        if i and not i % (COLS * ROWS):
            c.showPage()
        c.setStrokeGray(0.6)
        c.setLineWidth(0.3 * mm)
        c.setDash(2 * mm, 1 * mm)
        c.rect(x * mm, (PAGE_H - y - CELL_H) * mm, CELL_W * mm, CELL_H * mm, stroke=1, fill=0)
        c.setDash()
        c.setFillGray(0)
        cx = x + CELL_W / 2
        text(sticker_heading(label), HEADING_MM, cx, y + 9)
        qr = segno.make(url, error="m", micro=False)
        mod = QR_BOX / qr.symbol_size(scale=1, border=QR_BORDER)[0]
        ox, oy = x + (CELL_W - QR_BOX) / 2 + QR_BORDER * mod, y + 11.5 + QR_BORDER * mod
        path = c.beginPath()
        for r, row in enumerate(qr.matrix):
            c0 = None
            for col, bit in enumerate([*row, 0]):
                if bit and c0 is None:
                    c0 = col
                elif not bit and c0 is not None:  # one rectangle per horizontal run of dark modules
                    path.rect((ox + c0 * mod) * mm, (PAGE_H - oy - (r + 1) * mod) * mm, (col - c0) * mod * mm,
                              mod * mm)
                    c0 = None
        c.drawPath(path, stroke=0, fill=1)
        text(CAPTION, CAPTION_MM, cx, y + CELL_H - 6.5)
        if store_name:
            text(store_name, STORE_MM, cx, y + CELL_H - 2.5)
    c.showPage()
    c.save()
    return buf.getvalue()
