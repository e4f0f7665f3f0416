"""A Modbus RTU slave bus on a pseudo-terminal: answers read requests (03, 04) from a register table.

One simulator can hold several slaves (an RS-485 bus). Unknown slaves stay silent, as on a real bus;
unknown registers get exception 02 (ILLEGAL DATA ADDRESS). ``mute`` makes every slave silent and
``corrupt`` sends answers with a wrong CRC, for the failure paths. The default table holds the
classic slave 0x11 example of the shared vectors (``fc03-req-11`` → ``fc03-resp-11``) and a fridge
at slave 1 (temperature in tenths of a degree, power as float32 input registers).
"""

from __future__ import annotations

import os
import threading

from devices.modbus.protocol import ModbusError, RtuFrame, RtuProtocol, build_frame
from devices.modbus.registers import Register
from devices.ptysim import PtyDevice

TABLES = {3: "holding", 4: "input"}
FRIDGE_TEMP = Register(1, 0x0000, "int16", 0.1, "temp_c")
FRIDGE_DOOR = Register(1, 0x0001, "uint16", 1, "door_open")
FRIDGE_POWER = Register(1, 0x0002, "float32", 1, "power_kw", "input")


class ModbusSimulator(PtyDevice):
    """RTU slaves on a pty; registers are set with :meth:`set_words` or :meth:`set_value`."""

    def __init__(self, link: str | os.PathLike[str] | None = None) -> None:
        super().__init__(link)
        self.protocol = RtuProtocol("request")
        self.tables: dict[tuple[int, str], dict[int, int]] = {}
        self.mute = False
        self.corrupt = False
        self.requests = 0
        self._lock = threading.Lock()
        self._sample = 0
        # vectors fc03-req-11 / fc03-resp-11: slave 0x11, holding 0x006B-0x006D
        self.set_words(0x11, 0x006B, [0xAE41, 0x5652, 0x4340])
        self.set_value(FRIDGE_TEMP, 4.2)
        self.set_value(FRIDGE_DOOR, 0)
        self.set_value(FRIDGE_POWER, 0.25)

    def set_words(self, slave: int, address: int, words: list[int], table: str = "holding") -> None:
        """Store raw 16-bit register values from ``address`` on."""
        with self._lock:
            regs = self.tables.setdefault((slave, table), {})
            for i, word in enumerate(words):
                regs[address + i] = word & 0xFFFF

    def set_value(self, reg: Register, value: float, word_order: str = "big") -> None:
        """Store ``value`` where ``reg`` says, encoded by its type and scale."""
        self.set_words(reg.slave, reg.address, reg.encode(value, word_order), reg.table)

    def sample(self) -> str:
        """Move the fridge's temperature a little (what ``storegw simulate modbus`` sends); describe it."""
        self._sample += 1
        temp = 4.0 + (self._sample % 10) / 10
        self.set_value(FRIDGE_TEMP, temp)
        return f"slave 1 temp_c={temp:.1f}"

    def reset(self) -> None:
        """Drop a half-received command when a new pty is plugged."""
        self.protocol = RtuProtocol("request")

    def received(self, data: bytes) -> None:
        """Answer the complete requests addressed to a slave on this bus."""
        for item in self.protocol.data_received(data):
            if isinstance(item, ModbusError) or self.mute:
                continue
            answer = self.answer(item)
            if answer is None:
                continue
            if self.corrupt:
                answer = answer[:-1] + bytes((answer[-1] ^ 0xFF,))
            self.write(answer)

    def answer(self, req: RtuFrame) -> bytes | None:
        """Return the RTU answer to one request, or None when no slave would answer."""
        self.requests += 1
        with self._lock:
            slaves = {slave for slave, _ in self.tables}
            if req.slave not in slaves:
                return None  # nobody on the bus has this address
            if req.function not in TABLES:
                return build_frame(req.slave, bytes((req.function | 0x80, 0x01)))  # ILLEGAL FUNCTION
            fields = req.fields()
            start, quantity = fields["start_address"], fields["quantity"]
            regs = self.tables.get((req.slave, TABLES[req.function]), {})
            if not 1 <= quantity <= 125 or any(start + i not in regs for i in range(quantity)):
                return build_frame(req.slave, bytes((req.function | 0x80, 0x02)))  # ILLEGAL DATA ADDRESS
            words = [regs[start + i] for i in range(quantity)]
        data = b"".join(w.to_bytes(2, "big") for w in words)
        return build_frame(req.slave, bytes((req.function, len(data))) + data)
