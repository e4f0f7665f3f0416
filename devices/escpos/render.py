"""A job document (a JSON list of blocks) → ESC/POS bytes.

Blocks::

    {"t": "text", "text": str, "size": "normal"|"double"|"large", "align": "left"|"center"|"right",
     "bold": bool, "invert": bool}
    {"t": "columns", "left": str, "right": str}      # left text, right text flush right
    {"t": "rule"}                                     # a full-width line of "-"
    {"t": "qr", "data": str, "size": int}             # module size 1-16 (default 6), centred
    {"t": "barcode", "data": str, "symbology": "CODE128"}
    {"t": "feed", "lines": int}                       # 1-20
    {"t": "cut"}                                      # partial cut (after a feed)

Every user string first passes ``protocol.sanitize_text``: ESC, GS, DLE, FS and the other C0
bytes never reach the printer, so a note cannot open the cash drawer (``ESC p``) or change modes.
Text is encoded here, whole lines at a time, in the printer's encoding (GB18030 by default) and
sent raw: python-escpos's ``MagicEncode`` switches to GB18030 only for U+4E00-U+9FA5 and prints
CJK punctuation, fullwidth forms and ``¥`` as garbage. Columns and wrapping count display width
(a CJK character takes two columns), not ``len()`` as ``software_columns`` does.

The commands are written here (``_Commands``), byte for byte what python-escpos 3.1's ``Dummy``
writes for the same calls (tests/printing/test_render.py renders documents both ways and compares):
a ticket needs a dozen fixed commands, QR codes are the printer's own (``GS ( k``) and barcodes its
own (``GS k``), so nothing here needs an image. Importing python-escpos loads Pillow, qrcode,
python-barcode and PyYAML (its printer profiles): 10 MB of the daemon's 80 MB budget for bytes it
never used (docs/architecture.md, Memory). python-escpos stays for what it does well, the USB and
file transports (``devices/escpos/driver.py``, imported when such a printer is opened).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator
from typing import Any

from devices.escpos import protocol
from gateway.core.errors import GatewayError

# encoding name → (Python codec, ESC t code page or None for the double-byte CJK mode)
ENCODINGS: dict[str, tuple[str, int | None]] = {
    "gb18030": ("gb18030", None),
    "gbk": ("gbk", None),
    "big5": ("big5", None),
    "cp437": ("cp437", 0),
    "cp850": ("cp850", 2),
    "cp858": ("cp858", 19),
    "cp866": ("cp866", 17),
}
SIZES = {"normal": 1, "double": 2, "large": 3}
ALIGNS = ("left", "center", "right")
SYMBOLOGIES = ("CODE128", "CODE39", "EAN13", "EAN8", "UPC-A", "ITF")
_FS_KANJI_ON, _FS_KANJI_OFF = b"\x1c&", b"\x1c."
ESC, GS = b"\x1b", b"\x1d"
_ALIGN = {"left": ESC + b"a\x00", "center": ESC + b"a\x01", "right": ESC + b"a\x02"}
# GS k m n d1..dn (function B): the symbology's m, and the data's lengths and pattern (as python-escpos checks)
_BARCODES: dict[str, tuple[int, int, int, re.Pattern[str]]] = {
    "CODE128": (73, 2, 255, re.compile(r"\{[A-C][\x00-\x7F]+")),
    "CODE39": (69, 1, 255, re.compile(r"[0-9A-Z $%+\-./]+|\*[0-9A-Z $%+\-./]+\*")),
    "EAN13": (67, 12, 13, re.compile(r"[0-9]{12,13}")),
    "EAN8": (68, 7, 8, re.compile(r"[0-9]{7,8}")),
    "UPC-A": (65, 11, 12, re.compile(r"[0-9]{11,12}")),
    "ITF": (70, 2, 255, re.compile(r"(?:[0-9]{2})+")),
}
MAX_BLOCKS = 500
MAX_TEXT = 4000

_FIELDS: dict[str, dict[str, type | tuple[type, ...]]] = {
    "text": {"text": str, "size": str, "align": str, "bold": bool, "invert": bool},
    "columns": {"left": str, "right": str},
    "rule": {},
    "qr": {"data": str, "size": int},
    "barcode": {"data": str, "symbology": str},
    "feed": {"lines": int},
    "cut": {},
}
_REQUIRED = {"text": ("text",), "qr": ("data",), "barcode": ("data",)}


class DocumentError(GatewayError, ValueError):
    """A print document that is not a valid list of blocks; the message names the block and field."""


def _fail(i: int, msg: str) -> DocumentError:
    return DocumentError(f"doc[{i}]: {msg}")


def validate_doc(doc: Any) -> list[dict[str, Any]]:
    """Check a document's blocks and field types; return it as a list of plain dicts."""
    if not isinstance(doc, list) or not doc:
        raise DocumentError("a print document is a non-empty JSON list of blocks such as "
                            "[{\"t\": \"text\", \"text\": \"...\"}]")
    if len(doc) > MAX_BLOCKS:
        raise DocumentError(f"a print document has at most {MAX_BLOCKS} blocks, found {len(doc)}")
    out = []
    for i, block in enumerate(doc):
        if not isinstance(block, dict):
            raise _fail(i, f"expected a block object, found {type(block).__name__}")
        kind = block.get("t")
        if kind not in _FIELDS:
            close = difflib.get_close_matches(str(kind), list(_FIELDS), n=1)
            hint = f"; did you mean \"{close[0]}\"?" if close else f"; one of {', '.join(_FIELDS)}"
            raise _fail(i, f"unknown block type \"t\": {kind!r}{hint}")
        fields = _FIELDS[kind]
        for key, value in block.items():
            if key == "t":
                continue
            if key not in fields:
                close = difflib.get_close_matches(key, list(fields), n=1)
                hint = f"; did you mean \"{close[0]}\"?" if close else (
                    f"; fields: {', '.join(fields)}" if fields else "; it has no fields")
                raise _fail(i, f"\"{key}\" is not a field of a {kind} block{hint}")
            want = fields[key]
            if not isinstance(value, want) or (want is int and isinstance(value, bool)):
                raise _fail(i, f"{kind}.{key} must be {want.__name__}, found {type(value).__name__}")
            if isinstance(value, str) and len(value) > MAX_TEXT:
                raise _fail(i, f"{kind}.{key} is longer than {MAX_TEXT} characters")
        for key in _REQUIRED.get(kind, ()):
            if key not in block:
                raise _fail(i, f"a {kind} block needs \"{key}\"")
        _check_values(i, kind, block)
        out.append(dict(block))
    return out


def _check_values(i: int, kind: str, block: dict[str, Any]) -> None:
    if kind == "text":
        if block.get("size", "normal") not in SIZES:
            raise _fail(i, f"text.size must be one of {', '.join(SIZES)}, found {block['size']!r}")
        if block.get("align", "left") not in ALIGNS:
            raise _fail(i, f"text.align must be one of {', '.join(ALIGNS)}, found {block['align']!r}")
    elif kind == "qr":
        if not 1 <= block.get("size", 6) <= 16:
            raise _fail(i, "qr.size must be 1-16")
        if not protocol.sanitize_text(block["data"]):
            raise _fail(i, "qr.data is empty")
    elif kind == "barcode":
        symbology = block.get("symbology", "CODE128")
        if symbology not in SYMBOLOGIES:
            raise _fail(i, f"barcode.symbology must be one of {', '.join(SYMBOLOGIES)}, found {symbology!r}")
        if not barcode_ok(symbology, _barcode_code(symbology, block["data"])):
            raise _fail(i, f"barcode.data {block['data']!r} is not valid {symbology}")
    elif kind == "feed" and not 1 <= block.get("lines", 1) <= 20:
        raise _fail(i, "feed.lines must be 1-20")


def barcode_ok(symbology: str, code: str) -> bool:
    """Whether ``code`` (with its code set selector for CODE128) is valid data for ``symbology``."""
    _, low, high, pattern = _BARCODES[symbology]
    return low <= len(code) <= high and pattern.fullmatch(code) is not None


def _barcode_code(symbology: str, data: str) -> str:
    data = protocol.sanitize_text(data)
    if symbology == "CODE128" and not data.startswith(("{A", "{B", "{C")):
        return "{B" + data  # python-escpos wants the code set selector; B covers printable ASCII
    return data


# ---------------------------------------------------------------------------
# width-aware text


def wrap(text: str, cols: int) -> list[str]:
    """Wrap one line of text to ``cols`` display columns (words kept whole when they fit)."""
    cols = max(cols, 2)
    lines: list[str] = []
    line, width = "", 0
    for word in _words(text):
        w = protocol.display_width(word)
        if width + w <= cols:
            line, width = line + word, width + w
            continue
        if line.strip():
            lines.append(line.rstrip())
        line, width = "", 0
        if word.isspace():
            continue
        for ch in word:  # a word longer than a line, or CJK: break between characters
            cw = protocol.display_width(ch)
            if width + cw > cols:
                lines.append(line)
                line, width = "", 0
            line, width = line + ch, width + cw
    if line.strip() or not lines:
        lines.append(line.rstrip())
    return lines


def _words(text: str) -> Iterator[str]:
    """Yield runs of spaces, runs of narrow non-space characters, and single wide characters."""
    run = ""
    for ch in text:
        wide = protocol.display_width(ch) == 2
        if wide or (run and run[-1].isspace() != ch.isspace()):
            if run:
                yield run
            run = ""
        if wide:
            yield ch
        else:
            run += ch
    if run:
        yield run


def pad(text: str, cols: int) -> str:
    """Pad text with spaces to ``cols`` display columns."""
    return text + " " * max(0, cols - protocol.display_width(text))


def two_columns(left: str, right: str, cols: int) -> list[str]:
    """Lay out ``left`` and, flush right on its first line, ``right`` (sanitised, one line each).

    The left side wraps at word boundaries where it can; a very wide right side gets its own line.
    """
    left = protocol.sanitize_text(left).replace("\n", " ").strip()
    right = protocol.truncate(protocol.sanitize_text(right).replace("\n", " ").strip(), cols)
    rw = protocol.display_width(right)
    room = cols - rw - 1 if right else cols
    if room < max(4, cols // 3):  # no sensible room beside a very wide right side: own lines
        return [*(wrap(left, cols) if left else []), " " * (cols - rw) + right]
    lines = wrap(left, room) if left else [""]
    lines[0] = pad(lines[0], cols - rw) + right
    return lines



# ---------------------------------------------------------------------------
# rendering


class _Commands:
    """The ESC/POS commands a ticket uses, appended to one buffer."""

    def __init__(self) -> None:
        self.output = bytearray()

    def raw(self, data: bytes) -> None:
        self.output += data

    def init(self) -> None:
        self.output += ESC + b"@"

    def style(self, *, align: str | None = None, bold: bool | None = None, invert: bool | None = None,
              size: int | None = None) -> None:
        """GS ! (character size, width and height ``size`` times), ESC E, ESC a, GS B; None sends nothing."""
        if size is not None:
            if not 1 <= size <= 8:
                raise ValueError(f"text size {size} is not 1-8")
            self.output += GS + b"!" + bytes(((size - 1) << 4 | (size - 1),))
        if bold is not None:
            self.output += ESC + b"E" + (b"\x01" if bold else b"\x00")
        if align is not None:
            self.output += _ALIGN[align]
        if invert is not None:
            self.output += GS + b"B" + (b"\x01" if invert else b"\x00")

    def _qr_function(self, fn: int, data: bytes) -> None:
        # GS ( k pL pH cn fn [m] data: cn 49 = QR Code; pL pH count cn, fn and what follows
        n = len(data) + 2
        if n > 0xFFFF:
            raise ValueError("QR data is too long")
        self.output += GS + b"(k" + bytes((n & 0xFF, n >> 8, 49, fn)) + data

    def qr(self, data: str, size: int) -> None:
        """The printer's own QR code (model 2, module ``size`` dots, error correction L)."""
        if not 1 <= size <= 16:
            raise ValueError("QR module size must be 1-16")
        if not data:
            return
        self._qr_function(65, b"2\x00")  # function 165: model 2
        self._qr_function(67, bytes((size,)))  # 167: module size
        self._qr_function(69, b"0")  # 169: error correction level L
        self._qr_function(80, b"0" + data.encode("utf-8"))  # 180: store the data
        self._qr_function(81, b"0")  # 181: print it

    def barcode(self, code: str, symbology: str) -> None:
        """The printer's own barcode: centred, 64 dots high, module width 2, HRI font A below (GS k, function B)."""
        if not barcode_ok(symbology, code):
            raise ValueError(f"barcode {code!r} is not valid {symbology}")
        self.output += (_ALIGN["center"] + GS + b"h" + bytes((64,)) + GS + b"w\x02" + GS + b"f\x00" + GS + b"H\x02"
                        + GS + b"k" + bytes((_BARCODES[symbology][0], len(code))) + code.encode())

    def feed(self, lines: int) -> None:
        self.output += ESC + b"d" + bytes((lines,))  # ESC d n: print and feed n lines

    def cut(self) -> None:
        self.feed(6)
        self.output += GS + b"V\x01"  # partial cut


class _Renderer:
    def __init__(self, width: int, encoding: str) -> None:
        if encoding not in ENCODINGS:
            raise DocumentError(f"unknown printer encoding {encoding!r}; one of {', '.join(ENCODINGS)}")
        self.width = width
        self.codec, self.codepage = ENCODINGS[encoding]
        self.d = _Commands()

    def start(self) -> None:
        self.d.init()
        if self.codepage is None:
            self.d.raw(_FS_KANJI_ON)  # double-byte (Chinese) mode for GB18030 / GBK / Big5
        else:
            self.d.raw(_FS_KANJI_OFF + b"\x1bt" + bytes((self.codepage,)))

    def line(self, text: str) -> None:
        self.d.raw(text.encode(self.codec, errors="replace") + b"\n")

    def reset(self) -> None:
        self.d.style(size=1, bold=False, align="left", invert=False)

    def text(self, text: str, *, size: str = "normal", align: str = "left", bold: bool = False,
             invert: bool = False) -> None:
        mult = SIZES[size]
        # GS ! (custom size) scales Chinese characters too; ESC ! does not in Kanji mode.
        self.d.style(size=mult, bold=bold, align=align, invert=invert)
        for raw in protocol.sanitize_text(text).split("\n"):
            for line in wrap(raw, self.width // mult):
                self.line(line)
        self.reset()

    def columns(self, left: str, right: str) -> None:
        for line in two_columns(left, right, self.width):
            self.line(line)

    def qr(self, data: str, size: int) -> None:
        self.d.style(align="center")
        # native: the printer draws it from GS ( k (fast, small); centred by ESC a like text
        self.d.qr(protocol.sanitize_text(data), size)
        self.d.raw(b"\n")
        self.reset()

    def barcode(self, data: str, symbology: str) -> None:
        self.d.barcode(_barcode_code(symbology, data), symbology)
        self.reset()

    def block(self, block: dict[str, Any], cut: bool) -> None:
        kind = block["t"]
        if kind == "text":
            self.text(block["text"], size=block.get("size", "normal"), align=block.get("align", "left"),
                      bold=block.get("bold", False), invert=block.get("invert", False))
        elif kind == "columns":
            self.columns(block.get("left", ""), block.get("right", ""))
        elif kind == "rule":
            self.line("-" * self.width)
        elif kind == "qr":
            self.qr(block["data"], block.get("size", 6))
        elif kind == "barcode":
            self.barcode(block["data"], block.get("symbology", "CODE128"))
        elif kind == "feed":
            self.d.feed(block.get("lines", 1))
        elif kind == "cut":
            self.cut(cut)

    def cut(self, cut: bool) -> None:
        if cut:
            self.d.cut()
        else:
            self.d.feed(4)


def banner_blocks(*, reprint: int = 0, rerouted_from: str = "") -> list[dict[str, Any]]:
    """Return the banner a ticket starts with: REPRINT #n and/or REROUTED from X (inverted)."""
    blocks: list[dict[str, Any]] = []
    if reprint:
        blocks.append({"t": "text", "text": f" REPRINT #{reprint} ", "size": "double", "align": "center",
                       "bold": True, "invert": True})
    if rerouted_from:
        blocks.append({"t": "text", "text": f" REROUTED from {rerouted_from} ", "align": "center",
                       "bold": True, "invert": True})
    return blocks


def render(doc: list[dict[str, Any]], *, width: int = 48, encoding: str = "gb18030", cut: bool = True,
           reprint: int = 0, rerouted_from: str = "", job_id: str = "") -> bytes:
    """Render a validated document into one ESC/POS byte string (sent to the printer at once).

    ``reprint`` > 0 adds a "REPRINT #n" banner, ``rerouted_from`` a "REROUTED from X" banner,
    ``job_id`` a footer line; ``cut`` False turns cuts into feeds (printers without a cutter).
    """
    blocks = [*banner_blocks(reprint=reprint, rerouted_from=rerouted_from), *validate_doc(doc)]
    if job_id:  # the footer goes above the document's final cut
        at = len(blocks) - 1 if blocks[-1]["t"] == "cut" else len(blocks)
        blocks.insert(at, {"t": "text", "text": f"#{job_id}", "align": "right"})
    r = _Renderer(width, encoding)
    r.start()
    try:
        for block in blocks:
            r.block(block, cut)
    except ValueError as err:
        raise DocumentError(f"cannot render the document: {err}") from err
    if blocks[-1]["t"] != "cut":
        r.cut(cut)
    return bytes(r.d.output)


def text_doc(text: str, *, title: str = "") -> list[dict[str, Any]]:
    """Return a document for plain text (``storegw print`` stdin), with an optional title."""
    blocks: list[dict[str, Any]] = []
    if title:
        blocks.append({"t": "text", "text": title, "size": "double", "align": "center", "bold": True})
    blocks.append({"t": "text", "text": text.rstrip("\n") or " "})
    return blocks


def self_test_doc(printer: str, *, width: int = 48, encoding: str = "gb18030") -> list[dict[str, Any]]:
    """Return the self-test page: widths, CJK sample, columns, sizes, QR and barcode."""
    ruler = "".join(str(i % 10) for i in range(1, width + 1))
    return [
        {"t": "text", "text": "TEST PAGE 测试页", "size": "double", "align": "center", "bold": True},
        {"t": "text", "text": f"printer {printer}  width {width}  encoding {encoding}", "align": "center"},
        {"t": "rule"},
        {"t": "text", "text": ruler},
        {"t": "text", "text": "中" * (width // 2)},
        {"t": "columns", "left": "宫保鸡丁 Kung Pao chicken", "right": "¥38.00"},
        {"t": "columns", "left": "酸辣汤（小）", "right": "x2"},
        {"t": "text", "text": "，。：（）￥ — CJK punctuation", "align": "left"},
        {"t": "text", "text": "ALLERGY 过敏: 花生", "invert": True, "bold": True},
        {"t": "text", "text": "large 大", "size": "large", "align": "center"},
        {"t": "rule"},
        {"t": "qr", "data": f"storegw test {printer}", "size": 6},
        {"t": "barcode", "data": "TEST-0001", "symbology": "CODE128"},
        {"t": "cut"},
    ]
