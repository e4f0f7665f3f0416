"""Sticker sheets: segno QR codes in an SVG sheet, a reportlab PDF with Chinese labels, `storegw tables sheet`."""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import cv2
import numpy as np
import pytest
from ordhelpers import run_cli
from pypdf import PdfReader

from gateway.ordering import tables as tbl

SVG_NS = "{http://www.w3.org/2000/svg}"
STORE_NAME = "老北京饭店 Old Beijing"
# (label, url): a table code, a Chinese room name, an English one, a long mixed one; 14 = two pages of 12.
LABELS = ["A1", "牡丹厅", "Terrace 3", "VIP-包间 Private room by the window", *[f"B{i}" for i in range(1, 11)]]
STICKERS = [(label, f"http://order.test/t/T{i}.1.{'x' * 22}") for i, label in enumerate(LABELS)]


def _page_texts(pdf: bytes) -> list[str]:
    return [page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages]


def _decode(gray: np.ndarray) -> str:
    """Decode one QR code in a grayscale image with OpenCV (its ArUco-based detector, then the classic one:
    the classic one alone misses about 2 % of valid codes)."""
    for detector in (cv2.QRCodeDetectorAruco(), cv2.QRCodeDetector()):
        text = detector.detectAndDecode(gray)[0]
        if text:
            return text
    return ""


def _svg_path_to_image(d: str, size: int, px: int = 8) -> np.ndarray:
    """Rasterise segno's SVG path (``M``/``m`` moves and ``h`` runs of 1-module-wide lines) to an image."""
    img = np.full((size * px, size * px), 255, np.uint8)
    x = y = 0.0
    for op, a, b in re.findall(r"([Mmh])(-?[\d.]+)(?:[ ,](-?[\d.]+))?", d):
        if op == "M":
            x, y = float(a), float(b)
        elif op == "m":
            x, y = x + float(a), y + float(b)
        else:
            row, c0, c1 = int(y - 0.5), int(x), int(x + float(a))
            img[row * px:(row + 1) * px, c0 * px:c1 * px] = 0
            x += float(a)
    return img


def _svg_stickers(svg: bytes) -> list[tuple[list[str], str]]:
    """Return (texts, decoded QR) for each sticker group of an SVG sheet."""
    root = ET.fromstring(svg)
    out = []
    for g in root.iter(f"{SVG_NS}g"):
        if g.get("class") != "sticker":
            continue
        texts = [t.text or "" for t in g.iter(f"{SVG_NS}text")]
        qrs = list(g.iter(f"{SVG_NS}svg"))
        assert len(qrs) == 1, "one segno QR code per sticker"
        path = qrs[0].find(f"{SVG_NS}path")
        assert path is not None
        scale = float(re.fullmatch(r"scale\(([\d.]+)\)", path.get("transform", "scale(1)")).group(1))
        size = round(float(qrs[0].get("width")) / scale)
        out.append((texts, _decode(_svg_path_to_image(path.get("d"), size))))
    return out


def test_sticker_headings_are_bilingual_for_table_codes():
    assert tbl.sticker_heading("A1") == "桌 Table A1"
    assert tbl.sticker_heading("牡丹厅") == "牡丹厅"
    assert tbl.sticker_heading("Terrace 3") == "Terrace 3"


def test_pdf_sheet_has_the_chinese_and_english_labels_on_a4_pages():
    pdf = tbl.sheet_pdf(STICKERS, STORE_NAME)
    reader = PdfReader(io.BytesIO(pdf))
    assert len(reader.pages) == 2
    for page in reader.pages:
        assert (round(float(page.mediabox.width)), round(float(page.mediabox.height))) == (595, 842)
    first, second = _page_texts(pdf)
    for label in ["桌 Table A1", "牡丹厅", "Terrace 3", "VIP-包间 Private room by the window", "桌 Table B8"]:
        assert label in first, f"{label!r} not found in page 1: {first!r}"
    assert "桌 Table B9" in second and "桌 Table B10" in second and "桌 Table B9" not in first
    assert first.count("扫码点餐 Scan to order") == 12 and second.count("扫码点餐 Scan to order") == 2
    assert first.count(STORE_NAME) == 12


@pytest.mark.skipif(not shutil.which("pdftoppm"), reason="pdftoppm (poppler-utils) is not installed")
def test_pdf_qr_codes_decode_to_the_table_urls(tmp_path):
    (tmp_path / "sheet.pdf").write_bytes(tbl.sheet_pdf(STICKERS, STORE_NAME))
    dpi = 150
    subprocess.run(["pdftoppm", "-r", str(dpi), "-gray", "-png", "sheet.pdf", "page"], cwd=tmp_path, check=True,
                   capture_output=True)
    pages = sorted(tmp_path.glob("page-*.png"))
    assert len(pages) == 2
    images = [cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) for p in pages]
    px = dpi / 25.4
    for i, (_, url) in enumerate(STICKERS):
        page, x, y = tbl._slot(i)
        cell = images[page][int(y * px):int((y + tbl.CELL_H) * px), int(x * px):int((x + tbl.CELL_W) * px)]
        assert _decode(cell) == url, f"sticker {i} on page {page + 1}"


def test_svg_sheet_has_one_segno_qr_per_table_decoding_to_its_url():
    svg = tbl.sheet_svg(STICKERS, STORE_NAME)
    root = ET.fromstring(svg)
    assert root.get("width") == "210mm" and root.get("height") == f"{2 * 297}mm"
    stickers = _svg_stickers(svg)
    assert len(stickers) == len(STICKERS)
    for (texts, decoded), (label, url) in zip(stickers, STICKERS, strict=True):
        assert decoded == url
        assert texts == [tbl.sticker_heading(label), "扫码点餐 Scan to order", STORE_NAME]


def test_svg_sheet_escapes_labels():
    svg = tbl.sheet_svg([("<b>&", "http://order.test/t/x")], 'A "quoted" & <store>')
    texts = _svg_stickers(svg)[0][0]
    assert texts == ["<b>&", "扫码点餐 Scan to order", 'A "quoted" & <store>']


def _config(tmp_path: Path) -> Path:
    config = tmp_path / "storegw.toml"
    config.write_text(f'[store]\nid = "sh-001"\nname = "{STORE_NAME}"\ndata_dir = "{(tmp_path / "data").as_posix()}"\n'
                      '[uplink]\nenabled = false\n[web]\npublic_host = "order.test"\n', encoding="utf-8")
    return config


def test_cli_writes_pdf_and_svg_sheets(tmp_path):
    from gateway.cli import main

    config = str(_config(tmp_path))
    run_cli(main, "tables", "add", "A1", "A2", "--config", config)
    run_cli(main, "tables", "add", "VIP1", "--label", "牡丹厅", "--area", "2F", "--config", config)
    urls = {}
    for line in run_cli(main, "tables", "list", "--config", config).splitlines():
        tid, _, _, url = line.split("\t")
        urls[tid] = url

    pdf_path = tmp_path / "stickers.pdf"
    out = run_cli(main, "tables", "sheet", "--format", "pdf", "-o", str(pdf_path), "--config", config)
    assert out.strip() == f"{pdf_path}: 3 sticker(s)"
    (text,) = _page_texts(pdf_path.read_bytes())
    for label in ["桌 Table A1", "桌 Table A2", "牡丹厅", STORE_NAME]:
        assert label in text
    assert "Table VIP1" not in text

    svg_path = tmp_path / "stickers.svg"
    out = run_cli(main, "tables", "sheet", "VIP1", "A2", "--format", "svg", "-o", str(svg_path), "--config", config)
    assert out.strip() == f"{svg_path}: 2 sticker(s)"
    stickers = _svg_stickers(svg_path.read_bytes())
    assert [(texts[0], decoded) for texts, decoded in stickers] == [("牡丹厅", urls["VIP1"]),
                                                                     ("桌 Table A2", urls["A2"])]


def test_cli_sheet_refuses_an_unknown_table(tmp_path):
    from click.testing import CliRunner

    from gateway.cli import main

    config = str(_config(tmp_path))
    run_cli(main, "tables", "add", "A1", "--config", config)
    result = CliRunner().invoke(main, ["tables", "sheet", "Z9", "-o", str(tmp_path / "x.pdf"), "--config", config])
    assert result.exit_code != 0 and "no table 'Z9'" in result.output
    assert not (tmp_path / "x.pdf").exists()


def test_the_running_gateway_does_not_load_the_pdf_library(tmp_path):
    """`storegw run` (services, web app, sticker SVGs) never imports reportlab; only the PDF sheet does."""
    config = _config(tmp_path)
    script = f"""
import sys
from gateway.clikit import load_config
from gateway.app import build
from web import create_app
gw = build(load_config({str(config)!r}))
gw.start(web=False, devices=False)
try:
    create_app(gw)
    from gateway.ordering import tables
    tables.sheet_svg([("A1", "http://order.test/t/x")])
    tables.qr_bytes("http://order.test/t/x", "svg")
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("reportlab", "pypdf"))
    assert not loaded, loaded
    tables.sheet_pdf([("A1", "http://order.test/t/x")])
    assert "reportlab" in sys.modules
finally:
    gw.stop()
print("ok")
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          cwd=tmp_path)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-3000:]
