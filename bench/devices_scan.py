"""How long `storegw devices scan` takes on a board full of devices, and whether it names them all.

Plugs ``--sets`` sets of five simulated USB devices (an ESC/POS printer behind a CH340, a SAM ID card
reader, a Newland scanner that someone scans with, an FTDI RS-485 Modbus bus, a silent CP2102) into
a fake sysfs + /dev (``devices/usbsim.py``, real ptys behind the nodes), runs the scan as the CLI
does (list, recognise, probe every port in parallel) ``--rounds`` times, then unplugs every device
and plugs it into another socket and scans again. Prints one JSON line last:
``{"bench": "devices_scan", "ports", "seconds_median", "seconds_max", "correct", "ids_kept", ...}``.

    python bench/devices_scan.py --sets 2 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from devices.escpos.simulator import PtyPrinter  # noqa: E402
from devices.idcard.simulator import IdCardSimulator  # noqa: E402
from devices.modbus.simulator import ModbusSimulator  # noqa: E402
from devices.ptysim import PtyDevice  # noqa: E402
from devices.scan import scan  # noqa: E402
from devices.scanner.simulator import ScannerSimulator  # noqa: E402
from devices.usbsim import UsbSerial, UsbTree  # noqa: E402


def log(msg: str) -> None:
    """Write a progress line to stderr."""
    print(f"[bench/devices_scan] {msg}", file=sys.stderr, flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", type=int, default=2, help="sets of five devices")
    ap.add_argument("--rounds", type=int, default=3, help="scans per layout")
    ap.add_argument("--listen", type=float, default=1.0, help="seconds each possible scanner is listened to")
    args = ap.parse_args()
    stop = threading.Event()
    sims: list = []
    expected: dict[str, str] = {}  # by-id name -> kind (or "" for the silent bridge)
    with tempfile.TemporaryDirectory(prefix="storegw-bench-scan-") as tmp:
        tree = UsbTree(Path(tmp))
        scanners = []
        for i in range(args.sets):
            printer = PtyPrinter().start()
            reader, scanner, bus, silent = IdCardSimulator(), ScannerSimulator(), ModbusSimulator(), PtyDevice()
            for sim in (reader, scanner, bus, silent):
                sim.plug()
            sims += [printer, reader, scanner, bus, silent]
            scanners.append(scanner)
            for n, (usb, kind) in enumerate((
                    (UsbSerial(0x1A86, 0x7523, "QinHeng", "USB Serial", f"PRN{i:04d}", printer.port), "escpos"),
                    (UsbSerial(0x0400, 0xC35A, "Synjones", "ID Reader", f"SAM{i:04d}", reader.port, cdc=True),
                     "idcard"),
                    (UsbSerial(0x1EAB, 0x1A06, "Newland", "NLS-HR22", f"C{i:07d}", scanner.port, cdc=True),
                     "scanner"),
                    (UsbSerial(0x0403, 0x6001, "FTDI", "USB-RS485 Cable", f"A5X{i:05d}", bus.port), "modbus"),
                    (UsbSerial(0x10C4, 0xEA60, "Silicon Labs", "CP2102", f"{i:04d}", silent.port), ""))):
                tree.plug(f"1-{i + 1}.{n + 1}", usb)
                expected[usb.by_id_name] = kind

        def keep_scanning() -> None:
            while not stop.wait(0.2):
                for s in scanners:
                    s.sample()

        t = threading.Thread(target=keep_scanning, daemon=True)
        t.start()
        times, correct, ids_before, ids_after = [], [], {}, {}
        try:
            for layout in ("first", "replugged"):
                if layout == "replugged":  # every device into another socket (and tty number)
                    plugged = list(tree.plugged.items())
                    for socket, _ in plugged:
                        tree.unplug(socket)
                    for k, (_socket, (dev, _tty)) in enumerate(reversed(plugged)):
                        tree.plug(f"2-{k + 1}", dev)
                for r in range(args.rounds):
                    t0 = time.perf_counter()
                    found = scan(sys_root=tree.sys, dev_root=tree.dev, listen=args.listen, timeout=0.5)
                    times.append(time.perf_counter() - t0)
                    ok = sum(1 for f in found if f.kind == expected[Path(f.port.by_id).name]
                             and (bool(f.probe.kind) == bool(expected[Path(f.port.by_id).name])))
                    correct.append(ok / len(expected))
                    ids = {Path(f.port.by_id).name: (f.proposal or {}).get("id") for f in found}
                    (ids_before if layout == "first" else ids_after).update(ids)
                    log(f"{layout} round {r + 1}: {len(found)} ports in {times[-1]:.2f}s, {ok}/{len(expected)} right")
        finally:
            stop.set()
            t.join(2)
            for sim in sims:
                (sim.stop if isinstance(sim, PtyPrinter) else sim.unplug)()
    print(json.dumps({"bench": "devices_scan", "ports": len(expected), "rounds": len(times),
                      "listen_s": args.listen, "seconds_median": round(statistics.median(times), 3),
                      "seconds_max": round(max(times), 3), "correct": min(correct),
                      "proposals": sum(v is not None for v in ids_before.values()),
                      "ids_kept": ids_before == ids_after}))


if __name__ == "__main__":
    main()
