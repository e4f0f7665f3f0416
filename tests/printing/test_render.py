"""Job documents → ESC/POS bytes: sanitised text, GB18030, width-aware columns, banners, validation."""

from __future__ import annotations

import pytest

from devices.escpos import protocol, render
from devices.escpos.simulator import decode_lines, decode_tickets, tokens

DRAWER_KICK = bytes.fromhex("1b700019fa")  # ESC p 0 25 250: open the cash drawer


def lines_of(data: bytes, encoding: str = "gb18030") -> list[str]:
    return [line.rstrip() for line in decode_lines(data, encoding) if line.strip()]


def test_cash_drawer_kick_in_a_note_never_reaches_the_printer():
    note = "no onions " + DRAWER_KICK.decode("latin-1") + " thanks \x1d\x56\x00\x10\x14\x01\x00\x05"
    data = render.render([{"t": "text", "text": note},
                          {"t": "columns", "left": "x" + DRAWER_KICK.decode("latin-1"), "right": "\x1b@1"},
                          {"t": "qr", "data": "a\x1bp\x00\x19\xfab"},
                          {"t": "barcode", "data": "AB\x1bp12"}])
    assert DRAWER_KICK not in data
    assert b"\x1bp" not in data  # no ESC p at all: the renderer never emits one and the note cannot
    kicks = [raw for kind, raw in tokens(data) if kind == "cmd" and raw[:2] in (b"\x1bp", b"\x10\x14")]
    assert kicks == []
    text = "\n".join(lines_of(data))
    assert "no onions" in text
    assert "thanks" in text


def test_every_user_string_is_sanitised_before_encoding():
    bad = "".join(chr(c) for c in range(0x20)) + "\x7f\x85\x9b"
    clean = protocol.sanitize_text(bad)
    assert clean == " \n"  # tab becomes a space, newline kept, every other control character removed
    data = render.render([{"t": "text", "text": "A" + bad + "B"}])
    body = data.split(b"A", 1)[1].split(b"B", 1)[0]
    assert body == b"\n"  # only the line break (trailing space trimmed); no control byte of the user's


def test_gb18030_text_round_trips_including_punctuation_and_yen():
    text = "宫保鸡丁（小份），少辣。¥38 ￥ 𠀀"
    data = render.render([{"t": "text", "text": text}])
    assert text.encode("gb18030") in data
    assert lines_of(data) == [text]
    assert b"\x1c&" in data  # Chinese double-byte mode selected for GB18030


def test_single_byte_encoding_selects_code_page_and_replaces_what_it_cannot_print():
    data = render.render([{"t": "text", "text": "café 中"}], encoding="cp437")
    assert b"\x1c.\x1bt\x00" in data  # Kanji mode off, code page 0 (PC437)
    assert lines_of(data, "cp437") == ["café ?"]


def test_cjk_columns_align_to_the_paper_width():
    doc = [{"t": "columns", "left": "宫保鸡丁", "right": "¥38.00"},
           {"t": "columns", "left": "Coke", "right": "¥5.00"},
           {"t": "columns", "left": "酸辣汤（小）加香菜不要葱 extra spicy please", "right": "x2"}]
    for width in (48, 32):
        lines = lines_of(render.render(doc, width=width))
        assert [protocol.display_width(line) for line in lines[:2]] == [width, width]
        assert lines[0].endswith("¥38.00")
        assert lines[1].endswith("¥5.00")
        assert lines[2].endswith("x2")
        assert protocol.display_width(lines[2]) == width
        assert all(protocol.display_width(line) <= width for line in lines)
        wrapped = "".join(lines[2:]).replace(" ", "").replace("x2", "", 1)
        assert wrapped == "酸辣汤（小）加香菜不要葱extraspicyplease"


def test_wrap_never_splits_a_wide_character_and_keeps_words():
    assert render.wrap("宫保鸡丁宫保鸡丁", 5) == ["宫保", "鸡丁", "宫保", "鸡丁"]
    assert render.wrap("Kung Pao chicken extra spicy", 12) == ["Kung Pao", "chicken", "extra spicy"]
    assert render.wrap("", 10) == [""]


@pytest.mark.parametrize(("size", "scale", "columns"), [("normal", 0x00, 48), ("double", 0x11, 24),
                                                        ("large", 0x22, 16)])
def test_text_sizes_use_gs_excl_and_wrap_to_the_scaled_width(size, scale, columns):
    data = render.render([{"t": "text", "text": "桌" * 30, "size": size, "align": "center", "bold": True}])
    assert b"\x1d!" + bytes((scale,)) in data  # GS ! scales Chinese characters too (ESC ! does not)
    assert b"\x1ba\x01" in data
    assert b"\x1bE\x01" in data
    assert max(protocol.display_width(line) for line in lines_of(data)) <= columns


def test_reprint_and_rerouted_banners_come_first_inverted():
    data = render.render([{"t": "text", "text": "JOB"}], reprint=2, rerouted_from="kitchen-1", job_id="pj-1")
    lines = lines_of(data)
    assert lines[0].strip() == "REPRINT #2"
    assert lines[1].strip() == "REROUTED from kitchen-1"
    assert lines[2] == "JOB"
    assert lines[-1].strip() == "#pj-1"
    assert data.index(b"\x1dB\x01") < data.index(b"REPRINT")  # GS B 1: white on black


def test_qr_barcode_rule_feed_and_cut():
    data = render.render([{"t": "rule"}, {"t": "qr", "data": "T12", "size": 5}, {"t": "feed", "lines": 3},
                          {"t": "barcode", "data": "A-1", "symbology": "CODE128"}, {"t": "cut"}], width=32)
    assert lines_of(data) == ["-" * 32]
    assert b"\x1d(k\x06\x001P0T12" in data  # native QR, content stored as-is
    assert b"\x1d(k\x03\x001C\x05" in data  # module size 5
    assert b"\x1dkI\x05{BA-1" in data  # CODE128, code set B
    assert b"\x1bd\x03" in data
    assert data.endswith(b"\x1dV\x01")  # one partial cut, at the end
    assert data.count(b"\x1dV") == 1


def test_a_cut_is_added_at_the_end_unless_the_printer_has_no_cutter():
    assert render.render([{"t": "text", "text": "x"}]).endswith(b"\x1dV\x01")
    no_cutter = render.render([{"t": "text", "text": "x"}, {"t": "cut"}], cut=False)
    assert b"\x1dV" not in no_cutter
    assert no_cutter.endswith(b"\x1bd\x04")


def test_job_id_footer_goes_above_the_final_cut():
    data = render.render([{"t": "text", "text": "one"}, {"t": "cut"}], job_id="pj-9")
    assert [[line.strip() for line in t] for t in decode_tickets(data)] == [["one", "#pj-9"]]
    assert data.count(b"\x1dV") == 1


def test_tickets_split_at_cuts():
    data = render.render([{"t": "text", "text": "one"}, {"t": "cut"}, {"t": "text", "text": "two"}])
    assert decode_tickets(data) == [["one"], ["two"]]


@pytest.mark.parametrize(("doc", "message"), [
    ([], "non-empty JSON list"),
    ("text", "non-empty JSON list"),
    ([{"t": "txt", "text": "x"}], 'did you mean "text"'),
    ([{"t": "text"}], 'needs "text"'),
    ([{"t": "text", "text": 5}], "text.text must be str"),
    ([{"t": "text", "text": "x", "size": "huge"}], "text.size must be one of"),
    ([{"t": "text", "text": "x", "algin": "left"}], 'did you mean "align"'),
    ([{"t": "text", "text": "x", "bold": 1}], "text.bold must be bool"),
    ([{"t": "feed", "lines": True}], "feed.lines must be int"),
    ([{"t": "feed", "lines": 99}], "feed.lines must be 1-20"),
    ([{"t": "qr", "data": "\x1b"}], "qr.data is empty"),
    ([{"t": "qr", "data": "x", "size": 17}], "qr.size must be 1-16"),
    ([{"t": "barcode", "data": "12", "symbology": "EAN13"}], "is not valid EAN13"),
    ([{"t": "barcode", "data": "x", "symbology": "PDF417"}], "barcode.symbology must be one of"),
    ([{"t": "rule", "char": "="}], "it has no fields"),
])
def test_invalid_documents_name_the_block_and_the_fix(doc, message):
    with pytest.raises(render.DocumentError, match="doc|document") as err:
        render.validate_doc(doc)
    assert message in str(err.value)


def test_self_test_page_renders_on_both_paper_widths():
    for width in (48, 32):
        data = render.render(render.self_test_doc("kitchen", width=width), width=width)
        lines = lines_of(data)
        assert lines[0].strip() == "TEST PAGE 测试页"
        assert "".join(str(i % 10) for i in range(1, width + 1)) in lines
        assert "中" * (width // 2) in lines
        assert all(protocol.display_width(line) <= width for line in lines)


def test_commands_are_what_python_escpos_writes():
    """The renderer writes its dozen commands itself (python-escpos's import costs the daemon 10 MB of
    Pillow, qrcode, python-barcode and PyYAML, docs/architecture.md, Memory); byte for byte what
    python-escpos's Dummy writes for the same calls, and the same barcode data accepted."""
    from escpos.escpos import Escpos
    from escpos.printer import Dummy

    ours, ref = render._Commands(), Dummy()
    ours.init()
    ref.hw("INIT")
    for align in render.ALIGNS:
        for size in range(1, 9):
            for flag in (False, True):
                ours.style(size=size, bold=flag, align=align, invert=not flag)
                ref.set(align=align, bold=flag, invert=not flag, custom_size=True, width=size, height=size)
    ours.style(align="center")
    ref.set(align="center")
    for data, size in (("T12", 5), ("x" * 700, 16), ("桌 12 https://example.test/t/A1", 1), ("", 6)):
        ours.qr(data, size)
        ref.qr(data, size=size, native=True)
    for lines in (1, 4, 20):
        ours.feed(lines)
        ref.print_and_feed(lines)
    ours.cut()
    ref.cut(mode="PART")
    samples = ["{BA-1", "{B" + "x" * 253, "{Cx", "{D12", "ABC-1 $%", "*AB*", "abc", "1234567", "12345678",
               "123456789012", "1234567890123", "12345", "1234", "", "{B", "{Bé"]
    for symbology in render.SYMBOLOGIES:
        for code in samples:
            ok = render.barcode_ok(symbology, code)
            assert ok == bool(Escpos.check_barcode(symbology, code)), (symbology, code)
            if ok:
                ours.barcode(code, symbology)
                ref._hw_barcode(code, symbology, height=64, width=2, pos="BELOW", font="A", align_ct=True,
                                function_type="B", check=True)
    assert bytes(ours.output) == ref.output

