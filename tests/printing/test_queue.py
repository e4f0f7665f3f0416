"""The durable print queue end to end: real gateway, real SQLCipher file, virtual printers over TCP.

Every wait is bounded (``wait_for``); nothing asserts on timing.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from printkit import (  # noqa: F401 - fixtures
    device_toml,
    gateway_factory_fixture,
    printer_factory_fixture,
    printing_config_fixture,
    ticket_doc,
    vprinter_fixture,
    wait_for,
)

from devices.escpos.config import validate_printers
from gateway.core.errors import ConfigError
from gateway.printing import PrintError

ROOT = Path(__file__).resolve().parents[2]
DRAWER_KICK = bytes.fromhex("1b700019fa")  # ESC p 0 25 250


def state_of(svc, job_id):
    return svc.job(job_id)["state"]


def all_confirmed(svc, ids):
    return all(state_of(svc, i) == "confirmed" for i in ids)


def ends(vp):
    """The last line of each complete ticket copy, in paper order."""
    return [line for line in vp.lines() if line.startswith("END ")]


def banners(vp):
    return [line.strip() for line in vp.lines() if "REPRINT" in line or "REROUTED" in line]


def alert_episodes(gw, rule):
    # The in-memory alert state changes inside the writer's transaction, before its commit: let
    # that commit land (a write queued behind it returns after it) before reading the log.
    gw.store.writer.call(lambda c: None)
    rows = gw.store.read().execute("SELECT state FROM alert_log WHERE rule = ? ORDER BY id", (rule,))
    return [r[0] for r in rows]


def printer_health(svc, printer="kitchen"):
    return svc.health()["printers"][printer]


def test_paper_out_mid_queue_alerts_waits_and_prints_every_job_once_in_order(gateway_factory, vprinter):
    gw = gateway_factory(device_toml("kitchen", vprinter.url, station="kitchen"))
    svc = gw.services["printing"]
    confirmed: list[str] = []

    def on_update(job_id, state, printer):
        if state == "confirmed":
            confirmed.append(job_id)
            if len(confirmed) == 2:
                vprinter.set_state(paper_out=True)  # the roll ends right after the second ticket

    svc.on_update(on_update)
    ids = [svc.submit(station="kitchen", doc=ticket_doc(n)) for n in range(1, 6)]

    wait_for(lambda: gw.alerts.is_active("printer:kitchen"), what="paper-out alert")
    assert gw.alerts.active["printer:kitchen"].rule == "printer-paper-out"
    wait_for(lambda: printer_health(svc)["state"] == "paper_out", what="printer state paper_out")
    assert [state_of(svc, i) for i in ids] == ["confirmed"] * 2 + ["queued"] * 3  # jobs wait
    assert printer_health(svc)["queue"] == 3
    assert ends(vprinter) == ["END 1", "END 2"]
    assert vprinter.lost == 0  # nothing was sent into the empty printer

    vprinter.set_state(paper_out=False)  # paper back: resumes by itself
    wait_for(lambda: all_confirmed(svc, ids), what="all jobs confirmed")
    wait_for(lambda: not gw.alerts.is_active("printer:kitchen"), what="alert cleared")

    assert confirmed == ids
    assert ends(vprinter) == [f"END {n}" for n in range(1, 6)]
    assert [t[0] for t in vprinter.tickets()] == [f"JOB {n}" for n in range(1, 6)]
    assert banners(vprinter) == []
    assert alert_episodes(gw, "printer-paper-out") == ["raised", "cleared"]
    health = printer_health(svc)
    assert (health["state"], health["queue"], health["printed"], health["reprinted"]) == ("ready", 0, 5, 0)


@pytest.mark.parametrize("failure", ["paper_out", "drop"])
def test_a_job_cut_off_mid_print_is_reprinted_once_with_a_banner(gateway_factory, vprinter, failure):
    gw = gateway_factory(device_toml("kitchen", vprinter.url))
    svc = gw.services["printing"]
    confirmed: list[str] = []

    def on_update(job_id, state, printer):
        if state == "confirmed":
            confirmed.append(job_id)
            if len(confirmed) == 2:
                vprinter.fail_after(60, failure)  # 60 bytes into the third ticket

    svc.on_update(on_update)
    ids = [svc.submit(printer="kitchen", doc=ticket_doc(n)) for n in range(1, 5)]
    if failure == "paper_out":
        wait_for(lambda: gw.alerts.is_active("printer:kitchen"), what="paper-out alert")
        assert state_of(svc, ids[2]) == "sent"  # not confirmed: the printer said paper out after it
        vprinter.set_state(paper_out=False)
    wait_for(lambda: all_confirmed(svc, ids), what="all jobs confirmed")

    lines = vprinter.lines()
    assert ends(vprinter) == ["END 1", "END 2", "END 3", "END 4"]  # every job complete exactly once
    assert lines.count("JOB 3") == 2  # the cut-off start, then the full reprint
    assert banners(vprinter) == ["REPRINT #1"]
    assert lines.index("JOB 3") < [i for i, x in enumerate(lines) if "REPRINT #1" in x][0]
    job = svc.job(ids[2])
    assert (job["attempts"], job["reprint"]) == (2, True)
    assert confirmed == ids
    assert printer_health(svc)["reprinted"] == 1
    wait_for(lambda: not gw.alerts.is_active("printer:kitchen"), what="alert cleared")


def test_gateway_stopped_between_sent_and_confirmed_reprints_after_restart(gateway_factory, vprinter):
    devices = device_toml("kitchen", vprinter.url)
    gw = gateway_factory(devices)
    svc = gw.services["printing"]

    def on_update(job_id, state, printer):
        if state == "confirmed":
            vprinter.fail_after(60, "offline")  # job 2 is cut off and the printer stops answering

    svc.on_update(on_update)
    first = svc.submit(printer="kitchen", doc=ticket_doc(1))
    wait_for(lambda: state_of(svc, first) == "confirmed", what="job 1 confirmed")
    second = svc.submit(printer="kitchen", doc=ticket_doc(2))
    wait_for(lambda: vprinter.offline and state_of(svc, second) == "sent", what="job 2 sent, printer silent")
    gw.stop()  # stopped while waiting for the confirmation

    vprinter.set_state(offline=False)
    gw2 = gateway_factory(devices)
    svc2 = gw2.services["printing"]
    wait_for(lambda: state_of(svc2, second) == "confirmed", what="job 2 reprinted and confirmed")
    assert ends(vprinter) == ["END 1", "END 2"]
    assert banners(vprinter) == ["REPRINT #1"]
    assert vprinter.lines().count("JOB 1") == 1
    assert svc2.job(first)["attempts"] == 1


def test_queued_jobs_survive_a_restart_and_print_once_in_order(gateway_factory, vprinter):
    devices = device_toml("kitchen", vprinter.url)
    vprinter.refuse()  # switched off: connection refused
    gw = gateway_factory(devices)
    svc = gw.services["printing"]
    ids = [svc.submit(printer="kitchen", doc=ticket_doc(n)) for n in range(1, 4)]
    wait_for(lambda: gw.alerts.is_active("printer:kitchen"), what="offline alert (jobs waiting)")
    assert gw.alerts.active["printer:kitchen"].rule == "printer-offline"
    assert gw.hub.devices["kitchen"].available is False
    gw.stop()

    vprinter.refuse(False)
    gw2 = gateway_factory(devices)
    svc2 = gw2.services["printing"]
    wait_for(lambda: all_confirmed(svc2, ids), what="jobs printed after restart")
    wait_for(lambda: not gw2.alerts.is_active("printer:kitchen"), what="offline alert cleared")
    assert ends(vprinter) == ["END 1", "END 2", "END 3"]
    assert banners(vprinter) == []  # never sent before: no reprint banner
    assert gw2.hub.devices["kitchen"].available is True


def test_an_idle_printer_switched_off_is_unavailable_without_a_printer_alert(gateway_factory, vprinter):
    gw = gateway_factory(device_toml("kitchen", vprinter.url))
    svc = gw.services["printing"]
    wait_for(lambda: printer_health(svc)["state"] == "ready", what="first status")
    vprinter.refuse()
    wait_for(lambda: printer_health(svc)["state"] == "offline", what="idle poll notices")
    assert not gw.alerts.is_active("printer:kitchen")  # off at night is expected


def test_a_printer_without_status_support_prints_when_verify_is_off(gateway_factory, vprinter):
    vprinter.answers_status = False
    gw = gateway_factory(device_toml("kitchen", vprinter.url, verify=False))
    svc = gw.services["printing"]
    job = svc.submit(printer="kitchen", doc=ticket_doc(1))
    wait_for(lambda: state_of(svc, job) == "confirmed", what="confirmed without a status reply")
    assert ends(vprinter) == ["END 1"]
    assert vprinter.status_queries == 0


def test_a_drawer_kick_in_a_note_never_reaches_the_printer(gateway_factory, vprinter):
    gw = gateway_factory(device_toml("kitchen", vprinter.url))
    svc = gw.services["printing"]
    note = "NOTE no onions " + DRAWER_KICK.decode("latin-1") + " thanks"
    job = svc.submit(printer="kitchen", doc=ticket_doc(1, note=note))
    wait_for(lambda: state_of(svc, job) == "confirmed", what="confirmed")
    assert DRAWER_KICK not in vprinter.received
    assert vprinter.drawer_kicks == 0
    assert any(line.startswith("NOTE no onions") and line.endswith("thanks") for line in vprinter.lines())


def test_enqueue_commits_with_the_callers_transaction(gateway_factory, vprinter):
    gw = gateway_factory(device_toml("kitchen", vprinter.url, station="kitchen"))
    svc = gw.services["printing"]
    made: list[str] = []

    def order_then_fail(conn):
        made.append(svc.enqueue(conn, station="kitchen", doc=ticket_doc(1), source="order", source_id="o-1"))
        raise RuntimeError("order rejected")

    with pytest.raises(RuntimeError):
        gw.store.writer.call(order_then_fail)
    assert svc.job(made[0]) is None  # rolled back together with the order

    job = gw.store.writer.call(lambda c: svc.enqueue(c, station="kitchen", doc=ticket_doc(2), source="order",
                                                     source_id="o-2"))
    wait_for(lambda: state_of(svc, job) == "confirmed", what="confirmed")
    assert ends(vprinter) == ["END 2"]
    summary = svc.job(job)
    assert (summary["printer"], summary["station"], summary["source"], summary["source_id"]) == (
        "kitchen", "kitchen", "order", "o-2")


def test_failover_to_the_backup_printer_with_a_rerouted_banner(gateway_factory, printer_factory):
    main, spare = printer_factory(), printer_factory()
    main.set_state(cover_open=True)
    gw = gateway_factory(device_toml("kitchen", main.url, station="kitchen", backup="kitchen-2",
                                     failover_after="300ms")
                         + device_toml("kitchen-2", spare.url, station="kitchen"))
    svc = gw.services["printing"]
    updates: list[tuple[str, str, str]] = []
    svc.on_update(lambda job_id, state, printer: updates.append((job_id, state, printer)))
    ids = [svc.submit(station="kitchen", doc=ticket_doc(n)) for n in range(1, 4)]
    wait_for(lambda: all_confirmed(svc, ids), what="jobs printed on the backup")
    assert main.printed == b""
    assert ends(spare) == ["END 1", "END 2", "END 3"]
    assert banners(spare) == ["REROUTED from kitchen"] * 3
    assert all(svc.job(i)["printer"] == "kitchen-2" and svc.job(i)["rerouted_from"] == "kitchen" for i in ids)
    assert {(i, "queued", "kitchen-2") for i in ids} <= set(updates)  # listeners hear of the move
    assert gw.alerts.active["printer:kitchen"].rule == "printer-cover-open"
    assert printer_health(svc)["rerouted"] == 3


def test_test_page_health_and_bad_requests(gateway_factory, vprinter):
    gw = gateway_factory(device_toml("kitchen", vprinter.url, station="kitchen", width=32))
    svc = gw.services["printing"]
    job = svc.test_page("kitchen")
    wait_for(lambda: state_of(svc, job) == "confirmed", what="test page")
    assert vprinter.tickets()[0][0].strip() == "TEST PAGE 测试页"
    assert "中" * 16 in vprinter.lines()

    health = gw.health()["printing"]["printers"]["kitchen"]
    assert health["state"] == "ready"
    assert health["printed"] == 1
    assert "TEST PAGE" not in json.dumps(gw.health(), ensure_ascii=False)  # no contents in health
    assert [j["id"] for j in svc.jobs(10)] == [job]
    assert "doc" not in svc.jobs(10)[0]

    with pytest.raises(PrintError, match='did you mean "kitchen"'):
        svc.submit(printer="kitchn", doc=ticket_doc(1))
    with pytest.raises(PrintError, match='no printer serves station "bar"'):
        svc.submit(station="bar", doc=ticket_doc(1))
    with pytest.raises(PrintError, match="unknown block type"):
        svc.submit(printer="kitchen", doc=[{"t": "picture"}])
    with pytest.raises(PrintError):
        svc.test_page("nope")


def storegw(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gateway", *args], input=stdin, capture_output=True,
                          cwd=ROOT, timeout=60, check=False)


def test_storegw_print_and_jobs_against_the_running_gateway(gateway_factory, vprinter, printing_config):
    gw = gateway_factory(device_toml("kitchen", vprinter.url, station="kitchen"))
    svc = gw.services["printing"]
    config = str(printing_config(device_toml("kitchen", vprinter.url, station="kitchen"), name="cli.toml"))

    note = "Table 5 桌 5\nno onions ".encode() + DRAWER_KICK + b" thanks\n"
    done = storegw("print", "--config", config, "--printer", "kitchen", "--title", "CLI", stdin=note)
    assert done.returncode == 0, done.stderr.decode()
    job_id = done.stdout.decode().strip()
    assert job_id.startswith("pj-")
    wait_for(lambda: state_of(svc, job_id) == "confirmed", what="CLI job printed by the running gateway")
    # ESC, NUL and 0x19 are removed; the lone 0xFA byte is not UTF-8 and prints as a replacement mark
    assert vprinter.tickets()[0][:3] == ["CLI", "Table 5 桌 5", "no onions p\ufffd thanks"]
    assert DRAWER_KICK not in vprinter.received

    listed = storegw("jobs", "--config", config, "--json")
    assert listed.returncode == 0, listed.stderr.decode()
    jobs = json.loads(listed.stdout)
    assert [(j["id"], j["state"], j["source"]) for j in jobs] == [(job_id, "confirmed", "cli")]
    table = storegw("jobs", "--config", config).stdout.decode()
    assert job_id in table
    assert "confirmed" in table

    wrong = storegw("print", "--config", config, "--printer", "kitchn", stdin=b"x")
    assert wrong.returncode == 1
    assert 'did you mean "kitchen"' in wrong.stderr.decode()
    empty = storegw("print", "--config", config, "--printer", "kitchen", stdin=b"")
    assert empty.returncode == 2


def printer_devices(devices: str):
    from gateway import config

    return config.parse(tomllib.loads('[store]\nid = "sh-001"\n' + devices)).devices


def test_printer_config_is_checked_with_messages_that_teach():
    devs = printer_devices(device_toml("a", "tcp://10.0.0.5", backup="b", station="kitchen")
                           + device_toml("b", "/dev/ttyUSB0", width=32, encoding="cp437"))
    printers = validate_printers(devs)
    a = printers["a"]
    assert (a.width, a.encoding, a.failover_after, a.poll) == (48, "gb18030", 60.0, 0.1)
    assert (printers["b"].width, printers["b"].encoding, printers["a"].backup) == (32, "cp437", "b")

    with pytest.raises(ConfigError, match=r'devices\[0\]\.backup: "c" is not another printer; printers: b'):
        validate_printers(printer_devices(device_toml("a", "tcp://x", backup="c") + device_toml("b", "tcp://y")))
    with pytest.raises(ConfigError, match=r"devices\[0\]\.width: expected 16-96"):
        validate_printers(printer_devices(device_toml("a", "tcp://x", width=8)))
    with pytest.raises(ConfigError, match=r"devices\[0\]\.port"):
        validate_printers(printer_devices(device_toml("a", "http://printer/")))
    with pytest.raises(ConfigError, match='did you mean "gb18030"'):
        printer_devices(device_toml("a", "tcp://x", encoding="gb1830"))
    with pytest.raises(ConfigError, match="no time unit"):
        printer_devices(device_toml("a", "tcp://x", failover_after=5))
