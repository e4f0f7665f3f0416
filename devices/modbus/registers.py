"""The Modbus poll map: which registers to read, how to decode them and which metric each becomes.

Each entry of the ``registers`` option is one string ``SLAVE:ADDRESS:TYPE:SCALE:METRIC[:TABLE]``:

- ``SLAVE`` the slave address, 1-247;
- ``ADDRESS`` the 0-based register address in the PDU, decimal or ``0x`` hex (data-sheet number
  40001 is address 0, 30001 is input address 0);
- ``TYPE`` ``uint16``, ``int16`` (one register) or ``uint32``, ``int32``, ``float32`` (two registers,
  word order from the ``word_order`` option);
- ``SCALE`` a number the raw value is multiplied by (``0.1`` for tenths, ``1`` for none);
- ``METRIC`` the metric name on the telemetry path (``temp_c``), as in MQTT telemetry payloads;
- ``TABLE`` ``holding`` (function 03, the default) or ``input`` (function 04).

Example: ``"1:0x0000:int16:0.1:temp_c"``, ``"1:2:float32:1:power_kw:input"``.
"""

from __future__ import annotations

import math
import re
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from gateway.core.errors import ConfigError

# type → (registers, struct format of the big-endian bytes)
TYPES = {"uint16": (1, ">H"), "int16": (1, ">h"), "uint32": (2, ">I"), "int32": (2, ">i"),
         "float32": (2, ">f")}
TABLES = {"holding": 3, "input": 4}
MAX_READ = 125  # registers in one read request (Modbus spec)
_METRIC_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
FORMAT = "SLAVE:ADDRESS:TYPE:SCALE:METRIC[:TABLE]"


@dataclass(frozen=True, slots=True)
class Register:
    """One value to poll: where it is, how to decode it, what metric it becomes."""

    slave: int
    address: int
    type: str
    scale: float
    metric: str
    table: str = "holding"

    @property
    def count(self) -> int:
        """Return how many 16-bit registers the value spans."""
        return TYPES[self.type][0]

    @property
    def function(self) -> int:
        """Return the read function code (3 holding, 4 input)."""
        return TABLES[self.table]

    def decode(self, words: Sequence[int], word_order: str = "big") -> float:
        """Return the scaled value of this register's words (high word first unless ``little``)."""
        if word_order == "little":
            words = list(reversed(words))
        raw = struct.unpack(TYPES[self.type][1], b"".join(w.to_bytes(2, "big") for w in words))[0]
        return raw * self.scale

    def encode(self, value: float, word_order: str = "big") -> list[int]:
        """Return the register words holding ``value`` (unscaled by ``scale``); used by the simulator."""
        raw = value / self.scale
        if self.type != "float32":
            raw = int(round(raw))
        data = struct.pack(TYPES[self.type][1], raw)
        words = [int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2)]
        return list(reversed(words)) if word_order == "little" else words


def parse_register(text: str, key: str) -> Register:
    """Parse one ``SLAVE:ADDRESS:TYPE:SCALE:METRIC[:TABLE]`` entry or raise a ConfigError that teaches."""
    parts = [p.strip() for p in text.split(":")]
    example = "\"1:0x0000:int16:0.1:temp_c\""
    if len(parts) not in (5, 6):
        raise ConfigError(f"{key}: expected {FORMAT} such as {example}, found \"{text}\"", key=key)
    slave_s, addr_s, type_s, scale_s, metric = parts[:5]
    table = parts[5] if len(parts) == 6 else "holding"
    try:
        slave = int(slave_s, 0)
        address = int(addr_s, 0)
    except ValueError:
        raise ConfigError(f"{key}: SLAVE and ADDRESS must be numbers (decimal or 0x hex) in \"{text}\"",
                          key=key) from None
    if not 1 <= slave <= 247:
        raise ConfigError(f"{key}: slave address must be 1-247, found {slave}", key=key)
    if type_s not in TYPES:
        raise ConfigError(f"{key}: TYPE must be one of {', '.join(TYPES)}, found \"{type_s}\"", key=key)
    if not 0 <= address <= 0xFFFF - TYPES[type_s][0] + 1:
        hint = (" (write 6-digit data-sheet numbers like 400001 as the 0-based offset: 0)"
                if address > 0xFFFF else "")
        raise ConfigError(f"{key}: register address must be 0-65535, found {address}{hint}", key=key)
    try:
        scale = float(scale_s)
    except ValueError:
        raise ConfigError(f"{key}: SCALE must be a number such as 0.1 or 1, found \"{scale_s}\"",
                          key=key) from None
    if not math.isfinite(scale) or scale == 0:
        raise ConfigError(f"{key}: SCALE must be a non-zero number, found \"{scale_s}\"", key=key)
    if not _METRIC_RE.match(metric):
        raise ConfigError(f"{key}: METRIC must be 1-64 of A-Z a-z 0-9 _ . -, found \"{metric}\"", key=key)
    if table not in TABLES:
        raise ConfigError(f"{key}: TABLE must be holding or input, found \"{table}\"", key=key)
    return Register(slave, address, type_s, scale, metric, table)


def parse_map(entries: Iterable[str], key: str = "registers") -> tuple[Register, ...]:
    """Parse the whole ``registers`` option; metric names must be unique."""
    regs = tuple(parse_register(text, f"{key}[{i}]") for i, text in enumerate(entries))
    if not regs:
        raise ConfigError(f"{key}: list at least one register, e.g. [\"1:0x0000:int16:0.1:temp_c\"]", key=key)
    seen: set[str] = set()
    for i, reg in enumerate(regs):
        if reg.metric in seen:
            raise ConfigError(f"{key}[{i}]: metric \"{reg.metric}\" appears twice", key=f"{key}[{i}]")
        seen.add(reg.metric)
    return regs


@dataclass(frozen=True, slots=True)
class ReadBlock:
    """One read request covering adjacent registers of one slave and table."""

    slave: int
    function: int
    address: int
    count: int
    registers: tuple[Register, ...]


def plan(registers: Iterable[Register]) -> list[ReadBlock]:
    """Group registers into as few read requests as possible (contiguous or overlapping, <= 125 words)."""
    blocks: list[ReadBlock] = []
    ordered = sorted(registers, key=lambda r: (r.slave, r.function, r.address))
    for reg in ordered:
        last = blocks[-1] if blocks else None
        if (last is not None and last.slave == reg.slave and last.function == reg.function
                and reg.address <= last.address + last.count
                and reg.address + reg.count - last.address <= MAX_READ):
            count = max(last.count, reg.address + reg.count - last.address)
            blocks[-1] = ReadBlock(last.slave, last.function, last.address, count, (*last.registers, reg))
        else:
            blocks.append(ReadBlock(reg.slave, reg.function, reg.address, reg.count, (reg,)))
    return blocks
