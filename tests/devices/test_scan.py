"""``storegw devices scan`` / ``devices add`` over simulated USB serial devices.

Each device is a real pty driven by its family's simulator (speaking the real protocol), behind a
fake sysfs + /dev tree with udev's by-id and by-path links (devices/usbsim.py). The scan runs
as a real ``storegw`` subprocess with the hidden ``--sys-root``/``--dev-root`` options.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import tomllib
from pathlib import Path

import pytest

from devices.escpos.simulator import PtyPrinter
from devices.idcard.simulator import CARDS, IdCardSimulator
from devices.modbus.simulator import ModbusSimulator
from devices.ptysim import PtyDevice
from devices.scan import HARDWARE, UNKNOWN, Port, recognise
from devices.scanner.simulator import ScannerSimulator
from devices.usbsim import UsbSerial, UsbTree

STOREGW = [sys.executable, "-m", "gateway"]


def storegw(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*STOREGW, *args], capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture
def bench(tmp_path: Path):
    """Five devices on five USB sockets: printer behind a CH340, ID reader, scanner, RS-485, a silent CP2102."""
    tree = UsbTree(tmp_path / "root")
    printer = PtyPrinter().start()
    reader = IdCardSimulator()
    reader.plug()
    scanner = ScannerSimulator()
    scanner.plug()
    bus = ModbusSimulator()
    bus.plug()
    silent = PtyDevice()
    silent.plug()
    sims = {"printer": printer, "reader": reader, "scanner": scanner, "bus": bus, "silent": silent}
    usb = {
        "printer": UsbSerial(0x1A86, 0x7523, "QinHeng", "USB Serial", "PRN0001", printer.port),
        "reader": UsbSerial(0x0400, 0xC35A, "Synjones", "ID Card Reader", "SAM778899", reader.port, cdc=True),
        "scanner": UsbSerial(0x1EAB, 0x1A06, "Newland", "NLS-HR22", "C1234567", scanner.port, cdc=True),
        "bus": UsbSerial(0x0403, 0x6001, "FTDI", "USB-RS485 Cable", "A5XK3RJT", bus.port),
        "silent": UsbSerial(0x10C4, 0xEA60, "Silicon Labs", "CP2102 USB to UART Bridge Controller", "0001",
                            silent.port),
    }
    sockets = {"printer": "1-1.1", "reader": "1-1.2", "scanner": "1-1.3", "bus": "1-1.4", "silent": "1-1.5"}
    for name, socket in sockets.items():
        tree.plug(socket, usb[name])
    stop = threading.Event()

    def keep_scanning() -> None:  # someone scans a barcode now and then while the scan listens
        while not stop.wait(0.3):
            scanner.sample()

    t = threading.Thread(target=keep_scanning, daemon=True)
    t.start()
    try:
        yield tree, sims, usb, sockets
    finally:
        stop.set()
        t.join(2)
        printer.stop()
        for sim in (reader, scanner, bus, silent):
            sim.unplug()


def _scan(tree: UsbTree, *extra: str) -> dict[str, dict]:
    res = storegw("devices", "scan", "--sys-root", str(tree.sys), "--dev-root", str(tree.dev), "--listen", "2",
                  "--json", *extra)
    assert res.returncode == 0, res.stderr
    return {Path(f["port"]["by_id"]).name: f for f in json.loads(res.stdout)}


def test_scan_classifies_and_replug_keeps_ids(bench, tmp_path: Path) -> None:
    tree, sims, usb, sockets = bench
    found = _scan(tree)
    assert set(found) == {u.by_id_name for u in usb.values()}
    by = {name: found[usb[name].by_id_name] for name in usb}
    # confirmed by their protocols, not just the table
    assert by["printer"]["family"] == "bridge" and by["printer"]["kind"] == "escpos" and by["printer"]["confirmed"]
    assert "DLE EOT" in by["printer"]["probe"]["detail"] or "ESC/POS" in by["printer"]["probe"]["detail"]
    assert by["reader"]["family"] == "idcard" and by["reader"]["kind"] == "idcard" and by["reader"]["confirmed"]
    assert by["scanner"]["family"] == "scanner" and by["scanner"]["kind"] == "scanner" and by["scanner"]["confirmed"]
    assert by["bus"]["family"] == "modbus" and by["bus"]["kind"] == "modbus" and by["bus"]["confirmed"]
    assert by["silent"]["family"] == "bridge" and not by["silent"]["confirmed"] and by["silent"]["proposal"] is None
    # attributes as listed
    assert by["printer"]["port"]["usb_id"] == "1a86:7523"
    assert by["printer"]["port"]["serial_number"] == "PRN0001"
    assert by["printer"]["port"]["location"] == "1-1.1:1.0"
    assert by["reader"]["proposal"]["options"] == {"baudrate": 115200}
    # proposals bind the by-id path
    for name in ("printer", "reader", "scanner", "bus"):
        assert by[name]["proposal"]["port"] == str(tree.dev / "serial" / "by-id" / usb[name].by_id_name)
    ids_before = {name: by[name]["proposal"]["id"] for name in ("printer", "reader", "scanner", "bus")}
    assert ids_before["printer"] == "printer-prn0001"

    # Re-plug printer and reader into each other's sockets (and the printer gets another tty number).
    tree.unplug(sockets["printer"])
    tree.unplug(sockets["reader"])
    tree.plug("1-1.2", usb["printer"], tty="ttyUSB7")
    tree.plug("1-1.1", usb["reader"])
    # the config already names the printer by its by-id path
    cfg = tmp_path / "storegw.toml"
    cfg.write_text(f'[store]\nid = "sh-001"\ndata_dir = "{(tmp_path / "data").as_posix()}"\n\n'
                   f'[[devices]]\nid = "kitchen-printer"\nkind = "escpos"\n'
                   f'port = "{tree.dev / "serial" / "by-id" / usb["printer"].by_id_name}"\n')
    again = _scan(tree, "--config", str(cfg))
    by2 = {name: again[usb[name].by_id_name] for name in usb}
    assert by2["printer"]["port"]["device"].endswith("ttyUSB7")
    assert by2["printer"]["port"]["location"] == "1-1.2:1.0"
    assert by2["printer"]["configured_as"] == "kitchen-printer"
    assert by2["printer"]["kind"] == "escpos" and by2["reader"]["kind"] == "idcard"
    assert by2["reader"]["proposal"]["id"] == ids_before["reader"]
    assert by2["scanner"]["proposal"]["id"] == ids_before["scanner"]


def test_scan_text_output_and_passive(bench) -> None:
    tree, sims, usb, _ = bench
    res = storegw("devices", "scan", "--sys-root", str(tree.sys), "--dev-root", str(tree.dev), "--listen", "1",
                  "--passive")
    assert res.returncode == 0, res.stderr
    assert "1a86:7523  CH340 USB-serial" in res.stdout
    assert "confirmed scanner" in res.stdout
    assert "[[devices]]" in res.stdout
    # passive: nothing was sent to the printer, the reader or the bus
    assert sims["printer"].received == b""
    assert sims["reader"].commands == []
    assert sims["bus"].requests == 0


def test_add_after_live_test(bench, tmp_path: Path) -> None:
    tree, sims, usb, _ = bench
    cfg = tmp_path / "storegw.toml"
    cfg.write_text(f'# the store\n[store]\nid = "sh-001"\ndata_dir = "{(tmp_path / "data").as_posix()}"\n')
    printer_port = str(tree.dev / "serial" / "by-id" / usb["printer"].by_id_name)
    res = storegw("devices", "add", printer_port, "--config", str(cfg), "--sys-root", str(tree.sys),
                  "--dev-root", str(tree.dev), "--timeout", "5")
    assert res.returncode == 0, res.stderr + res.stdout
    assert "test page printed" in res.stdout
    assert "storegw test print" in "\n".join(sims["printer"].lines())
    reader_port = str(tree.dev / "serial" / "by-id" / usb["reader"].by_id_name)
    sims["reader"].place(CARDS["resp-read-base-info-constructed-male"])
    res = storegw("devices", "add", reader_port, "--config", str(cfg), "--kind", "idcard", "--id", "front-desk-id",
                  "--option", "baudrate=115200", "--timeout", "10")
    assert res.returncode == 0, res.stderr + res.stdout
    assert "110102199101010078" not in res.stdout  # masked
    text = cfg.read_text()
    assert text.startswith("# the store\n")
    doc = tomllib.loads(text)
    assert [(d["id"], d["kind"], d["port"]) for d in doc["devices"]] == [
        ("printer-prn0001", "escpos", printer_port), ("front-desk-id", "idcard", reader_port)]
    assert storegw("config", "check", str(cfg)).returncode == 0
    # the same port twice is refused, naming the entry
    res = storegw("devices", "add", printer_port, "--config", str(cfg), "--skip-test")
    assert res.returncode == 2 and "printer-prn0001" in res.stderr
    # a scanner nobody scans with fails the live test and writes nothing
    silent_port = str(tree.dev / "serial" / "by-id" / usb["silent"].by_id_name)
    res = storegw("devices", "add", silent_port, "--config", str(cfg), "--kind", "scanner", "--timeout", "1")
    assert res.returncode == 1 and "scan a barcode" in res.stderr
    assert len(tomllib.loads(cfg.read_text())["devices"]) == 2


def test_table_rows() -> None:
    """The table's rows for each family; a shared VID:PID is told apart by the product string."""
    def row(vid: int, pid: int, product: str = "", iface: int | None = None):
        return recognise(Port(device="/dev/x", name="x", vid=vid, pid=pid, product=product, iface_class=iface))

    assert row(0x0403, 0x6001, "FT232R USB UART").family == "bridge"
    assert row(0x0403, 0x6001, "USB-RS485 Cable").family == "modbus"
    assert row(0x067B, 0x2303).label.startswith("Prolific")
    assert row(0x10C4, 0xEA60).family == "bridge"
    assert row(0x04B8, 0x0E03).kinds == ("escpos",)
    assert row(0x0416, 0x5011).family == "printer"
    assert row(0x0483, 0x5652).family == "idcard"
    assert row(0x1EAB, 0x2306).family == "scanner"
    assert row(0x1234, 0x5678, iface=7).family == "printer"
    assert row(0x1234, 0x5678) is UNKNOWN
    assert all(r.source for r in HARDWARE)


def test_pyserial_path_runs() -> None:
    """Without test roots the list comes from pyserial's comports() (this machine may have none)."""
    res = storegw("devices", "scan", "--no-probe", "--json")
    assert res.returncode == 0, res.stderr
    assert isinstance(json.loads(res.stdout), list)
