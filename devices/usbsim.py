"""Simulated USB plugging for ``storegw devices scan``: a fake ``/sys`` + ``/dev`` whose serial devices are real ptys.

What the kernel and udev make when a USB-serial adapter is plugged, reduced to what pyserial's
``list_ports_linux`` and udev's ``60-serial.rules`` use:

    sys/devices/platform/usb1/<port>/{idVendor,idProduct,manufacturer,product,serial}
    sys/devices/platform/usb1/<port>/<port>:1.0/{bInterfaceClass,interface}
    sys/devices/platform/usb1/<port>/<port>:1.0/ttyUSB0/subsystem -> sys/bus/usb-serial   (CDC: the
        interface is the device and its subsystem is sys/bus/usb, the node ttyACM0)
    sys/class/tty/ttyUSB0/device -> that device directory
    dev/ttyUSB0 -> /dev/pts/N              (the simulator's pty stands in for the kernel's node)
    dev/serial/by-id/usb-<Vendor>_<Product>_<Serial>-if00[-port0] -> ../../ttyUSB0
    dev/serial/by-path/platform-usb1-usb-0:<port>:1.0[-port0] -> ../../ttyUSB0
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path


def _udev_name(text: str) -> str:
    # udev's replace_chars/whitespace handling in ID_VENDOR / ID_MODEL / ID_SERIAL_SHORT
    return re.sub(r"[^0-9A-Za-z#+\-.:=@_]", "_", text.strip().replace(" ", "_"))


@dataclass
class UsbSerial:
    """One USB serial device: its descriptors, and the pty that carries its bytes."""

    vid: int
    pid: int
    manufacturer: str
    product: str
    serial: str
    pty: str = ""
    cdc: bool = False  # ttyACM (usb subsystem) rather than ttyUSB (usb-serial)
    iface_class: int = 0xFF

    @property
    def by_id_name(self) -> str:
        suffix = "-if00" if self.cdc else "-if00-port0"
        parts = [_udev_name(self.manufacturer), _udev_name(self.product)] + (
            [_udev_name(self.serial)] if self.serial else [])
        return "usb-" + "_".join(parts) + suffix


class UsbTree:
    """A sysfs-like root (``sys``) and a dev root (``dev``) under ``root``; plug and unplug by socket."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.sys = self.root / "sys"
        self.dev = self.root / "dev"
        for d in (self.sys / "bus" / "usb", self.sys / "bus" / "usb-serial", self.sys / "class" / "tty",
                  self.dev / "serial" / "by-id", self.dev / "serial" / "by-path"):
            d.mkdir(parents=True, exist_ok=True)
        self.plugged: dict[str, tuple[UsbSerial, str]] = {}  # socket -> (device, tty name)

    def _free_tty(self, cdc: bool) -> str:
        prefix = "ttyACM" if cdc else "ttyUSB"
        n = 0
        while (self.sys / "class" / "tty" / f"{prefix}{n}").exists():
            n += 1
        return f"{prefix}{n}"

    def plug(self, socket: str, dev: UsbSerial, tty: str | None = None) -> str:
        """Plug ``dev`` into USB socket ``socket`` (e.g. ``1-1.2``); return its tty name."""
        tty = tty or self._free_tty(dev.cdc)
        usb = self.sys / "devices" / "platform" / "usb1" / socket
        iface = usb / f"{socket}:1.0"
        iface.mkdir(parents=True)
        for name, value in (("idVendor", f"{dev.vid:04x}"), ("idProduct", f"{dev.pid:04x}"),
                            ("manufacturer", dev.manufacturer), ("product", dev.product), ("serial", dev.serial)):
            if value:
                (usb / name).write_text(value + "\n")
        (iface / "bInterfaceClass").write_text(f"{dev.iface_class:02x}\n")
        if dev.cdc:
            node_dir = iface
            os.symlink(self.sys / "bus" / "usb", iface / "subsystem")
        else:
            node_dir = iface / tty
            node_dir.mkdir()
            os.symlink(self.sys / "bus" / "usb-serial", node_dir / "subsystem")
        (self.sys / "class" / "tty" / tty).mkdir()
        os.symlink(node_dir, self.sys / "class" / "tty" / tty / "device")
        os.symlink(dev.pty, self.dev / tty)
        os.symlink(f"../../{tty}", self.dev / "serial" / "by-id" / dev.by_id_name)
        path_name = f"platform-usb1-usb-0:{socket}:1.0" + ("" if dev.cdc else "-port0")
        os.symlink(f"../../{tty}", self.dev / "serial" / "by-path" / path_name)
        self.plugged[socket] = (dev, tty)
        return tty

    def unplug(self, socket: str) -> None:
        """Pull the device out of ``socket``: its sysfs entries, node and links disappear."""
        dev, tty = self.plugged.pop(socket)
        shutil.rmtree(self.sys / "devices" / "platform" / "usb1" / socket)
        shutil.rmtree(self.sys / "class" / "tty" / tty)
        (self.dev / tty).unlink()
        (self.dev / "serial" / "by-id" / dev.by_id_name).unlink()
        for link in (self.dev / "serial" / "by-path").iterdir():
            if os.readlink(link) == f"../../{tty}":
                link.unlink()
