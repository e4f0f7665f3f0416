"""The virtual printer and the printer connection, over real loopback TCP, a real pty and a file."""

from __future__ import annotations

import select
import socket

import pytest
from printkit import printer_factory_fixture, vprinter_fixture, wait_for  # noqa: F401 - fixtures

from devices.escpos import render
from devices.escpos.driver import PrinterConnection, parse_port
from devices.escpos.simulator import PtyPrinter
from gateway.core.errors import ConfigError, DeviceUnavailable


def ask(port: int, n: int, timeout: float = 0.5) -> bytes:
    """Send DLE EOT n on a fresh connection and return what came back."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(bytes((0x10, 0x04, n)))
        try:
            return s.recv(16)
        except TimeoutError:
            return b""


# Replies cited by vector id (shared vectors/escpos_status.json).
@pytest.mark.parametrize(("state", "n", "reply", "vector"), [
    ({}, 2, "12", "n2-no-cause"),
    ({"cover_open": True}, 2, "16", "n2-cover-open"),
    ({"paper_out": True}, 2, "32", "n2-paper-end-stop"),
    ({"error": True}, 2, "52", "n2-error"),
    ({}, 3, "12", "n3-no-error"),
    ({"paper_near_end": True}, 4, "1e", "n4-near-end"),
    ({"paper_out": True}, 4, "7e", "n4-paper-end"),
])
def test_status_replies_match_the_vectors(vprinter, state, n, reply, vector):
    vprinter.set_state(**state)
    assert ask(vprinter.port, n).hex() == reply, vector


def test_offline_printer_is_silent_and_loses_what_it_is_sent(vprinter):
    vprinter.set_state(offline=True)
    assert ask(vprinter.port, 1) == b""
    conn = PrinterConnection(vprinter.url, status_timeout=0.3)
    conn.write(b"lost\n")
    status = conn.status()
    conn.close()
    assert status.condition == "offline"
    assert not status.answered
    assert vprinter.printed == b""
    assert vprinter.lost == len(b"lost\n")


@pytest.mark.parametrize(("state", "condition"), [
    ({}, "ready"), ({"paper_out": True}, "paper_out"), ({"cover_open": True}, "cover_open"),
    ({"error": True}, "error"), ({"paper_near_end": True}, "ready"),
])
def test_connection_reads_each_condition(vprinter, state, condition):
    vprinter.set_state(**state)
    conn = PrinterConnection(vprinter.url, status_timeout=1.0)
    try:
        status = conn.status()
    finally:
        conn.close()
    assert status.condition == condition
    assert status.paper_near_end == bool(state.get("paper_near_end") or state.get("paper_out"))


def test_refused_connection_is_device_unavailable_and_recovers_on_the_same_port(vprinter):
    port = vprinter.port
    vprinter.refuse()
    conn = PrinterConnection(vprinter.url, status_timeout=0.5)
    with pytest.raises(DeviceUnavailable, match="cannot connect") as err:
        conn.status()
    assert isinstance(err.value.__cause__, OSError)
    vprinter.refuse(False)
    assert vprinter.port == port
    assert conn.status().ready
    conn.close()


def test_a_stale_reply_is_flushed_before_asking(vprinter):
    vprinter.set_state(paper_out=True)
    conn = PrinterConnection(vprinter.url, status_timeout=1.0)
    conn.open()
    conn._conn.sendall(b"\x10\x04\x04")  # a reply nobody reads (as after a timed-out request)
    readable, _, _ = select.select([conn._conn], [], [], 2.0)
    assert readable
    vprinter.set_state(paper_out=False)
    assert conn.status().condition == "ready"  # not the stale paper-end byte 7e
    conn.close()


def test_paper_runs_out_mid_job(vprinter):
    job = render.render([{"t": "text", "text": f"line {i}"} for i in range(40)])
    vprinter.fail_after(100, "paper_out")
    conn = PrinterConnection(vprinter.url, status_timeout=1.0)
    conn.write(job)
    status = conn.status()
    conn.close()
    assert status.condition == "paper_out"
    assert vprinter.printed == job[:100]
    assert vprinter.lost == len(job) - 100


def test_connection_dropped_mid_job(vprinter):
    vprinter.fail_after(50, "drop")
    conn = PrinterConnection(vprinter.url, status_timeout=0.5)
    try:
        conn.write(b"x" * 5000)
        status = conn.status()
    except DeviceUnavailable:
        status = None  # the reset reached us while writing or reading: equally "not confirmed"
    conn.close()
    assert status is None or not status.ready
    assert len(vprinter.printed) == 50
    assert vprinter.connections == 1


def test_serial_printer_on_a_pty():
    with PtyPrinter() as pp:
        conn = PrinterConnection(pp.port, status_timeout=1.0)
        try:
            conn.write(render.render([{"t": "text", "text": "桌 12 宫保鸡丁"}]))
            assert conn.status().ready
            pp.set_state(cover_open=True)
            assert conn.status().condition == "cover_open"
        finally:
            conn.close()
        assert pp.tickets() == [["桌 12 宫保鸡丁"]]


def test_serial_url_printer_through_pyserial_socket(vprinter):
    conn = PrinterConnection(f"socket://127.0.0.1:{vprinter.port}", status_timeout=1.0)
    try:
        conn.write(render.render([{"t": "text", "text": "via socket://"}]))
        assert conn.status().ready
    finally:
        conn.close()
    assert vprinter.tickets() == [["via socket://"]]


def test_file_printer_writes_bytes_and_cannot_verify(tmp_path):
    path = tmp_path / "lp0"
    path.touch()
    conn = PrinterConnection(path.as_uri())
    data = render.render([{"t": "text", "text": "file"}])
    conn.write(data)
    status = conn.status()
    conn.close()
    assert status.ready
    assert not status.verified
    assert path.read_bytes() == data


def test_missing_file_printer_is_unavailable(tmp_path):
    conn = PrinterConnection((tmp_path / "nope" / "lp0").as_uri())
    with pytest.raises(DeviceUnavailable):
        conn.write(b"x")


def test_usb_printer_that_is_not_plugged_in_is_unavailable():
    # pyusb is a dependency; no printer 0416:5011 on this machine (libusb missing is said too)
    with pytest.raises(DeviceUnavailable, match=r"cannot open usb://0416:5011: .*(not found|libusb)"):
        PrinterConnection("usb://0416:5011").open()


def test_port_urls():
    assert parse_port("tcp://10.0.0.5").number == 9100
    assert parse_port("tcp://10.0.0.5:9101").number == 9101
    usb = parse_port("usb://0416:5011?in_ep=0x81")
    assert (usb.vid, usb.pid, dict(usb.query)) == (0x0416, 0x5011, {"in_ep": "0x81"})
    assert parse_port("file:///dev/usb/lp0").target == "/dev/usb/lp0"
    assert parse_port("/dev/serial/by-id/usb-printer").scheme == "serial"
    assert parse_port("rfc2217://10.0.0.9:4001").scheme == "serial"
    for bad in ("", "tcp://:9100", "usb://zz:1", "http://printer/"):
        with pytest.raises(ConfigError, match="port"):
            parse_port(bad)


def test_the_simulator_counts_drawer_kicks_it_receives(vprinter):
    with socket.create_connection(("127.0.0.1", vprinter.port)) as s:
        s.sendall(b"\x1bp\x00\x19\xfa" + b"\x10\x14\x01\x00\x05" + b"after\n")
    wait_for(lambda: vprinter.lines() == ["after"], what="bytes received")
    assert vprinter.drawer_kicks == 2
