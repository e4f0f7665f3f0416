"""Acknowledged means durable: an order acknowledged to the diner, then SIGKILL of the gateway before
the ticket could print → after restart the ticket prints exactly once and the diner sees "received"."""

from __future__ import annotations

import time

import pytest
from ordhelpers import HttpDiner, devices_toml, prepare_store, start_gateway, table_url, wait_for

from devices.escpos.simulator import VirtualPrinter

pytestmark = pytest.mark.slow


def test_sigkill_before_print_then_prints_exactly_once(broker, write_config, gateway_process):
    with VirtualPrinter() as printer:
        printer.refuse(True)  # the kitchen printer is off: the ticket cannot print yet
        cfg = write_config(local_port=broker.port, hq_port=broker.port, uplink='client_id = "hq-side"',
                           extra=devices_toml(("printer-hot", printer.url, "hot")))
        prepare_store(cfg)
        gw = start_gateway(gateway_process, cfg).start()
        diner = HttpDiner(table_url(cfg, "A1"))
        assert diner.post("add", item="h02", qty="2", note="crash test")[0] == 303
        status, location = diner.send()
        assert status == 303 and "sent=1" in location  # acknowledged to the diner
        assert diner.state()["rounds"][0]["lines"][0]["status"] == "sent"
        gw.kill()
        assert printer.tickets() == []
        printer.refuse(False)  # the printer comes back while the gateway is down
        gw.start()
        wait_for(lambda: printer.tickets(), timeout=30, what="the ticket after restart")
        wait_for(lambda: diner.state()["rounds"][0]["lines"][0]["status"] == "received", timeout=15,
                 what="kitchen received after restart")
        time.sleep(2.5)  # a duplicate would print now
        tickets = printer.tickets()
        assert len(tickets) == 1, tickets
        text = "\n".join(tickets[0])
        assert "麻婆豆腐" in text and "NOTE: crash test" in text and "TABLE A1" in text
        assert len(diner.state()["rounds"]) == 1
