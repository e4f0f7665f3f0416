"""Kitchen tickets through the real print service and a virtual ESC/POS printer (in-process gateway)."""

from __future__ import annotations

from ordhelpers import Diner, wait_for

from devices.escpos.simulator import VirtualPrinter
from gateway.core.text import free_text as clean_text


def printer_config(*printers: tuple[str, str, str]) -> str:
    out = []
    for dev_id, url, station in printers:
        out.append(f'[[devices]]\nid = "{dev_id}"\nkind = "escpos"\nport = "{url}"\nstation = "{station}"\n'
                   f'status_timeout = "500ms"\nconfirm_timeout = "2s"\npoll = "200ms"\n')
    return "\n".join(out)


def test_clean_text_strips_escpos_control_bytes():
    evil = "no\x1b@\x1dV\x00 chili\x10\x04\x01\u202e\r\nplease" + "x" * 500
    text = clean_text(evil, 140)
    assert all(ord(ch) >= 32 and not 0x7f <= ord(ch) <= 0x9f for ch in text)
    assert text.startswith("no @ V chili") and len(text) == 140


def test_round_prints_one_ticket_per_station_and_confirms(make_gw, client_factory=None):
    with VirtualPrinter() as hot, VirtualPrinter() as bar:
        gw = make_gw(printer_config(("printer-hot", hot.url, "hot"), ("printer-bar", bar.url, "bar")))
        svc = gw.services["ordering"]
        from web import create_app

        client = create_app(gw, {"TESTING": True}).test_client()
        d = Diner(client, svc, "A1")
        d.add("h01", qty=2, spice="hot", note="less oil \x1b@ please")
        d.add("h02")
        d.add("d01", ice="warm")
        d.add("c01")  # cold: no printer for that station and two printers → KDS only
        assert d.send().status_code == 303
        wait_for(lambda: hot.tickets() and bar.tickets(), timeout=15, what="tickets on both printers")
        text = "\n".join(hot.tickets()[0])
        assert "TABLE A1" in text and "宫保鸡丁" in text and "2 x" in text and "特辣 / Extra hot" in text
        assert "NOTE: less oil @ please" in text and "ALLERGY" in text and "花生 Peanut" in text
        assert "麻婆豆腐" in text and "酸梅汤" not in text
        assert "酸梅汤" in "\n".join(bar.tickets()[0])
        assert len(hot.tickets()) == 1 and len(bar.tickets()) == 1
        assert b"\x1b@ please" not in hot.printed
        wait_for(lambda: {ln["name_en"]: ln["status"] for ln in d.state()["rounds"][0]["lines"]}
                 == {"Kung Pao chicken": "received", "Mapo tofu": "received", "Sour plum drink": "received",
                     "Smashed cucumber": "sent"}, timeout=15, what="kitchen received after confirmation")
        # round 2 (加菜) prints only its own dishes
        d.add("h08")
        d.send()
        wait_for(lambda: len(hot.tickets()) == 2, timeout=15, what="second ticket")
        second = "\n".join(hot.tickets()[1])
        assert "番茄炒蛋" in second and "宫保鸡丁" not in second and "加菜 ROUND #2" in second


def test_failed_printer_shows_rerouted_on_kds(make_gw):
    with VirtualPrinter() as hot:
        hot.set_state(paper_out=True)
        gw = make_gw(printer_config(("printer-hot", hot.url, "hot")))
        svc = gw.services["ordering"]
        from ordhelpers import Diner as D

        from gateway.staff import accounts as staffops
        from web import create_app

        svc.writer.call(lambda c: staffops.add_staff(c, "chef", "kitchen", "123456"))
        app = create_app(gw, {"TESTING": True})
        d = D(app.test_client(), svc, "A1")
        d.add("h02")
        d.send()
        wait_for(lambda: gw.services["printing"].health()["printers"]["printer-hot"]["state"] == "paper_out",
                 timeout=10, what="printer fault seen")
        kds = svc.kds_view("hot")
        assert kds["tickets"][0]["rerouted_from"] == "printer-hot"
        wait_for(lambda: d.state()["rounds"][0]["lines"][0]["status"] == "received", timeout=5,
                 what="received once shown on the KDS")


def test_a_party_seated_from_the_queue_has_its_number_on_the_ticket(make_gw):
    from gateway.ordering import kitchen

    with VirtualPrinter() as hot:
        gw = make_gw(printer_config(("printer-hot", hot.url, "hot")))
        svc = gw.services["ordering"]
        from web import create_app

        client = create_app(gw, {"TESTING": True}).test_client()
        phone = "queuephone0042"
        entry = svc.queue_take(phone, "2", "", "10.0.0.42")
        svc.queue_seat(entry.id, "A2", "test")
        d = Diner(client, svc, "A2")
        d.add("h02")
        assert d.send().status_code == 303
        wait_for(lambda: hot.tickets(), timeout=15, what="the ticket")
        text = "\n".join(hot.tickets()[0])
        assert "TABLE A2" in text and f"QUEUE {entry.label}" in text
        kds = [t for t in kitchen.kds_view(svc, gw.store.read(), "hot")["tickets"] if t["table"] == "A2"]
        assert kds and kds[0]["queue"] == entry.label  # the KDS shows it too
        # a table that did not come from the queue has no queue line
        other = Diner(client, svc, "A1")
        other.add("h02")
        other.send()
        wait_for(lambda: len(hot.tickets()) == 2, timeout=15, what="the second ticket")
        assert "QUEUE" not in "\n".join(hot.tickets()[1])
