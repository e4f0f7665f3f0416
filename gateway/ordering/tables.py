"""Tables, their signed QR tokens, and QR images and sticker sheets (segno).

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

import segno

from gateway import textclean
from gateway.errors import OrderingError
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
    if not hmac.compare_digest(parts[2], _sig(secret, store, table, version)):
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
    label, area = textclean.clean(label, 32), textclean.clean(area, 32)
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
    buf = io.BytesIO()
    segno.make(url, error="m", micro=False).save(buf, kind=kind, scale=scale, border=2)
    return buf.getvalue()


def _esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def sheet_svg(stickers: list[tuple[str, str]], store_name: str = "", cols: int = 3) -> bytes:
    """Return an A4 SVG sheet of labelled QR stickers: (label, url) each."""
    w, h, cell_w, cell_h = 210, 297, 64, 84
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}mm" height="{h}mm" viewBox="0 0 {w} {h}">']
    for i, (label, url) in enumerate(stickers):
        page_slot = i % (cols * 3)
        x = 8 + (page_slot % cols) * (cell_w + 3)
        y = 8 + (i // cols) * (cell_h + 8)
        qr = segno.make(url, error="m")
        size = qr.symbol_size(scale=1, border=0)[0]
        s = 50 / size
        parts.append(f'<g transform="translate({x},{y})"><rect width="{cell_w}" height="{cell_h}" fill="none" '
                     f'stroke="#999" stroke-width="0.3" stroke-dasharray="2,1"/>')
        parts.append(f'<text x="{cell_w / 2}" y="9" font-size="7" text-anchor="middle" font-weight="bold">'
                     f'{_esc(label)}</text>')
        path = []
        for r, row in enumerate(qr.matrix):
            for c, bit in enumerate(row):
                if bit:
                    path.append(f"M{c},{r}h1v1h-1z")
        parts.append(f'<path transform="translate(7,13) scale({s:.4f})" d="{"".join(path)}" fill="#000"/>')
        parts.append(f'<text x="{cell_w / 2}" y="{cell_h - 12}" font-size="4.5" text-anchor="middle">'
                     f'扫码点餐 · Scan to order</text>')
        if store_name:
            parts.append(f'<text x="{cell_w / 2}" y="{cell_h - 5}" font-size="3.5" text-anchor="middle">'
                         f'{_esc(store_name)}</text>')
        parts.append("</g>")
    parts.append("</svg>")
    # One tall SVG (height grows with the number of rows) keeps it printable from any browser.
    rows = (len(stickers) + cols - 1) // cols
    total_h = max(h, 8 + rows * (cell_h + 8))
    parts[0] = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}mm" height="{total_h}mm" '
                f'viewBox="0 0 {w} {total_h}">')
    return "\n".join(parts).encode()


def sheet_pdf(stickers: list[tuple[str, str]], cols: int = 3, rows: int = 4) -> bytes:
    """Return a multi-page A4 PDF of QR stickers (labels in ASCII; vector modules, no fonts embedded)."""
    pw, ph = 595.28, 841.89
    cell_w, cell_h = (pw - 40) / cols, (ph - 40) / rows
    per_page = cols * rows
    pages: list[bytes] = []
    for start in range(0, max(1, len(stickers)), per_page):
        ops: list[str] = []
        for i, (label, url) in enumerate(stickers[start:start + per_page]):
            cx = 20 + (i % cols) * cell_w
            cy = ph - 20 - (i // cols + 1) * cell_h
            ops.append(f"0.6 g {cx + 4:.2f} {cy + 4:.2f} {cell_w - 8:.2f} {cell_h - 8:.2f} re S 0 g")
            qr = segno.make(url, error="m")
            n = qr.symbol_size(scale=1, border=0)[0]
            mod = (cell_w - 40) / n
            ox, oy = cx + 20, cy + 40
            for r, row in enumerate(qr.matrix):
                for c, bit in enumerate(row):
                    if bit:
                        ops.append(f"{ox + c * mod:.2f} {oy + (n - 1 - r) * mod:.2f} {mod:.2f} {mod:.2f} re")
            ops.append("f")
            safe = "".join(ch for ch in label if 32 <= ord(ch) < 127).replace("\\", "").replace("(", "")
            safe = safe.replace(")", "")
            ops.append(f"BT /F1 16 Tf {cx + 20:.2f} {cy + cell_h - 26:.2f} Td (Table {safe}) Tj ET")
            ops.append(f"BT /F1 9 Tf {cx + 20:.2f} {cy + 20:.2f} Td (Scan to order) Tj ET")
        pages.append("\n".join(ops).encode())
    objs: list[bytes] = [b"<< /Type /Catalog /Pages 2 0 R >>", b""]
    kids = []
    font_id = 3
    objs.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    for content in pages:
        content_id = len(objs) + 1
        objs.append(b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream")
        page_id = len(objs) + 1
        objs.append(f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {pw} {ph}] /Contents {content_id} 0 R "
                    f"/Resources << /Font << /F1 {font_id} 0 R >> >> >>".encode())
        kids.append(f"{page_id} 0 R")
    objs[1] = f"<< /Type /Pages /Kids [{' '.join(kids)}] /Count {len(kids)} >>".encode()
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for i, body in enumerate(objs, start=1):
        offsets.append(out.tell())
        out.write(f"{i} 0 obj\n".encode() + body + b"\nendobj\n")
    xref = out.tell()
    out.write(f"xref\n0 {len(objs) + 1}\n0000000000 65535 f \n".encode())
    for off in offsets:
        out.write(f"{off:010d} 00000 n \n".encode())
    out.write(f"trailer\n<< /Size {len(objs) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode())
    return out.getvalue()
