"""Issue 10 item 9: the recognisers, the one masking module, the input tripwire, the log and upstream filters.

Sourced vectors (tests/devices/vectors, each naming its source) are cited by their ``id``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from gateway.core import masking, pii
from gateway.core.errors import CardNumberRefused
from gateway.core.text import free_text
from gateway.spine import upstream

VECTORS = Path(__file__).resolve().parents[1] / "devices" / "vectors"
SCHEMAS = Path(__file__).resolve().parents[2] / "docs" / "schemas"


def _vectors(name: str) -> list[dict]:
    return json.loads((VECTORS / name).read_text())


def _ids(vecs: list[dict]) -> list[str]:
    return [v["id"] for v in vecs]


GB = [v for v in _vectors("gb11643.json") if v.get("kind") is None]
MRZ = [v for v in _vectors("mrz.json") if v.get("kind") == "mrz"]
LUHN = [v for v in _vectors("magstripe.json") if v.get("kind") == "luhn"]


# -- recognisers ----------------------------------------------------------------------------------

@pytest.mark.parametrize("vec", GB, ids=_ids(GB))
def test_gb11643_vectors(vec):
    """Valid numbers (gb-std-*, stdnum-*) are hits; each invalid one (oss-invalid-*, stdnum-invalid-*,
    constructed-x-in-body: date, region, checksum, format) is not."""
    text = f"guest id {vec['input']}, thanks"
    assert pii.scan(text) == ({"id_number": 1} if vec["valid"] else {})
    if vec["valid"]:
        redacted, counts = pii.redact(text, tally=False)
        assert vec["input"] not in redacted and counts == {"id_number": 1}
        assert masking.mask_id_number(vec["input"]) in redacted


def test_gb11643_checksum_is_the_one_in_core():
    # gb-std-beijing-chaoyang: ISO 7064 MOD 11-2 over the first 17 digits gives X
    from devices.idcard import protocol
    from gateway.core import gb11643

    assert gb11643.check_char("11010519491231002") == "X"
    assert protocol.gb11643 is gb11643  # the reader uses the same module: no second copy
    assert pii.scan("110105 19491231 002X") == {"id_number": 1}  # written 6-8-4


@pytest.mark.parametrize("vec", MRZ, ids=_ids(MRZ))
def test_mrz_vectors(vec):
    """Every line of the ICAO specimens (td3-icao-specimen, td1-*, mrv*, td3-*) is a hit, also when the
    lines arrive joined by a space (as a free-text field stores them)."""
    lines = vec["input"].split("\n")
    found = pii.scan(vec["input"]).get("mrz", 0)
    if vec["valid"]:
        assert found == len(lines)
        joined, _ = pii.redact(" ".join(lines), tally=False)
        for line in lines:
            assert line not in joined


@pytest.mark.parametrize("vec", LUHN, ids=_ids(LUHN))
def test_luhn_vectors(vec):
    """luhn-4242..., -5555..., -378282246310005 (15-digit Amex), -6011...: hits, also with separators;
    luhn-4111111111111112 and luhn-5168755544412233 fail Luhn: not cards."""
    pan = vec["input"]
    assert pii.luhn_ok(pan) is vec["expected"]["luhn_ok"]
    spaced = " ".join(pan[i:i + 4] for i in range(0, len(pan), 4))
    for text in (pan, spaced, "-".join(spaced.split())):
        assert pii.scan(f"ref {text}.") == ({"card": 1} if vec["valid"] else {})


@pytest.mark.parametrize("text", ["13912345678", "139 1234 5678", "139-1234-5678", "+86 139 1234 5678",
                                  "+8613912345678", "0086-139-1234-5678", "86 13912345678", "call 15800001111!"])
def test_mobile_forms(text):
    assert pii.scan(text) == {"mobile": 1}
    assert "****" in pii.redact(text, tally=False)[0]


@pytest.mark.parametrize("text", [
    "1795000000000",  # epoch milliseconds (13 digits starting 1)
    "2026-11-30T10:00:00.123Z", "sh-001:fridge-1:temp_c:60:1795000000000", "12345678901",  # 11 digits, not 1[3-9]
    "139123456789", "1391234567", "order 8800123456", "d4c1a2b3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9",
    "¥12,345,678.90", "storegw 0.9.1", "4111111111111112",  # luhn-4111111111111112 is not a card
    "L898902C3", "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123",  # 30 MRZ characters without fillers or check digits
])
def test_ordinary_values_are_not_hits(text):
    assert pii.scan(text) == {}


def test_redact_counts_by_kind_and_is_idempotent():
    before = pii.redacted_counts()
    text = ("id 11010519491231002X tel 139 1234 5678 card 4242 4242 4242 4242 "
            "P<UTOERIKSSON<<ANNA<MARIA<<<<<<<<<<<<<<<<<<<")
    out, counts = pii.redact(text)
    assert counts == {"id_number": 1, "mobile": 1, "card": 1, "mrz": 1}
    assert out == "id 110105********002X tel 139****5678 card ****4242 <MRZ>"
    assert pii.redact(out, tally=False) == (out, {})
    after = pii.redacted_counts()
    assert all(after[k] == before[k] + 1 for k in pii.KINDS)


# -- the one masking module -----------------------------------------------------------------------

def test_masks():
    assert masking.mask_phone("13812345678") == "138****5678"
    assert masking.mask_phone("+86 138 1234 5678") == "138****5678"
    assert masking.mask_id_number("11010519491231002X") == "110105********002X"
    assert masking.mask_card("4111 1111 1111 1111") == "****1111"
    assert masking.mask_pan("4111111111111111") == "411111******1111"  # device output keeps the BIN (PCI 3.4.1)
    assert masking.mask_passport("L898902C3") == "******2C3"
    assert masking.mask_name("张三") == "张*"
    assert masking.mask_tag("0013961168") == "********68"
    assert masking.mask_mrz("P<UTOERIKSSON<<ANNA") == "<MRZ>"


def test_devices_use_the_core_masking_module():
    import importlib.util

    assert importlib.util.find_spec("devices.masking") is None
    from devices.magstripe import protocol

    assert protocol.mask_pan is masking.mask_pan


# -- the input tripwire ---------------------------------------------------------------------------

def test_free_text_refuses_a_card_number_with_a_bilingual_message():
    for text in ("4242424242424242", "my card 5555 5555 5555 4444 thx", "378282246310005"):
        with pytest.raises(CardNumberRefused) as err:
            free_text(text, 140)
        message = str(err.value)
        assert "card number" in message and "银行卡号" in message
        assert "4242" not in message and err.value.status == 400 and err.value.code == "card_number"


def test_free_text_masks_id_mobile_and_mrz_unless_allowed():
    assert free_text("王 13912345678", 32) == "王 139****5678"
    assert free_text("id 11010519491231002X", 140) == "id 110105********002X"
    assert free_text("P<UTOERIKSSON<<ANNA<MARIA<<<<<<<<<<<<<<<<<<<", 140) == "<MRZ>"
    assert free_text("王 13912345678", 32, allow={"mobile"}) == "王 13912345678"
    assert free_text("no spicy, 2 bowls", 140) == "no spicy, 2 bowls"


def test_free_text_sees_a_number_cut_by_the_limit():
    # Cut at 24 characters, only "...4242 4242" would remain: neither card nor harmless half is stored.
    with pytest.raises(CardNumberRefused):
        free_text("note: 4242 4242 4242 4242", 16)
    assert "13912345" not in free_text("call 13912345678", 12)


def test_every_free_text_field_uses_free_text():
    """No diner- or staff-typed field is stored through the bare cleaner (the idempotency key and the
    browser's user agent are not typed by anyone)."""
    root = Path(__file__).resolve().parents[2]
    allowed = {("gateway/ordering/service.py", "clean(idem_key, 64)"),
               ("gateway/staff/accounts.py", "clean(agent, 80)")}
    for path in [*root.glob("gateway/**/*.py"), *root.glob("web/**/*.py")]:
        rel = path.relative_to(root).as_posix()
        if rel in ("gateway/core/text.py",):
            continue
        for line in path.read_text().splitlines():
            for needle in ("textclean.clean(", " clean(", "clean_text("):
                if needle in line and not line.lstrip().startswith(("#", "def ")):
                    assert any(rel == f and snippet in line for f, snippet in allowed), f"{rel}: {line.strip()}"


# -- the log filter -------------------------------------------------------------------------------

def test_log_filter_redacts_message_args_and_traceback(capsys):
    logger = logging.getLogger("storegw.test.tripwire")
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    pii.install_log_filter([handler])
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("Invalid telemetry from %s: %s", "13912345678", "bad")
        logger.warning("guest 11010519491231002X paid with 4242424242424242")
        try:
            raise ValueError("P<UTOERIKSSON<<ANNA<MARIA<<<<<<<<<<<<<<<<<<<")
        except ValueError:
            logger.exception("failed for %s", "139-1234-5678")
    finally:
        logger.removeHandler(handler)
    err = capsys.readouterr().err
    for secret in ("13912345678", "1234-5678", "11010519491231002X", "4242424242424242", "ERIKSSON"):
        assert secret not in err
    assert "139****5678" in err and "110105********002X" in err and "<MRZ>" in err


def test_every_cli_command_installs_the_log_filter():
    from click.testing import CliRunner

    from gateway.cli import main

    root = logging.getLogger()
    saved = list(root.handlers)
    try:
        for h in list(root.handlers):
            root.removeHandler(h)
        result = CliRunner().invoke(main, ["decode", "gb11643"], input="11010519491231002X\n")
        assert result.exit_code == 0
        assert root.handlers and all(any(isinstance(f, pii.RedactingFilter) for f in h.filters)
                                     for h in root.handlers)
    finally:
        for h in list(root.handlers):
            root.removeHandler(h)
        for h in saved:
            root.addHandler(h)


# -- the upstream filter --------------------------------------------------------------------------

def _props(schema: dict, defs: dict) -> dict:
    if "$ref" in schema:
        schema = defs[schema["$ref"].split("/")[-1]]
    return schema


def _compare(shape, schema: dict, defs: dict, where: str) -> None:
    schema = _props(schema, defs)
    if isinstance(shape, upstream.ListOf):
        assert schema.get("type") == "array", where
        _compare(shape.item, schema["items"], defs, where + "[]")
    elif isinstance(shape, upstream.MapOf):
        assert isinstance(schema.get("additionalProperties"), dict), where
    elif isinstance(shape, upstream.Obj):
        assert set(shape) == set(schema["properties"]), where
        assert schema.get("additionalProperties") is False, where
        for key, sub in shape.items():
            _compare(sub, schema["properties"][key], defs, f"{where}.{key}")
    else:
        s = schema
        if shape in (upstream.TS,):
            assert s.get("format") == "date-time", where
        if shape == upstream.ENUM:
            assert "enum" in s or "pattern" in s or "const" in s or where.endswith("devices[].kind"), where


def test_every_schema_has_its_allowlist_and_they_agree():
    """HQ's contract (docs/schemas) is the allowlist: every schema file has a shape in
    gateway/spine/upstream.py with exactly its members, and a schema added without one fails here."""
    topics = {}
    for path in sorted(SCHEMAS.glob("*.json")):
        schema = json.loads(path.read_text())
        topic = "/" + schema["$id"].split("/", 2)[2]
        if topic.startswith("/cmd/"):
            continue  # HQ's commands to a store (P/cmd/resend) go downstream: no upstream allowlist
        topics[topic] = schema
    assert set(topics) == set(upstream.SHAPES), "a schema without an upstream shape (or the reverse)"
    for topic, schema in topics.items():
        _compare(upstream.SHAPES[topic], schema, schema.get("$defs", {}), topic)


def test_signed_messages_pass_the_filter_unchanged_and_still_verify(monkeypatch, caplog):
    """A filter that alters a signed message breaks its signature at HQ. Real checkpoints and receipts
    pass unchanged, even when their random parts look like a card number to the recognisers."""
    import uuid

    import jsonschema

    from gateway.core.models import iso_ms
    from gateway.privacy import audit, retention

    prefix = "storegw/v1/sh-001"
    signer = audit.Ed25519Signer(bytes(range(32)))
    # a receipt whose random id holds a Luhn-valid card-like run (4111 1111 1111 1111)
    monkeypatch.setattr(uuid, "uuid4", lambda: uuid.UUID("4111111111111111abcdef0123456789"))
    run = retention.RunResult(1_795_000_000_000, deleted={"user.name": 3}, rows={"ord_lines": 3})
    receipt = retention.receipt(run, store="sh-001", counts={"user.name": 7}, oldest={"user.name": None},
                                audit=(12, bytes(range(32))), signer=signer,
                                scrubbed={"checkpoint_busy": False, "freelist_after": 0}, next_run=None)
    assert pii.find(receipt["id"])  # an ID member would have pseudonymized it
    ts = iso_ms(1_795_000_000_000)
    head = audit.b64(bytes(range(32)))
    checkpoint = {"id": "sh-001:audit:12:1795000000000", "ts": ts, "length": 12, "head": head,
                  "key_id": signer.key_id,
                  "sig": audit.b64(signer.sign(audit.checkpoint_note(f"{prefix}/audit", 12, head, ts)))}
    for suffix, msg, ok in (("/privacy/receipt", receipt, lambda m: retention.signature_ok(m)),
                            ("/audit/checkpoint", checkpoint,
                             lambda m: audit.signature_ok(m, f"{prefix}/audit", signer.public_key_b64))):
        schema = json.loads((SCHEMAS / f"{suffix[1:].replace('/', '-')}.json").read_text())
        jsonschema.validate(msg, schema)
        out = upstream.filter_payload(prefix + suffix, json.loads(json.dumps(msg)))
        assert out == msg and ok(out), suffix
    # a signed message the filter must change (a store id that is a mobile number: a-z 0-9 - allows it)
    # is changed all the same, privacy first, and that is an error in the log
    odd = retention.receipt(run, store="13912345678", counts={}, oldest={}, audit=(0, bytes(32)), signer=signer,
                            scrubbed={}, next_run=None)
    with caplog.at_level(logging.ERROR, logger=upstream.__name__):
        out = upstream.filter_payload(prefix + "/privacy/receipt", json.loads(json.dumps(odd)))
    assert out["store"] == pii.pseudonym("13912345678") and not retention.signature_ok(out)
    assert "signature will not verify at HQ" in caplog.text


def test_upstream_filter_redacts_text_pseudonymizes_names_and_drops_unknown_members():
    alert = {"id": "e1:raised", "episode": "e1", "device": "13912345678", "rule": "warm", "kind": "threshold",
             "state": "raised", "severity": "major", "value": 9.5, "ts": "2026-11-30T10:00:00Z",
             "text": "call the owner 139 1234 5678 or 11010519491231002X", "owner_phone": "13912345678"}
    out = upstream.filter_payload("storegw/v1/sh-001/alerts", alert)
    dumped = json.dumps(out)
    assert "owner_phone" not in out and "12345678" not in dumped and "1231002X" not in dumped
    assert out["device"].startswith("redacted-") and len(out["device"]) == len("redacted-") + 8
    assert out["device"] == pii.pseudonym("13912345678")  # stable: HQ still tells devices apart
    assert out["text"] == "call the owner 139****5678 or 110105********002X"
    raw = [{"id": "sh-001:13912345678:1795000000000:ab", "device": "13912345678", "ts": "2026-11-30T10:00:00Z",
            "metrics": {"13912345678": 1.0, "temp_c": 4.0}}]
    out = upstream.filter_payload("storegw/v1/sh-001/telemetry/raw", raw)
    assert "13912345678" not in json.dumps(out)
    assert out[0]["metrics"]["temp_c"] == 4.0 and len(out[0]["metrics"]) == 2
    assert upstream.dropped_total() >= 1


@pytest.mark.parametrize("typed", ["call １３８１２３４５６７８ now", "call ١٣٨١٢٣٤٥٦٧٨ now", "call 138 1234 5678 now"])
def test_a_mobile_typed_in_other_digits_is_masked_too(typed):
    from gateway.core.text import free_text

    assert free_text(typed, 60) == "call 138****5678 now"


def test_a_card_typed_in_full_width_digits_is_refused():
    from gateway.core.text import CardNumberRefused, free_text

    with pytest.raises(CardNumberRefused):
        free_text("card ４１１１ １１１１ １１１１ １１１１", 60)
