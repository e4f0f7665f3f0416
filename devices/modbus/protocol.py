"""Modbus RTU frames (RS-485): bytes → requests and responses, CRC-16/MODBUS checked.

ADU: ``address | function | data | CRC (low byte first)``, at most 256 bytes. RTU frames are
delimited by 3.5 character times of silence, which only the driver can see: it calls
:meth:`RtuProtocol.flush` on that gap. Until then frames are cut early when the function code fixes
their length and the CRC confirms it. The CRC is a small table-free loop rather than pymodbus's
``FramerRTU.compute_CRC``, an internal framer method whose home has moved between pymodbus releases.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from gateway.core.errors import ProtocolError

Direction = Literal["request", "response"]
MAX_ADU = 256
EXCEPTIONS: dict[int, str] = {
    0x01: "ILLEGAL FUNCTION", 0x02: "ILLEGAL DATA ADDRESS", 0x03: "ILLEGAL DATA VALUE",
    0x04: "SERVER DEVICE FAILURE", 0x05: "ACKNOWLEDGE", 0x06: "SERVER DEVICE BUSY",
    0x08: "MEMORY PARITY ERROR", 0x0A: "GATEWAY PATH UNAVAILABLE",
    0x0B: "GATEWAY TARGET DEVICE FAILED TO RESPOND",
}
FUNCTIONS: dict[int, str] = {
    0x01: "read coils", 0x02: "read discrete inputs", 0x03: "read holding registers",
    0x04: "read input registers", 0x05: "write single coil", 0x06: "write single register",
    0x0F: "write multiple coils", 0x10: "write multiple registers",
}


class ModbusError(ProtocolError):
    """Bytes that are not a valid Modbus RTU frame."""


def crc16(data: bytes) -> int:
    """Return the CRC-16/MODBUS of ``data`` (init 0xFFFF, reflected poly 0xA001, no final XOR)."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def build_frame(slave: int, pdu: bytes) -> bytes:
    """Return the RTU frame for ``pdu`` sent to/from ``slave``, CRC appended low byte first."""
    body = bytes((slave,)) + pdu
    return body + crc16(body).to_bytes(2, "little")


def read_request(slave: int, function: int, start: int, quantity: int) -> bytes:
    """Return a read request frame (functions 1-4)."""
    return build_frame(slave, bytes((function,)) + start.to_bytes(2, "big") + quantity.to_bytes(2, "big"))


def _lengths(buf: bytes | bytearray, direction: Direction) -> tuple[list[int], bool]:
    """Return the ADU lengths the start of ``buf`` allows, and whether more bytes could add one."""
    if len(buf) < 2:
        return [], True
    fc = buf[1]
    if direction == "response":
        if fc & 0x80:
            return [5], False
        if fc in (1, 2, 3, 4):
            return ([5 + buf[2]], False) if len(buf) >= 3 else ([], True)
        return ([8], False) if fc in (5, 6, 15, 16) else ([], False)
    if fc in (1, 2, 3, 4, 5, 6):
        return [8], False
    if fc in (15, 16):
        return ([9 + buf[6]], False) if len(buf) >= 7 else ([], True)
    return [], False


@dataclass(frozen=True, slots=True)
class RtuFrame:
    """One CRC-checked RTU frame and what its PDU says."""

    slave: int
    function: int
    direction: Direction
    data: bytes
    crc_wire: bytes

    @property
    def exception_code(self) -> int | None:
        """Return the exception code of an exception response, else None."""
        return self.data[0] if self.function & 0x80 else None

    def fields(self) -> dict[str, Any]:
        """Return the decoded PDU fields (addresses, quantities, register values)."""
        fc, d = self.function, self.data
        if fc & 0x80:
            return {"exception_code": d[0], "exception": EXCEPTIONS.get(d[0], f"UNKNOWN ({d[0]:#04x})")}
        word = [int.from_bytes(d[i:i + 2], "big") for i in range(0, len(d) - 1, 2)]
        if self.direction == "request":
            if fc in (1, 2, 3, 4, 15, 16) and len(d) >= 4:
                out: dict[str, Any] = {"start_address": word[0], "quantity": word[1]}
                if fc in (15, 16):
                    out["byte_count"] = d[4]
                    if fc == 16:
                        out["registers"] = [int.from_bytes(d[i:i + 2], "big") for i in range(5, len(d), 2)]
                    else:
                        out["coils"] = _bits(d[5:], word[1])
                return out
        elif fc in (1, 2, 3, 4):
            if fc in (3, 4):
                return {"byte_count": d[0],
                        "registers": [int.from_bytes(d[i:i + 2], "big") for i in range(1, len(d), 2)]}
            return {"byte_count": d[0], "bits": _bits(d[1:], 8 * d[0])}
        elif fc in (15, 16):
            return {"start_address": word[0], "quantity": word[1]}
        if fc in (5, 6):
            return {"address": word[0], "value": word[1]}
        return {"data": d.hex()}

    def as_dict(self, *, reveal: bool = False) -> dict[str, Any]:
        """Return JSON-ready fields."""
        name = FUNCTIONS.get(self.function & 0x7F, "unknown")
        return {"slave": self.slave, "function": self.function, "function_name": name,
                "direction": self.direction, "exception": None, "crc_wire": self.crc_wire.hex(),
                "crc_ok": True, **self.fields()}


def _bits(data: bytes, count: int) -> list[bool]:
    return [bool(data[i // 8] >> (i % 8) & 1) for i in range(min(count, 8 * len(data)))]


def _check(frame: bytes, fc: int, direction: Direction) -> None:
    """Raise unless the frame's length and byte counts fit its function code and direction."""
    lengths, _ = _lengths(frame, direction)
    if len(frame) not in lengths:
        raise ModbusError(f"{len(frame)}-byte frame does not fit function {fc} as a {direction}")
    if direction == "response" and fc in (3, 4) and frame[2] % 2:
        raise ModbusError(f"register response byte count {frame[2]} is odd")
    if direction == "request" and fc in (15, 16):
        quantity = int.from_bytes(frame[4:6], "big")
        expected = 2 * quantity if fc == 16 else (quantity + 7) // 8
        if frame[6] != expected:
            raise ModbusError(f"byte count {frame[6]} does not match quantity {quantity}")


def parse_rtu(frame: bytes, direction: Direction | None = None) -> RtuFrame:
    """Parse one complete RTU frame; infer request/response from length and function if not given."""
    if not 4 <= len(frame) <= MAX_ADU:
        raise ModbusError(f"an RTU frame is 4..{MAX_ADU} bytes, got {len(frame)}")
    wire, computed = frame[-2:], crc16(frame[:-2])
    if wire != computed.to_bytes(2, "little"):
        raise ModbusError(f"CRC mismatch: frame has {wire.hex()}, computed "
                          f"{computed.to_bytes(2, 'little').hex()}")
    fc = frame[1]
    if fc & 0x80:
        if direction == "request":
            raise ModbusError("an exception function code (>= 0x80) only appears in responses")
        direction = "response"
    if direction is None:
        # Ambiguous lengths (05/06 echo, or 01/02 with byte count 3) resolve to the request.
        for candidate in ("request", "response"):
            try:
                _check(frame, fc, candidate)  # type: ignore[arg-type]
            except ModbusError:
                continue
            direction = candidate  # type: ignore[assignment]
            break
        else:
            if fc not in FUNCTIONS:
                # A function this gateway does not decode: keep the raw PDU, the CRC vouches for it.
                return RtuFrame(frame[0], fc, "request", bytes(frame[2:-2]), bytes(wire))
            raise ModbusError(f"{len(frame)}-byte frame fits function {fc} neither as request nor response")
    else:
        _check(frame, fc, direction)
    return RtuFrame(frame[0], fc, direction, bytes(frame[2:-2]), bytes(wire))  # type: ignore[arg-type]


class RtuProtocol:
    """Cut an RTU byte stream into frames; ``flush()`` on the inter-frame silence resynchronises."""

    def __init__(self, direction: Direction = "response") -> None:
        self.direction: Direction = direction
        self._buf = bytearray()

    def data_received(self, data: bytes) -> list[RtuFrame | ModbusError]:
        """Feed bytes; return the frames whose length and CRC are already certain."""
        self._buf += data
        out: list[RtuFrame | ModbusError] = []
        skipped = 0
        while self._buf:
            length = self._frame_at(0)
            if length is not None:
                if skipped:
                    out.append(ModbusError(f"{skipped} bytes that are not a valid frame discarded"))
                    skipped = 0
                out.append(parse_rtu(bytes(self._buf[:length]), self.direction))
                del self._buf[:length]
                continue
            lengths, more = _lengths(self._buf, self.direction)
            if more or any(n > len(self._buf) for n in lengths):
                break  # may still become a frame: wait for more bytes or the silence
            # Every length this start allows is here and none checks out: not a frame start.
            del self._buf[:1]
            skipped += 1
        if skipped:
            out.append(ModbusError(f"{skipped} bytes that are not a valid frame discarded"))
        if len(self._buf) > MAX_ADU:
            out.extend(self.flush())
        return out

    def flush(self) -> list[RtuFrame | ModbusError]:
        """End the pending bytes at a silence: take every valid frame in them, report the rest."""
        out: list[RtuFrame | ModbusError] = []
        start = skipped = 0
        while start < len(self._buf):
            length = self._frame_at(start)
            if length is None:
                start += 1
                skipped += 1
                continue
            if skipped:
                out.append(ModbusError(f"{skipped} bytes that are not a valid frame discarded"))
                skipped = 0
            out.append(parse_rtu(bytes(self._buf[start:start + length]), self.direction))
            start += length
        if skipped:
            out.append(ModbusError(f"{skipped} bytes that are not a valid frame discarded"))
        self._buf.clear()
        return out

    def _frame_at(self, start: int) -> int | None:
        """Return the length of a complete, CRC-valid, well-formed frame at ``start``, else None."""
        view = self._buf[start:]
        for length in _lengths(view, self.direction)[0]:
            if length <= len(view) and crc16(view[:length]) == 0:
                try:
                    parse_rtu(bytes(view[:length]), self.direction)
                except ModbusError:
                    return None
                return length
        return None
