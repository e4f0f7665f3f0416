"""Chinese 2nd-generation ID card readers, SAM (SAM_V/SAM_A) serial protocol: bytes → frames.

Frame: ``AA AA AA 96 69 | Len (2, big-endian) | body | CHK``, Len counting body + CHK, CHK the XOR of
every byte from Len1 to the last body byte. Host → reader bodies are ``CMD Para Data``; reader → host
bodies are ``SW1 SW2 SW3 Data``. A successful read (30 01) carries a 256-byte UCS-2LE text block and
a 1024-byte WLT photo; the photo needs the vendor's licensed decoder and is never decoded here.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Literal

from gateway.core import gb11643
from gateway.core.errors import ProtocolError
from gateway.core.masking import mask_address, mask_id_number, mask_name

PREAMBLE = b"\xaa\xaa\xaa\x96\x69"
MAX_LEN = 0x0A00  # the longest reply (text + photo + 1024-byte fingerprint) has Len 0x090A
Direction = Literal["command", "response"]

COMMANDS: dict[tuple[int, int], tuple[str, str]] = {
    (0x10, 0xFF): ("reset", "reset SAM (复位)"),
    (0x11, 0xFF): ("sam_status", "SAM status (SAM状态检测)"),
    (0x12, 0xFF): ("read_sam_id", "read SAM serial/management info (读SAM模块编号)"),
    (0x20, 0x01): ("find", "find card (寻找证/卡)"),
    (0x20, 0x02): ("select", "select card (选取证/卡)"),
    (0x30, 0x01): ("read", "read text + photo (读机读文字和相片信息)"),
    (0x30, 0x03): ("read_appended_address", "read newest appended address (读最新追加信息)"),
    (0x30, 0x10): ("read_with_fingerprint", "read text + photo + fingerprint"),
    (0x61, 0xFF): ("set_max_rf_bytes", "set maximum RF frame size (设置射频适配器最大通信字节数)"),
}
_COMMAND_BYTES = frozenset({c for c, _ in COMMANDS} | {0x60})
_BAUD = {0x00: 115200, 0x01: 57600, 0x02: 38400, 0x03: 19200, 0x04: 9600}
STATUS: dict[int, str] = {
    0x90: "操作成功 success",
    0x9F: "寻找证/卡成功 card found",
    0x91: "证/卡中此项无内容 no such item on the card",
    0x10: "接收业务终端数据的校验和错 checksum error in host frame",
    0x11: "接收业务终端数据的长度错 length error in host frame",
    0x21: "接收业务终端的命令错误 bad command or parameter",
    0x23: "越权操作 unauthorised operation",
    0x24: "无法识别的错误 unknown error",
    0x31: "证/卡认证SAM失败 card failed to authenticate the SAM",
    0x32: "SAM认证证/卡失败 SAM failed to authenticate the card",
    0x33: "信息验证错误 information verification error",
    0x37: "指纹信息验证错误 fingerprint verification error",
    0x3F: "信息长度错误 information length error",
    0x40: "无法识别的证/卡类型 unrecognised card type",
    0x41: "读证/卡操作失败 read failed",
    0x47: "取随机数失败 get-random failed",
    0x60: "SAM自检失败 SAM self-test failed",
    0x66: "SAM未经授权 SAM not authorised",
    0x80: "寻找证/卡失败 no card found",
    0x81: "选取证/卡失败 select failed",
}
GENDERS = {"0": "未知 unknown", "1": "男 male", "2": "女 female", "9": "未说明 unspecified"}
# GB/T 3304 nation codes 01..56 in order, then 97 and 98.
_NATION_NAMES = (
    "汉", "蒙古", "回", "藏", "维吾尔", "苗", "彝", "壮", "布依", "朝鲜", "满", "侗", "瑶", "白",
    "土家", "哈尼", "哈萨克", "傣", "黎", "傈僳", "佤", "畲", "高山", "拉祜", "水", "东乡", "纳西",
    "景颇", "柯尔克孜", "土", "达斡尔", "仫佬", "羌", "布朗", "撒拉", "毛南", "仡佬", "锡伯",
    "阿昌", "普米", "塔吉克", "怒", "乌孜别克", "俄罗斯", "鄂温克", "德昂", "保安", "裕固", "京",
    "塔塔尔", "独龙", "鄂伦春", "赫哲", "门巴", "珞巴", "基诺",
)
NATIONS: dict[str, str] = {f"{i:02d}": name for i, name in enumerate(_NATION_NAMES, start=1)}
NATIONS |= {"97": "其他", "98": "外国血统中国籍人士"}
TEXT_LAYOUT = (("name", 30), ("gender", 2), ("nation", 4), ("birth", 16), ("address", 70),
               ("id_number", 36), ("authority", 30), ("valid_from", 16), ("valid_to", 16), ("reserved", 36))
TEXT_LEN, PHOTO_LEN = 256, 1024


class IdCardError(ProtocolError):
    """Bytes that are not a valid SAM frame, or a card text block that does not check out."""


def checksum(body_with_len: bytes) -> int:
    """Return the XOR checksum of the bytes from Len1 to the last data byte."""
    value = 0
    for b in body_with_len:
        value ^= b
    return value


def build_command(cmd: int, para: int, data: bytes = b"") -> bytes:
    """Return a complete host → reader frame."""
    head = (len(data) + 3).to_bytes(2, "big") + bytes((cmd, para)) + data
    return PREAMBLE + head + bytes((checksum(head),))


@dataclass(frozen=True, slots=True)
class IdCardInfo:
    """The text fields of a resident ID card (dates as YYYYMMDD; ``valid_to`` may be 长期)."""

    name: str = field(repr=False)
    gender: str
    nation: str
    birth: str = field(repr=False)
    address: str = field(repr=False)
    id_number: str = field(repr=False)
    authority: str
    valid_from: str
    valid_to: str
    reserved: str = field(default="", repr=False)
    card_type: str = "resident_id"

    def as_dict(self, *, reveal: bool = False) -> dict[str, Any]:
        """Return JSON-ready fields; name, address and ID number masked unless ``reveal``."""
        out: dict[str, Any] = {"card_type": self.card_type, "gender": self.gender, "nation": self.nation,
                               "birth": self.birth, "authority": self.authority,
                               "valid_from": self.valid_from, "valid_to": self.valid_to,
                               "long_term": self.valid_to == "长期"}
        if reveal:
            out.update(name=self.name, address=self.address, id_number=self.id_number, reserved=self.reserved)
        else:
            out.update(name_masked=mask_name(self.name), address_masked=mask_address(self.address),
                       id_number_masked=mask_id_number(self.id_number))
        return out


def _valid_yyyymmdd(text: str) -> bool:
    if len(text) != 8 or not text.isascii() or not text.isdigit():
        return False
    try:
        dt.date(int(text[:4]), int(text[4:6]), int(text[6:]))
    except ValueError:
        return False
    return True


def parse_text_block(block: bytes) -> IdCardInfo:
    """Decode and check the 256-byte UCS-2LE text block of a read response."""
    if len(block) != TEXT_LEN:
        raise IdCardError(f"text block must be {TEXT_LEN} bytes, got {len(block)}")
    values: dict[str, str] = {}
    pos = 0
    for name, size in TEXT_LAYOUT:
        try:
            values[name] = block[pos: pos + size].decode("utf-16-le").strip(" \x00")
        except UnicodeDecodeError as err:
            raise IdCardError(f"text field {name} is not valid UCS-2") from err
        pos += size
    # Byte 248 marks other card types; a foreigner's card has a different field layout entirely.
    marker = block[248:250].decode("utf-16-le", "replace")
    if marker == "I":
        raise IdCardError("foreigner's permanent residence card (type I) is not supported")
    card_type = "hk_mo_tw_residence_permit" if marker == "J" else "resident_id"
    info = IdCardInfo(**values, card_type=card_type)
    try:
        number = gb11643.parse(info.id_number)
    except gb11643.IdNumberError as err:
        raise IdCardError(f"ID number on the card is invalid: {err}") from err
    if number.number[6:14] != info.birth:
        raise IdCardError("birth date on the card does not match the ID number")
    if info.gender in ("1", "2") and (info.gender == "1") != (number.sex == "male"):
        raise IdCardError("gender on the card does not match the ID number")
    if info.gender not in GENDERS:
        raise IdCardError(f"unknown gender code {info.gender!r}")
    valid_to_ok = info.valid_to == "长期" or _valid_yyyymmdd(info.valid_to)
    if not _valid_yyyymmdd(info.valid_from) or not valid_to_ok:
        raise IdCardError("validity dates must be YYYYMMDD (or 长期)")
    return info


@dataclass(frozen=True, slots=True)
class SamCommand:
    """A host → reader frame."""

    cmd: int
    para: int
    data: bytes = b""

    def to_bytes(self) -> bytes:
        """Return the frame on the wire."""
        return build_command(self.cmd, self.para, self.data)

    def as_dict(self, *, reveal: bool = False) -> dict[str, Any]:
        """Return JSON-ready fields."""
        name, meaning = COMMANDS.get((self.cmd, self.para), ("unknown", "unknown command"))
        if self.cmd == 0x60:
            name, meaning = "set_baud", f"set baud rate to {_BAUD.get(self.para, 'unknown')}"
        out: dict[str, Any] = {"direction": "host->reader", "cmd": f"{self.cmd:02x}",
                               "para": f"{self.para:02x}", "command": name, "meaning": meaning,
                               "data": self.data.hex(),
                               "len": len(self.data) + 3, "checksum": f"{self.to_bytes()[-1]:02x}",
                               "checksum_ok": True}
        if (self.cmd, self.para) == (0x30, 0x01):
            out["expected_response_len_bytes"] = 1295
        elif (self.cmd, self.para) == (0x30, 0x10):
            out["expected_response_len_bytes"] = [2321, 1809, 1297]
        return out


@dataclass(frozen=True, slots=True)
class SamResponse:
    """A reader → host frame; ``card`` is set for a successful text + photo read."""

    sw1: int
    sw2: int
    sw3: int
    data: bytes = field(repr=False)
    card: IdCardInfo | None = None
    photo_len: int = 0
    fingerprint_len: int | None = None

    def to_bytes(self) -> bytes:
        """Return the frame on the wire."""
        head = (len(self.data) + 4).to_bytes(2, "big") + bytes((self.sw1, self.sw2, self.sw3)) + self.data
        return PREAMBLE + head + bytes((checksum(head),))

    @property
    def status(self) -> str:
        """Return the SW3 status text (Chinese and English)."""
        return STATUS.get(self.sw3, f"unknown status {self.sw3:02x}")

    @property
    def ok(self) -> bool:
        """Return whether SW3 reports success (90) or card found (9F)."""
        return self.sw3 in (0x90, 0x9F)

    def as_dict(self, *, reveal: bool = False) -> dict[str, Any]:
        """Return JSON-ready fields; card text masked unless ``reveal``; the photo is only counted."""
        out: dict[str, Any] = {"direction": "reader->host", "sw1": f"{self.sw1:02x}",
                               "sw2": f"{self.sw2:02x}", "sw3": f"{self.sw3:02x}", "status": self.status,
                               "ok": self.ok,
                               "len": len(self.data) + 4, "checksum": f"{self.to_bytes()[-1]:02x}",
                               "checksum_ok": True}
        if self.card is None:
            out["data"] = self.data.hex()
            return out
        # Three length fields (text, photo, fingerprint) instead of two move the text by 2 bytes.
        text_offset = 16 if self.fingerprint_len is not None else 14
        out.update(text_len=TEXT_LEN, photo_len=self.photo_len, text_offset=text_offset,
                   photo_format="WLT (not decoded)", fields=self.card.as_dict(reveal=reveal),
                   gender_text=GENDERS.get(self.card.gender), nation_text=NATIONS.get(self.card.nation))
        out["photo_offset"] = text_offset + TEXT_LEN
        if self.fingerprint_len is not None:
            out["fingerprint_len"] = self.fingerprint_len
        return out


def _response(body: bytes) -> SamResponse:
    sw1, sw2, sw3, data = body[0], body[1], body[2], body[3:]
    if sw3 == 0x90 and len(data) >= 4:
        text_len, photo_len = int.from_bytes(data[0:2], "big"), int.from_bytes(data[2:4], "big")
        if text_len == TEXT_LEN and len(data) == 4 + text_len + photo_len:
            return SamResponse(sw1, sw2, sw3, data, parse_text_block(data[4:4 + TEXT_LEN]), photo_len)
        if len(data) >= 6 and text_len == TEXT_LEN:
            fp_len = int.from_bytes(data[4:6], "big")
            if len(data) == 6 + text_len + photo_len + fp_len:
                card = parse_text_block(data[6:6 + TEXT_LEN])
                return SamResponse(sw1, sw2, sw3, data, card, photo_len, fp_len)
    return SamResponse(sw1, sw2, sw3, data)


def parse_frame(frame: bytes, direction: Direction | None = None) -> SamCommand | SamResponse:
    """Parse exactly one complete frame; infer the direction from the first body byte if not given."""
    if not frame.startswith(PREAMBLE):
        raise IdCardError("frame must start with AA AA AA 96 69")
    if len(frame) < 8:
        raise IdCardError("frame shorter than preamble + length + checksum")
    length = int.from_bytes(frame[5:7], "big")
    if len(frame) - 7 != length:
        raise IdCardError(f"length mismatch: Len says {length} bytes follow, got {len(frame) - 7}")
    if length < 3 or length > MAX_LEN:
        raise IdCardError(f"Len {length} is outside 3..{MAX_LEN}")
    expected = checksum(frame[5:-1])
    if frame[-1] != expected:
        raise IdCardError(f"checksum mismatch: frame has {frame[-1]:02x}, expected {expected:02x}")
    body = frame[7:-1]
    if direction is None:
        # SW1 forwards the card's APDU status and is 00 in practice; no command byte is 00.
        direction = "command" if body[0] in _COMMAND_BYTES else "response"
    if direction == "command":
        return SamCommand(body[0], body[1], bytes(body[2:]))
    if len(body) < 3:
        raise IdCardError("response shorter than SW1 SW2 SW3")
    return _response(bytes(body))


class SamProtocol:
    """Find SAM frames in a byte stream (resynchronising on the preamble) and parse them."""

    def __init__(self, direction: Direction = "response") -> None:
        self.direction: Direction = direction
        self._buf = bytearray()

    def data_received(self, data: bytes) -> list[SamCommand | SamResponse | IdCardError]:
        """Feed bytes; return the frames (and errors for rejected frames) completed by them."""
        self._buf += data
        out: list[SamCommand | SamResponse | IdCardError] = []
        while True:
            start = self._buf.find(PREAMBLE)
            if start < 0:
                # Keep a tail that may be the start of a preamble split across reads.
                keep = next((k for k in range(4, 0, -1) if self._buf.endswith(PREAMBLE[:k])), 0)
                self._drop(len(self._buf) - keep, out)
                return out
            self._drop(start, out)
            if len(self._buf) < 7:
                return out
            length = int.from_bytes(self._buf[5:7], "big")
            if not 3 <= length <= MAX_LEN:
                out.append(IdCardError(f"Len {length} is outside 3..{MAX_LEN}; resynchronising"))
                del self._buf[:1]
                continue
            if len(self._buf) < 7 + length:
                return out
            frame = bytes(self._buf[: 7 + length])
            try:
                out.append(parse_frame(frame, self.direction))
            except IdCardError as err:
                out.append(err)
                if frame[-1] != checksum(frame[5:-1]):
                    # A damaged Len may have swallowed the next frame: resync just past this preamble.
                    del self._buf[:1]
                    continue
            del self._buf[: 7 + length]

    def flush(self) -> list[SamCommand | SamResponse | IdCardError]:
        """Drop a partial frame after an idle gap (a truncated reply), reporting it."""
        out: list[SamCommand | SamResponse | IdCardError] = []
        if self._buf:
            out.append(IdCardError(f"incomplete frame ({len(self._buf)} bytes) discarded"))
            self._buf.clear()
        return out

    def _drop(self, n: int, out: list[SamCommand | SamResponse | IdCardError]) -> None:
        if n > 0:
            out.append(IdCardError(f"{n} bytes outside a frame discarded"))
            del self._buf[:n]
