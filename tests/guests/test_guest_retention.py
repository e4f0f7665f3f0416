"""Retention: after the configured times (the service clock advanced), the room and then every identity
value are gone from the database file, even decrypted with the SQLCipher key; receipts reach HQ.

Planted (synthetic, checksum-valid; guestkit cites the vector ids): two resident ID numbers, a
passport number, names, a guardian's phone, an address and a recognisable chip photo. The search
covers every page of the file and its WAL decrypted with the database key, in plain UTF-8, UTF-16
(LE/BE), hex and base64, and the field ciphertexts themselves (which do not decrypt without the
keyring, so the plaintexts never appear even before the purge: the ciphertexts show the purge).
"""

from __future__ import annotations

import json

from guestkit import ADULT, MINOR, PASSPORT, Clock, decrypted_file, encodings, id_card, mrz_zone
from guestkit import idcard_event as _idcard_event
from guestkit import mrz_event as _mrz_event
from guestkit import scan as _scan
from guestkit import stay_form as _stay_form
from realparts import db_key, wait_for

from gateway.guests import rules
from gateway.hq.watch import HQCollector
from gateway.store.db import DB_NAME

PHOTO = bytes.fromhex("ffd8ffe0") + b"planted-photo-" * 40


def test_identity_fields_gone_from_the_file_after_retention_with_receipts_at_hq(make_gw, mosquitto_factory,
                                                                                tmp_path) -> None:
    local, hq_broker = mosquitto_factory("local"), mosquitto_factory("hq")
    hq = HQCollector("127.0.0.1", hq_broker.port, client_id="hq-guests").start()
    gw = make_gw("auto_send = false", uplink="", local_port=local.port, hq_port=hq_broker.port)
    svc = gw.services["guests"]
    svc.clock = Clock(rules.parse_local("2026-11-30T14:00", svc.tz))
    adult, minor = id_card(*ADULT), id_card(*MINOR)
    planted_address = "示例省示例市留存测试路88号"
    adult["address"] = planted_address
    stay_id, adult_id = svc.register(_stay_form(scan=_scan(svc, _idcard_event(adult, PHOTO))), "lin")
    svc.register({"scan": _scan(svc, _idcard_event(minor)), "photo_match": "1", "guardian_name": "王大明",
                  "guardian_contact": "13912345678", f"relationship_{adult_id}": "父子"}, "lin", stay_id)
    foreign, _ = svc.register(_stay_form(room="0902", scan=_scan(svc, _mrz_event(PASSPORT)), visa_type="L",
                                         visa_valid_to="2027-01-01"), "lin")
    for rid in [r["id"] for r in svc.reports()]:
        svc.send_report(rid, "boss")  # one payload copy stays until acknowledged
    conn = gw.store.read()
    cts = [bytes(v) for row in conn.execute("SELECT name_ct, doc_number_ct, details_ct, photo_ct, guardian_ct "
                                            "FROM guest_people") for v in row if v is not None]
    cts += [bytes(v) for (v,) in conn.execute("SELECT payload_ct FROM guest_reports")]
    assert len(cts) == 3 * 3 + 2 + 1 + 2  # 3 guests x (name, number, details), 2 chip photos, 1 guardian, 2 payloads
    secrets = [adult["id_number"], minor["id_number"], "ZE000509", adult["name"], minor["name"], "MARTIN",
               "13912345678", "王大明", planted_address, PHOTO[:32]]

    def scan_file() -> bytes:
        gw.store.writer.run_exclusive(lambda c: c.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone())
        return decrypted_file(tmp_path / "data" / DB_NAME, db_key(tmp_path / "data").raw)

    before = scan_file()
    assert b"CREATE TABLE guest_people" in before  # the decryption is right
    assert sum(ct[5:40] in before for ct in cts) == len(cts)  # every ciphertext is in the file
    for secret in secrets:
        for enc in encodings(secret):
            assert enc not in before, (secret, enc)  # field encryption: never in plain, even with the key

    for sid in (stay_id, foreign):
        svc.checkout(sid, "lin")
    svc.clock.advance(hours=23)
    assert svc.purge()["counts"]["user.location.imprecise"] == 0
    svc.clock.advance(hours=2)  # 25 h after checkout: the room numbers go
    receipt = svc.purge()
    assert receipt["counts"]["user.location.imprecise"] == 2
    assert receipt["counts"]["user.name"] == 0
    assert conn.execute("SELECT count(*) FROM guest_stays WHERE room IS NOT NULL").fetchone() == (0,)
    assert svc.stay(stay_id)["guests"][0]["number"] == "360426********0071"  # identity still kept

    svc.clock.advance(days=364)  # 1 year + 1 day after checkout
    receipt = svc.purge()
    assert receipt["counts"]["user.name"] == 3
    assert receipt["counts"]["user.biometric"] == 2
    assert receipt["counts"]["user.contact"] == 1
    assert receipt["counts"]["reports"] == 2
    assert receipt["counts"]["stays"] == 2
    for table in ("guest_people", "guest_stays", "guest_reports"):
        assert conn.execute(f"SELECT count(*) FROM {table}").fetchone() == (0,), table  # noqa: S608
    after = scan_file()
    for ct in cts:
        assert ct[5:40] not in after  # not even the ciphertexts (secure_delete + WAL truncate)
    for secret in secrets:
        for enc in encodings(secret):
            assert enc not in after, secret
    receipts = conn.execute("SELECT counts FROM guest_receipts ORDER BY id").fetchall()
    assert len(receipts) == 2 and json.loads(receipts[1][0])["user.name"] == 3

    def at_hq() -> list[dict]:
        purges = [m for m in hq.other.get("guests/summary", []) if m["kind"] == "purge"]
        return purges if len(purges) == 2 else []

    purges = wait_for(at_hq, timeout=20, what="both purge receipts at HQ")
    assert purges[1]["deleted"]["user.name"] == 3
    text = json.dumps(hq.raw, ensure_ascii=False)
    for secret in secrets[:-1]:
        assert secret not in text
    hq.stop()


def test_longer_retention_from_config_keeps_identity(make_gw) -> None:
    gw = make_gw('auto_send = false\nkeep_identity = "1095d"\nkeep_room = "7d"')
    svc = gw.services["guests"]
    svc.clock = Clock(rules.parse_local("2026-11-30T14:00", svc.tz))
    stay_id, _ = svc.register(_stay_form(scan=_scan(svc, _idcard_event(id_card(*ADULT)))), "lin")
    svc.checkout(stay_id, "lin")
    svc.clock.advance(days=2)
    assert svc.purge()["counts"]["user.location.imprecise"] == 0
    svc.clock.advance(days=400)
    counts = svc.purge()["counts"]
    assert counts["user.location.imprecise"] == 1 and counts["user.name"] == 0
    svc.clock.advance(days=700)
    assert svc.purge()["counts"]["user.name"] == 1


def test_a_stay_never_checked_out_is_purged_30_days_after_its_expected_checkout(svc, gw) -> None:
    svc.clock.ms = rules.parse_local("2026-11-30T14:00", svc.tz)
    svc.register(_stay_form(scan=_scan(svc, _idcard_event(id_card(*ADULT)))), "lin")
    svc.clock.advance(days=2 + 30 + 365 + 1)
    assert svc.purge()["counts"]["user.name"] == 1


def test_mrz_vector_is_the_cited_one() -> None:
    assert mrz_zone(PASSPORT).splitlines()[1].startswith("ZE000509")
