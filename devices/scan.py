"""``storegw devices scan``: list the board's USB serial devices, recognise them, probe them, propose entries.

Three steps, each usable alone:

1. **List** (:func:`list_ports`): every USB tty with VID:PID, manufacturer, product, serial number,
   interface, USB location, and its stable ``/dev/serial/by-id/...`` path. On a board this is
   pyserial's ``serial.tools.list_ports.comports()``; with ``sys_root``/``dev_root`` (tests, or a copy
   of another board's trees) the same sysfs attributes are read under those roots, the way pyserial's
   ``list_ports_linux`` reads them under ``/sys``.
2. **Recognise** (:func:`recognise`): a table of VID:PID (plus a product glob where one VID:PID is
   shared by unrelated products, and the USB interface class) to a family and the ``kind`` values it
   may be. A USB-serial bridge (CH340, FTDI, CP210x, Prolific) says nothing about what is behind
   it, so its candidates are every serial family. Sources are in docs/devices.md.
3. **Probe** (:func:`probe`): confirm with the device's own protocol, in an order that is safe for
   the others: listen (passive, for a scan or a card reader that sends on its own), ESC/POS
   ``DLE EOT 1`` real-time status (prints nothing), the SAM reader's status command (``AA AA AA 96
   69 00 03 11 FF ED``), a Modbus RTU read of one holding register of slave 1. A printer that does
   not answer ``DLE EOT`` may print the SAM probe as a few stray characters: ``--passive`` skips the
   active probes.

The proposed ``[[devices]]`` entry binds the by-id path, so a device moved to another USB socket
keeps its entry and its id (the id is made from the USB serial number, never from the socket).
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import os
import re
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from gateway.core.errors import DeviceUnavailable, ProtocolError

# kinds a plain USB-serial bridge may carry (anything speaking over a UART)
SERIAL_KINDS = ("scanner", "escpos", "idcard", "modbus", "em4100", "magstripe", "mrz")
PRINTER_CLASS = 0x07  # USB interface class "Printer"


@dataclass(frozen=True)
class Known:
    """One row of the hardware table: VID, PID glob (4 hex digits), product glob, interface class."""

    vid: int
    pid: str
    family: str  # bridge | scanner | printer | idcard | modbus
    label: str
    kinds: tuple[str, ...]
    product: str = "*"
    iface_class: int | None = None
    source: str = "usb.ids"

    def matches(self, vid: int | None, pid: int | None, product: str, iface_class: int | None) -> bool:
        """Whether a port with these USB attributes is this row."""
        if vid != self.vid or pid is None or not fnmatch.fnmatch(f"{pid:04x}", self.pid.lower()):
            return False
        if self.iface_class is not None and iface_class != self.iface_class:
            return False
        return fnmatch.fnmatch((product or "").lower(), self.product.lower())


def _row(vid: int, pids: Iterable[str], family: str, label: str, kinds: tuple[str, ...], **kw: Any) -> list[Known]:
    return [Known(vid, pid, family, label, kinds, **kw) for pid in pids]


# First match wins: specific rows (a product glob, an interface class) before the general ones.
# Sources per row in docs/devices.md ("The hardware table").
HARDWARE: tuple[Known, ...] = tuple([
    # USB-serial bridges sold as RS-485 / Modbus adapters: the product string says so
    *_row(0x0403, ("6001", "6010", "6014", "6015"), "modbus", "FTDI RS-485 adapter", ("modbus",), product="*485*"),
    *_row(0x1A86, ("7523", "7522", "5523", "55d*"), "modbus", "CH34x RS-485 adapter", ("modbus",), product="*485*"),
    *_row(0x10C4, ("ea60", "ea70", "ea71"), "modbus", "CP210x RS-485 adapter", ("modbus",), product="*485*"),
    *_row(0x067B, ("2303",), "modbus", "Prolific RS-485 adapter", ("modbus",), product="*485*"),
    # receipt printers (printer-class interface, or a vendor's serial/CDC port)
    *_row(0x04B8, ("0202", "0e03", "0e31", "0e*"), "printer", "Epson TM receipt printer", ("escpos",)),
    *_row(0x1504, ("001f",), "printer", "Bixolon receipt printer", ("escpos",)),
    *_row(0x1D90, ("20f0",), "printer", "Citizen receipt printer", ("escpos",)),
    *_row(0x0519, ("0003",), "printer", "Star receipt printer", ("escpos",)),
    *_row(0x0DD4, ("0237",), "printer", "Custom receipt printer", ("escpos",)),
    *_row(0x0A5F, ("*",), "printer", "Zebra printer", ("escpos",)),
    # Chinese ESC/POS printers on borrowed IDs (Xprinter, Gprinter, HOIN...)
    *_row(0x0416, ("5011",), "printer", "ESC/POS printer (Winbond ID: Xprinter, Gprinter...)", ("escpos",),
          source="python-escpos#51, #646"),
    *_row(0x0483, ("5743",), "printer", "ESC/POS printer (STMicro ID)", ("escpos",), source="python-escpos#379"),
    *_row(0x0471, ("0055",), "printer", "ESC/POS printer (Philips ID)", ("escpos",), source="python-escpos#646"),
    *_row(0x0456, ("0808",), "printer", "ESC/POS printer (Analog Devices ID)", ("escpos",), source="node-escpos#277"),
    # second-generation ID card readers (SAM module behind a USB-serial/CDC port)
    *_row(0x0400, ("c35a",), "idcard", "ID card reader (SAM)", ("idcard",), source="public reader SDK code"),
    *_row(0x0483, ("5652",), "idcard", "ID card reader (SAM, fallback ID)", ("idcard",),
          source="public reader SDK code"),
    # barcode scanners in a serial mode (USB CDC / RS-232 emulation)
    *_row(0x0C2E, ("0b81", "0700", "0720", "*"), "scanner", "Honeywell/Metrologic scanner", ("scanner",)),
    *_row(0x0536, ("*",), "scanner", "Hand Held Products (Honeywell) scanner", ("scanner",)),
    *_row(0x05E0, ("1701", "1200", "*"), "scanner", "Zebra/Symbol scanner", ("scanner",)),
    *_row(0x1EAB, ("??06", "??03", "??10", "*"), "scanner", "Newland scanner", ("scanner",)),
    *_row(0x05F9, ("4204", "*"), "scanner", "Datalogic scanner", ("scanner",)),
    *_row(0x065A, ("0009", "*"), "scanner", "Opticon scanner", ("scanner",)),
    # any printer-class interface
    Known(-1, "*", "printer", "USB printer class", ("escpos",), source="USB class 07"),
    # plain USB-serial bridges: anything may be behind them
    *_row(0x1A86, ("7523", "7522"), "bridge", "CH340 USB-serial", SERIAL_KINDS),
    *_row(0x1A86, ("5523",), "bridge", "CH341 USB-serial", SERIAL_KINDS),
    *_row(0x0403, ("6001", "6010", "6014", "6015"), "bridge", "FTDI USB-serial", SERIAL_KINDS),
    *_row(0x10C4, ("ea60", "ea70", "ea71"), "bridge", "Silicon Labs CP210x USB-serial", SERIAL_KINDS),
    *_row(0x067B, ("2303",), "bridge", "Prolific PL2303 USB-serial", SERIAL_KINDS),
])
UNKNOWN = Known(0, "*", "unknown", "unknown USB serial device", SERIAL_KINDS, source="")


@dataclass
class Port:
    """One USB serial port as listed (no probe yet)."""

    device: str  # the kernel's node: /dev/ttyUSB0, /dev/ttyACM1
    name: str
    vid: int | None = None
    pid: int | None = None
    manufacturer: str = ""
    product: str = ""
    serial_number: str = ""
    interface: str = ""
    location: str = ""  # USB bus path: changes when the cable moves to another socket
    iface_class: int | None = None
    by_id: str = ""  # /dev/serial/by-id/...: stays the same in any socket
    by_path: str = ""

    @property
    def usb_id(self) -> str:
        """``vvvv:pppp``, or empty for a non-USB port."""
        return f"{self.vid:04x}:{self.pid:04x}" if self.vid is not None and self.pid is not None else ""

    @property
    def stable(self) -> str:
        """The path to configure: by-id when udev made one, else the node (with a warning)."""
        return self.by_id or self.device


@dataclass
class Probe:
    """What a protocol probe established (``kind`` empty: nothing answered)."""

    kind: str = ""
    detail: str = ""
    tried: list[str] = field(default_factory=list)


@dataclass
class Found:
    """A port, what the table says it is, what the probe confirmed, and the proposed entry."""

    port: Port
    known: Known
    probe: Probe
    configured_as: str = ""  # the id of the [[devices]] entry already using this port
    proposal: dict[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        """The confirmed kind, else the table's only candidate, else empty."""
        if self.probe.kind:
            return self.probe.kind
        return self.known.kinds[0] if len(self.known.kinds) == 1 else ""

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready view (``storegw devices scan --json``)."""
        port = asdict(self.port)
        port["usb_id"] = self.port.usb_id
        return {"port": port, "family": self.known.family, "label": self.known.label,
                "candidates": list(self.known.kinds), "kind": self.kind, "confirmed": bool(self.probe.kind),
                "probe": asdict(self.probe), "configured_as": self.configured_as or None,
                "proposal": self.proposal or None}


# ---------------------------------------------------------------------------------------------- listing

def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return ""


def _hex(text: str) -> int | None:
    try:
        return int(text, 16)
    except ValueError:
        return None


def _links(directory: Path) -> dict[str, str]:
    """``{tty name: link path}`` of the udev symlinks in ``directory`` (by-id, by-path)."""
    out: dict[str, str] = {}
    if not directory.is_dir():
        return out
    for link in sorted(directory.iterdir()):
        if not link.is_symlink():
            continue
        # one level only: under a test root the node itself is a link to a pty
        target = os.path.normpath(os.path.join(link.parent, os.readlink(link)))
        out.setdefault(os.path.basename(target), str(link))
    return out


def _sysfs_ports(sys_root: Path, dev_root: Path) -> list[Port]:
    """Read the USB ttys under a sysfs-like root, as pyserial's ``list_ports_linux.SysFS`` does under /sys."""
    ports = []
    tty_dir = sys_root / "class" / "tty"
    if not tty_dir.is_dir():
        return []
    for entry in sorted(tty_dir.iterdir()):
        device_link = entry / "device"
        if not device_link.exists():
            continue  # a virtual tty
        device_path = device_link.resolve()
        subsystem = (device_path / "subsystem").resolve().name if (device_path / "subsystem").exists() else ""
        if subsystem == "usb-serial":
            iface = device_path.parent
        elif subsystem == "usb":
            iface = device_path
        else:
            continue  # a UART on the board itself (ttyAMA0, ttyS0): not listed
        usb = iface.parent
        ports.append(Port(
            device=str(dev_root / entry.name), name=entry.name,
            vid=_hex(_read(usb / "idVendor")), pid=_hex(_read(usb / "idProduct")),
            manufacturer=_read(usb / "manufacturer"), product=_read(usb / "product"),
            serial_number=_read(usb / "serial"), interface=_read(iface / "interface"),
            location=f"{usb.name}:{iface.name.rpartition(':')[2]}" if ":" in iface.name else usb.name,
            iface_class=_hex(_read(iface / "bInterfaceClass"))))
    return ports


def _pyserial_ports() -> list[Port]:
    from serial.tools import list_ports

    out = []
    for info in list_ports.comports():
        if info.vid is None:
            continue  # not USB
        out.append(Port(device=info.device, name=info.name, vid=info.vid, pid=info.pid,
                        manufacturer=info.manufacturer or "", product=info.product or "",
                        serial_number=info.serial_number or "", interface=info.interface or "",
                        location=info.location or ""))
    return out


def list_ports(sys_root: str | os.PathLike[str] | None = None,
               dev_root: str | os.PathLike[str] | None = None) -> list[Port]:
    """Every USB serial port with its USB attributes and udev's stable links."""
    dev = Path(dev_root) if dev_root else Path("/dev")
    ports = _sysfs_ports(Path(sys_root), dev) if sys_root else _pyserial_ports()
    by_id, by_path = _links(dev / "serial" / "by-id"), _links(dev / "serial" / "by-path")
    for port in ports:
        port.by_id = by_id.get(port.name, "")
        port.by_path = by_path.get(port.name, "")
    return ports


def recognise(port: Port) -> Known:
    """The hardware table's first matching row, or :data:`UNKNOWN`."""
    for row in HARDWARE:
        if row.vid == -1:
            if port.iface_class == PRINTER_CLASS:
                return row
            continue
        if row.matches(port.vid, port.pid, port.product, port.iface_class):
            return row
    return UNKNOWN


# ---------------------------------------------------------------------------------------------- probing

BAUD = {"escpos": 9600, "idcard": 115200, "modbus": 9600, "scanner": 9600}


def _open(path: str, baudrate: int) -> Any:
    from devices.transport import open_port

    return open_port(path, baudrate=baudrate, timeout=0.05)


def _read_for(conn: Any, seconds: float, *, until: Any = None) -> bytes:
    """Read what arrives for ``seconds`` (or until ``until(buf)`` is true)."""
    buf = bytearray()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        chunk = conn.read(4096)
        if chunk:
            buf += chunk
            if until is not None and until(bytes(buf)):
                break
    return bytes(buf)


def _looks_like_scan(data: bytes) -> str:
    """The decoded (masked) scan if ``data`` holds one terminated scanner message, else empty."""
    from devices.scanner import protocol as scanner

    for line in re.split(rb"\r\n|\r|\n", data)[:-1]:
        if not line:
            continue
        try:
            scan = scanner.parse_scan(line + b"\r", aim="optional")
        except ProtocolError:
            continue
        shown = scan.as_dict()
        return f"scan: {shown.get('event')} {str(shown.get('data'))[:40]}"
    return ""


def probe_listen(path: str, seconds: float) -> Probe:
    """Passive: wait ``seconds`` for a scan (the technician scans any barcode meanwhile)."""
    with contextlib.closing(_open(path, BAUD["scanner"])) as conn:
        data = _read_for(conn, seconds, until=lambda b: bool(_looks_like_scan(b)))
    text = _looks_like_scan(data)
    if text:
        return Probe("scanner", text)
    return Probe("", f"{len(data)} bytes, no scan" if data else "silent")


def probe_escpos(path: str, timeout: float) -> Probe:
    """``DLE EOT 1`` (and 4 for paper): a printer answers one status byte; nothing is printed."""
    from devices.escpos import protocol as escpos

    with contextlib.closing(_open(path, BAUD["escpos"])) as conn:
        conn.reset_input_buffer()
        conn.write(escpos.DLE_EOT + b"\x01")
        reply = _read_for(conn, timeout, until=lambda b: len(b) >= 1)
        try:
            printer = escpos.parse_status(1, reply[:1]) if len(reply) == 1 else None
        except ProtocolError:
            printer = None
        if printer is None:
            return Probe("", "no DLE EOT reply")
        conn.write(escpos.DLE_EOT + b"\x04")
        paper = _read_for(conn, timeout, until=lambda b: len(b) >= 1)
    state = "online" if printer.online else "offline"
    with contextlib.suppress(ProtocolError):
        roll = escpos.parse_status(4, paper[:1])
        state += ", paper out" if roll.paper_end else ", paper near end" if roll.paper_near_end else ", paper ok"
    return Probe("escpos", f"ESC/POS status: {state}")


def _ask(kind: str, path: str, request: bytes, parser: Any, frame_type: type, timeout: float) -> list[Any]:
    """Send ``request`` at ``kind``'s baud rate; return the ``frame_type`` frames that ``parser`` decodes
    from the first answer before ``timeout`` (empty: no answer)."""
    with contextlib.closing(_open(path, BAUD[kind])) as conn:
        conn.reset_input_buffer()
        conn.write(request)
        frames: list[Any] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not frames:
            chunk = conn.read(256)
            if chunk:
                frames = [f for f in parser.data_received(chunk) if isinstance(f, frame_type)]
    return frames


def probe_sam(path: str, timeout: float) -> Probe:
    """The SAM module's status command (``11 FF``); a reader answers ``90`` (SAM ok)."""
    from devices.idcard import protocol as idcard

    frames = _ask("idcard", path, idcard.build_command(0x11, 0xFF), idcard.SamProtocol("response"),
                  idcard.SamResponse, timeout)
    if not frames:
        return Probe("", "no SAM reply")
    return Probe("idcard", f"SAM status {frames[0].sw3:02x}" + (" (ok)" if frames[0].sw3 == 0x90 else ""))


def probe_modbus(path: str, timeout: float, slave: int = 1) -> Probe:
    """Read one holding register of ``slave``: an answer (even an exception) proves a Modbus bus."""
    from devices.modbus import protocol as modbus

    frames = _ask("modbus", path, modbus.read_request(slave, 3, 0, 1), modbus.RtuProtocol("response"),
                  modbus.RtuFrame, timeout)
    if not frames:
        return Probe("", f"no answer from slave {slave}")
    frame = frames[0]
    what = "exception" if frame.function & 0x80 else "registers"
    return Probe("modbus", f"Modbus RTU: slave {frame.slave} answered ({what})")


def probe(path: str, candidates: Sequence[str], *, listen: float = 2.0, timeout: float = 0.5,
          active: bool = True) -> Probe:
    """Confirm what is on ``path``: passive listening first, then the active probes of the candidates."""
    steps: list[tuple[str, Any]] = []
    if listen > 0 and "scanner" in candidates:
        steps.append(("listen", lambda: probe_listen(path, listen)))
    if active:
        if "escpos" in candidates:
            steps.append(("escpos", lambda: probe_escpos(path, timeout)))
        if "idcard" in candidates:
            steps.append(("sam", lambda: probe_sam(path, timeout)))
        if "modbus" in candidates:
            steps.append(("modbus", lambda: probe_modbus(path, timeout)))
    result = Probe()
    for name, step in steps:
        try:
            got = step()
        except (DeviceUnavailable, OSError) as err:
            result.tried.append(f"{name}: {err}")
            result.detail = f"cannot open: {err}"
            return result
        result.tried.append(f"{name}: {got.detail}")
        if got.kind:
            got.tried = result.tried
            return got
    result.detail = "no probe answered" if steps else "not probed"
    return result


# ---------------------------------------------------------------------------------------------- proposals

def proposed_id(kind: str, port: Port) -> str:
    """A device id stable across USB sockets: kind plus the USB serial number (or the by-id name)."""
    base = {"escpos": "printer", "idcard": "idreader"}.get(kind, kind or "device")
    token = re.sub(r"[^A-Za-z0-9]", "", port.serial_number)[-8:].lower()
    if not token:
        seed = port.by_id or f"{port.usb_id}:{port.product}"
        token = hashlib.sha256(seed.encode()).hexdigest()[:6]
    return f"{base}-{token}"


def proposal(found: Found) -> dict[str, Any]:
    """The ``[[devices]]`` entry for a recognised port (empty when the kind is unknown)."""
    kind = found.kind
    if not kind:
        return {}
    entry: dict[str, Any] = {"id": proposed_id(kind, found.port), "kind": kind, "port": found.port.stable}
    options: dict[str, Any] = {}
    if kind == "idcard":
        options["baudrate"] = BAUD["idcard"]
    if kind == "modbus":
        options["registers"] = ["1:0x0000:uint16:1:value"]  # placeholder: the device's register map
    if options:
        entry["options"] = options
    return entry


def scan(*, sys_root: str | os.PathLike[str] | None = None, dev_root: str | os.PathLike[str] | None = None,
         configured: Iterable[tuple[str, str]] = (), listen: float = 2.0, timeout: float = 0.5,
         active: bool = True, do_probe: bool = True) -> list[Found]:
    """List, recognise and (in parallel, one thread per port) probe; ``configured``: (id, port) pairs."""
    ports = list_ports(sys_root, dev_root)
    by_path = {}
    for dev_id, port in configured:
        by_path[port] = dev_id
        with contextlib.suppress(OSError):
            by_path.setdefault(os.path.realpath(port), dev_id)
    found = [Found(p, recognise(p), Probe(detail="not probed")) for p in ports]
    for item in found:
        p = item.port
        item.configured_as = by_path.get(p.by_id, "") or by_path.get(p.device, "")
    if do_probe and found:
        with ThreadPoolExecutor(max_workers=min(8, len(found)), thread_name_prefix="storegw-scan") as pool:
            probes = list(pool.map(lambda f: probe(f.port.device, f.known.kinds, listen=listen, timeout=timeout,
                                                   active=active), found))
        for item, result in zip(found, probes, strict=True):
            item.probe = result
    for item in found:
        item.proposal = proposal(item)
        if item.configured_as and item.proposal:
            item.proposal["id"] = item.configured_as
    return found


def toml_entry(entry: dict[str, Any]) -> str:
    """Render one ``[[devices]]`` entry as TOML (strings, numbers, booleans and lists of them)."""
    lines = ["[[devices]]"]
    for key in ("id", "kind", "port"):
        lines.append(f"{key} = {toml_value(entry[key])}")
    options = entry.get("options") or {}
    if options:
        lines.append("[devices.options]")
        lines += [f"{key} = {toml_value(value)}" for key, value in options.items()]
    return "\n".join(lines) + "\n"


def toml_value(value: Any) -> str:
    """One TOML value (JSON's string escapes are TOML basic-string escapes)."""
    import json

    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(str(value), ensure_ascii=False)


# ---------------------------------------------------------------------------------------------- live test

class _Collect:
    """An EventSink that keeps what a driver reports during a live test (never raises)."""

    def __init__(self) -> None:
        import threading

        self.got = threading.Event()
        self.events: list[Any] = []
        self.readings: list[Any] = []
        self.unavailable = ""

    def event(self, event: Any) -> None:
        self.events.append(event)
        self.got.set()

    def availability(self, change: Any) -> None:
        if not change.available:
            self.unavailable = change.reason

    def reading(self, reading: Any) -> None:
        self.readings.append(reading)
        self.got.set()


TEST_PRINT = "storegw test print 测试打印"


def print_test_page(port: str, options: dict[str, Any], device_id: str, timeout: float = 2.0) -> str:
    """Print a short test page and confirm it with ``DLE EOT``; return the printer's condition."""
    from devices.escpos.driver import PrinterConnection

    conn = PrinterConnection(port, status_timeout=timeout, baudrate=int(options.get("baudrate", 9600)))
    try:
        conn.open()
        before = conn.status()
        if not before.ready:
            raise DeviceUnavailable(f"the printer is {before.condition}; fix it and try again")
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        text = f"{TEST_PRINT}\n{device_id}\n{stamp}\n\n\n"
        conn.write(b"\x1b@" + text.encode(options.get("encoding", "gb18030")) + b"\x1dV\x42\x00")
        after = conn.status()
    finally:
        conn.close()
    if not after.ready:
        raise DeviceUnavailable(f"the test page did not print: the printer is now {after.condition}")
    return "test page printed (status ready before and after)"


def live_test(dev: Any, timeout: float) -> str:
    """Run a validated ``DeviceConfig`` for real until it reports something; return what (masked).

    Printers print a test page; scanners wait for a scan, card readers for a card, Modbus for a
    reading. Raises DeviceUnavailable with what to do when nothing came within ``timeout``.
    """
    from devices import registry

    if dev.kind == "escpos":
        return print_test_page(dev.port, dict(dev.options), dev.id)
    family = registry.spec(dev.kind)
    if family is None or family.factory is None:
        raise DeviceUnavailable(f"no live test for kind \"{dev.kind}\"")
    sink = _Collect()
    driver = family.factory(dev)
    driver.start(sink)
    try:
        sink.got.wait(timeout)
    finally:
        driver.stop()
    if sink.events:
        data = dict(sink.events[0].data)  # already masked by the driver
        return f"{dev.kind} event: " + ", ".join(f"{k}={v}" for k, v in list(data.items())[:6])
    if sink.readings:
        metrics = sink.readings[0].metrics
        return "reading: " + ", ".join(f"{k}={v}" for k, v in list(metrics.items())[:6])
    action = {"scanner": "scan a barcode", "idcard": "place an ID card on the reader",
              "em4100": "hold a tag to the reader", "magstripe": "swipe a card", "mrz": "read a passport",
              "modbus": "check the bus wiring, slave address and baud rate"}.get(dev.kind, "use the device")
    why = f" ({sink.unavailable})" if sink.unavailable else ""
    raise DeviceUnavailable(f"nothing from {dev.port} within {timeout:g}s{why}: {action} during the test, "
                            f"or raise --timeout")
