"""Members in process: registration and consent, lookups, tier discount on the bill, points earned on
payment and reversed on void/refund, FEFO lots and expiry, coupons single-use, the ledger check."""

from __future__ import annotations

import pytest
from memhelpers import order, register

from gateway.core.errors import OrderingError
from gateway.members import registry

DAY = 86_400_000


def test_member_number_check_character():
    no = registry.member_no("sh-001", 42)
    assert no.startswith("SH001-0000042-")
    assert registry.valid_member_no(no) == no
    assert registry.valid_member_no(no.lower()) == no
    body = no[:-1]
    wrong = [body + c for c in registry._ALNUM if body + c != no]
    assert all(registry.valid_member_no(w) is None for w in wrong)
    swapped = "SH001-0000024-" + no[-1]
    assert registry.valid_member_no(swapped) is None


def test_register_consent_phone_encrypted_and_lookups(gw, mem):
    with pytest.raises(OrderingError, match="consent"):
        register(mem, consents={"benefits": False})
    out = register(mem, phone="+86 138-1234-5678", birthday="05-21", allergies="花生 peanuts",
                   consents={"benefits": True, "marketing": False, "birthday": False})
    m = mem.member(out["id"])
    assert m["phone_masked"] == "138****5678"
    assert m["birthday"] == ""  # no birthday consent: not kept
    assert m["allergies"] == "花生 peanuts"
    assert m["consents"]["benefits"]["granted"] and not m["consents"]["marketing"]["granted"]
    assert m["consents"]["benefits"]["version"] == registry.CONSENTS["benefits"][0]
    assert mem.identify("13812345678") == out["id"]
    assert mem.identify(out["no"]) == out["id"]
    assert mem.identify(out["token"]) == out["id"]
    assert mem.identify(f"http://order.test/m/{out['token']}") == out["id"]
    assert mem.identify(out["token"][:-1] + "0") in (None, out["id"]) and mem.identify(out["no"] + ".bad") is None
    with pytest.raises(OrderingError, match="already"):
        register(mem, phone="13812345678")
    raw = gw.store.read().execute("SELECT phone_ct, allergies_ct FROM mem_members").fetchone()
    assert b"13812345678" not in bytes(raw[0]) and "花生".encode() not in bytes(raw[1])
    # withdraw and give consent: history kept, birthday only with consent
    mem.set_consent(out["id"], "birthday", True, "diner", birthday="05-21")
    assert mem.member(out["id"])["birthday"] == "05-21"
    mem.set_consent(out["id"], "birthday", False, "diner")
    assert mem.member(out["id"])["birthday"] == ""
    rows = gw.store.read().execute("SELECT purpose, granted FROM mem_consents WHERE purpose = 'birthday'").fetchall()
    assert [r[1] for r in rows] == [0, 1, 0]


def test_bill_discount_points_earned_and_reversed_on_void_and_refund(gw, svc, mem):
    out = register(mem)
    mid = out["id"]
    order(gw, "A1", {"h06": 2, "c06": 1})  # 98*2 + 36 = 232
    mem.attach("A1", mid, "boss")
    b = svc.bill("A1")
    assert b["subtotal"] == 23200 and b["discount"] == 0  # 普通: 0 %
    earn = [a for a in b["adjustments"] if a["kind"] == "earn"][0]
    assert earn["points"] == 232 and "pending" in earn["label_en"]
    svc.pay("A1", "cash", "", "boss")
    assert mem.member(mid)["points"] == 232
    assert mem.check() == []
    # void a dish after payment: the points it earned are reversed, once
    line = [ln for ln in svc.bill("A1")["lines"] if ln["unit"] == 3600][0]["id"]
    svc.void_line(line, "void", "cold", "boss")
    svc.void_line(line, "void", "cold again", "boss")
    m = mem.member(mid)
    assert m["points"] == 232 - 36
    # refund the whole bill: everything earned is reversed
    svc.refund("A1", "customer left unhappy", "boss")
    assert mem.member(mid)["points"] == 0
    assert mem.check() == []
    kinds = gw.store.read().execute("SELECT kind, points FROM mem_ledger ORDER BY id").fetchall()
    assert kinds == [("earn", 232), ("reverse", -36), ("reverse", -196)]


def test_tier_upgrade_discount_and_downgrade_rule(make_gw):
    gw = make_gw('[members]\ntier_thresholds = [0, 100, 1000, 5000]\ntier_hold = "0s"\ndowngrade = "recalc"\n'
                 'tier_perk_cents = [0, 500, 0, 0]\n')
    svc, mem = gw.services["ordering"], gw.services["members"]
    mid = register(mem)["id"]
    order(gw, "A1", {"h06": 2})
    mem.attach("A1", mid, "boss")
    svc.pay("A1", "cash", "", "boss")
    m = mem.member(mid)
    assert m["tier"] == 1 and m["tier_en"] == "Silver"
    assert [b["kind"] for b in m["usable"]] == ["tier"]  # the silver perk, once
    svc.clear_table("A1", "boss")
    order(gw, "A2", {"c06": 1})
    mem.attach("A2", mid, "boss")
    b = svc.bill("A2")
    assert [a["amount"] for a in b["adjustments"] if a["kind"] == "tier"] == [3600 * 2 // 100]
    # the bill that promoted the member is refunded... it was cleared; refund the current one instead
    svc.pay("A2", "cash", "", "boss")
    assert mem.member(mid)["points"] == 196 + 35
    svc.refund("A2", "test", "boss")
    assert mem.member(mid)["tier"] == 1  # still qualifies (196 points)


def test_downgrade_after_void_follows_rule(make_gw):
    gw = make_gw('[members]\ntier_thresholds = [0, 100, 1000, 5000]\ntier_hold = "0s"\ndowngrade = "recalc"\n')
    svc, mem = gw.services["ordering"], gw.services["members"]
    mid = register(mem)["id"]
    order(gw, "A1", {"h06": 2})
    mem.attach("A1", mid, "boss")
    svc.pay("A1", "cash", "", "boss")
    assert mem.member(mid)["tier"] == 1
    svc.refund("A1", "wrong table", "boss")
    assert mem.member(mid)["tier"] == 0
    tiers = gw.store.read().execute("SELECT from_tier, to_tier FROM mem_tier_log ORDER BY id").fetchall()
    assert tiers == [(0, 1), (1, 0)]


def test_upgrade_holds_then_drops_one(make_gw):
    gw = make_gw('[members]\ntier_thresholds = [0, 100, 150, 5000]\ntier_hold = "30d"\ndowngrade = "one"\n'
                 'tier_period = "10d"\n')
    svc, mem = gw.services["ordering"], gw.services["members"]
    mid = register(mem)["id"]
    order(gw, "A1", {"h06": 2})
    mem.attach("A1", mid, "boss")
    svc.pay("A1", "cash", "", "boss")
    assert mem.member(mid)["tier"] == 2
    t0 = mem.clock()
    mem.clock = lambda: t0 + 20 * DAY  # outside the period, inside the hold
    mem.tick()
    assert mem.member(mid)["tier"] == 2
    mem.clock = lambda: t0 + 31 * DAY  # hold over: one tier down, and it holds again
    mem.tick()
    assert mem.member(mid)["tier"] == 1
    mem.tick()
    assert mem.member(mid)["tier"] == 1


def test_points_redeem_fefo_expiry_and_replays(gw, svc, mem):
    mid = register(mem)["id"]
    t0 = mem.clock()
    a = mem.points(mid, "earn", 300, "req-aaaa-1", "boss")
    mem.clock = lambda: t0 + 10 * DAY
    mem.points(mid, "earn", 500, "req-aaaa-2", "boss")
    assert mem.points(mid, "earn", 300, "req-aaaa-1", "boss")["duplicate"] is True
    with pytest.raises(OrderingError, match="another request"):
        mem.points(mid, "earn", 301, "req-aaaa-1", "boss")
    r = mem.points(mid, "redeem", 400, "req-bbbb-1", "boss")
    assert r["balance"] == 400 and not r["duplicate"]
    assert mem.points(mid, "redeem", 400, "req-bbbb-1", "boss") == {**r, "duplicate": True}
    lots = mem.member(mid)["lots"]
    assert [lt["points"] for lt in lots] == [400]  # the older lot went first, entirely
    assert a["points"] == 300
    mem.clock = lambda: t0 + 400 * DAY  # past every lot's expiry
    out = mem.tick()
    assert out["lots_expired"] == 1
    assert mem.member(mid)["points"] == 0
    with pytest.raises(OrderingError, match="Not enough"):
        mem.points(mid, "redeem", 1, "req-cccc-1", "boss")
    assert mem.check() == []


def test_points_on_bill_and_coupon_then_clear_unpaid_gives_back(gw, svc, mem):
    mid = register(mem)["id"]
    mem.points(mid, "earn", 1000, "seed-0001", "boss")
    cid = mem.issue_coupon(mid, "满减", "Ten off", 1000, 30, "coupon-0001", "boss")
    order(gw, "A1", {"h06": 2})
    mem.attach("A1", mid, "boss")
    mem.redeem_points("A1", 500, "redeem-0001", "boss")
    again = mem.redeem_points("A1", 500, "redeem-0001", "boss")
    assert again["duplicate"]
    code = mem.member(mid)["benefits"][0]["code"]
    mem.apply_coupon("A1", code, "boss")
    b = svc.bill("A1")
    assert b["discount"] == 500 + 1000 and b["total"] == 19600 - 1500
    assert mem.member(mid)["points"] == 500
    svc.clear_table("A1", "boss")  # never paid: points and coupon come back
    m = mem.member(mid)
    assert m["points"] == 1000 and [x["id"] for x in m["usable"]] == [cid]
    assert mem.check() == []


def test_coupon_owner_checked_and_single_use(gw, svc, mem):
    a = register(mem)["id"]
    b = register(mem, phone="13900000000", nickname="Wang")["id"]
    mem.issue_coupon(a, "", "", 500, 30, "coupon-a-01", "boss")
    code = mem.member(a)["benefits"][0]["code"]
    order(gw, "A1", {"c06": 1})
    order(gw, "A2", {"c06": 1})
    mem.attach("A1", b, "boss")
    with pytest.raises(OrderingError, match="another member"):
        mem.apply_coupon("A1", code, "boss")
    mem.attach("A2", a, "boss")
    mem.apply_coupon("A2", code, "boss")
    with pytest.raises(OrderingError, match="already been used"):
        mem.apply_coupon("A2", code, "boss")
    svc.pay("A2", "cash", "", "boss")
    assert mem.member(a)["benefits"][0]["state"] == "redeemed"


def test_complaint_surge_raises_alert_and_feedback_after_paid(make_gw):
    gw = make_gw("[members]\ncomplaint_alert_per_day = 2\n")
    svc, mem = gw.services["ordering"], gw.services["members"]
    order(gw, "A1", {"c06": 1})
    line = svc.bill("A1")["lines"][0]["id"]
    with pytest.raises(OrderingError, match="paid"):
        mem.rate("A1", "phone-mac", 5, "great")
    mem.complain("A1", line, "taste", "too salty, call me 13812345678", "boss")
    assert not any(k.startswith("members:complaints:") for k in gw.alerts.active)
    mem.complain("A1", line, "taste", "", "boss")
    assert any(k.startswith("members:complaints:") for k in gw.alerts.active)
    with pytest.raises(OrderingError, match="not on this bill"):
        mem.complain("A1", 99999, "taste", "", "boss")
    svc.pay("A1", "cash", "", "boss")
    mem.rate("A1", "phone-mac", 4, "good")
    mem.rate("A1", "phone-mac", 5, "better")
    assert mem.rated("A1", "phone-mac") == 5
    today = mem.complaints_today()
    assert today["counts"] == {"taste": 2} and today["ratings"] == 1


def test_summary_has_aggregates_only(make_gw):
    gw = make_gw('[members]\nsummary_every = "1m"\nfeedback_text_upstream = false\n')
    svc, mem = gw.services["ordering"], gw.services["members"]
    mid = register(mem)["id"]
    order(gw, "A1", {"h06": 1})
    mem.attach("A1", mid, "boss")
    svc.pay("A1", "cash", "", "boss")
    t0 = mem.clock()
    mem.clock = lambda: t0 + 120_000
    assert mem.tick()["summaries"] >= 1
    rows = gw.store.read().execute("SELECT topic, payload FROM outbox WHERE topic LIKE '%/members/summary'").fetchall()
    assert rows
    text = "".join(bytes(r[1]).decode() for r in rows)
    assert "13812345678" not in text and "Lin" not in text and "SH001-" not in text
    assert '"issued":98' in text
