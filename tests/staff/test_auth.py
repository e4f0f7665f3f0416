"""Issue 10, item 6: managers, technicians and auditors sign in with a password plus TOTP (a code
works once; refused while the clock is untrusted, with the technician's override); floor staff keep
PINs; PIN managers from before are told to enrol and keep floor work; brute force stops at <= 100."""

from __future__ import annotations

import re
from pathlib import Path

import pyotp
import pytest
from click.testing import CliRunner
from ordhelpers import PASSWORD, Authenticator, add_privileged, staff_login
from ordhelpers import csrf as _csrf

from gateway.cli import ordering as cli
from gateway.core.errors import OrderingError
from gateway.staff import accounts as staffops
from gateway.staff import clock, totp

PIN = "246813"


def _audit(gw, action):
    """(who, subject, why) of the audit chain's entries of ``action`` (references, never names)."""
    return gw.store.read().execute("SELECT who, subject, why FROM audit_log WHERE action = ? ORDER BY seq",
                                   (action,)).fetchall()


def _ref(gw, name, role=True):
    row = gw.store.read().execute("SELECT id, role FROM ord_staff WHERE name = ?", (name,)).fetchone()
    return f"staff:{row[0]}/{row[1]}" if role else f"staff:{row[0]}"


def test_password_and_totp_sign_in_and_a_code_works_only_once(app, svc, gw):
    auth = add_privileged(svc, "wang", "manager")
    c = app.test_client()
    code = auth.code()
    r = staff_login(c, "wang", PASSWORD, code)
    assert r.status_code == 303, r.get_data(as_text=True)
    assert c.get("/staff/menu").status_code == 200 and c.get("/staff/accounts").status_code == 200
    assert c.post("/staff/logout", data={"csrf_token": _csrf(c)}).status_code == 303
    # the same code again, within its window, from another browser: refused (RFC 6238 §5.2)
    r = staff_login(app.test_client(), "wang", PASSWORD, code, addr="10.20.0.2")
    assert r.status_code == 401 and "already used" in r.get_data(as_text=True)
    assert _audit(gw, "totp-replay") == [("system", _ref(gw, "wang", False), "sign-in with a code already used")]
    # an earlier step's code (still inside the ±1 window) is a replay too
    older = auth.totp.generate_otp(auth.step - 1)
    assert staff_login(app.test_client(), "wang", PASSWORD, older, addr="10.20.0.3").status_code == 401
    # the next code works
    assert staff_login(app.test_client(), "wang", PASSWORD, auth.code(), addr="10.20.0.4").status_code == 303


def test_codes_outside_the_window_and_missing_or_wrong_parts_are_refused(app, svc, gw):
    auth = add_privileged(svc, "ops", "technician")
    now = totp.step_of()
    far = auth.totp.generate_otp(now + 3)
    for secret, code, why in ((PASSWORD, "", "authenticator app"), (PASSWORD, far, "Wrong name"),
                              ("wrong password!!", auth.totp.generate_otp(now), "Wrong name"),
                              (PIN, "", "authenticator app")):
        r = staff_login(app.test_client(), "ops", secret, code)
        assert r.status_code == 401 and why in r.get_data(as_text=True), (secret, code)
    row = gw.store.read().execute("SELECT failures FROM ord_staff WHERE name = 'ops'").fetchone()
    assert row[0] == 2  # a missing code is not counted (nothing was checked); wrong ones are
    assert totp.match(auth.totp.secret, auth.totp.generate_otp(now + 1)) == now + 1
    assert totp.match(auth.totp.secret, auth.totp.generate_otp(now - 2)) is None
    assert totp.match(auth.totp.secret, "１２３４５６") is None


def test_privileged_roles_cannot_have_pins_and_passwords_are_long_and_secrets_sealed(svc, gw):
    with pytest.raises(OrderingError, match="password and an authenticator"):
        svc.writer.call(lambda c: staffops.add_staff(c, "boss", "manager", PIN))
    with pytest.raises(OrderingError, match="12-128"):
        svc.writer.call(lambda c: staffops.enrol(c, "boss", "manager", "short pw", cipher=gw.privacy.cipher))
    with pytest.raises(OrderingError, match="PIN"):
        svc.writer.call(lambda c: staffops.enrol(c, "li", "waiter", PASSWORD, cipher=gw.privacy.cipher))
    auth = add_privileged(svc, "audrey", "auditor")
    row = gw.store.read().execute("SELECT pin_hash, auth, totp_sealed FROM ord_staff WHERE name = 'audrey'").fetchone()
    assert row[0].startswith("$argon2id$v=19$m=7168,t=5,p=1") and row[1] == "totp"
    secret = auth.totp.secret
    # field-encrypted under the keyring's primary field key (gateway/privacy/fields.py), bound to the row
    assert secret.encode() not in bytes(row[2]) and bytes(row[2])[:1] == b"\x01"
    from gateway.privacy.fields import version_of
    assert version_of(bytes(row[2])) == gw.privacy.cipher.primary_version
    import base64

    assert base64.b32decode(secret) not in bytes(row[2])


def test_untrusted_clock_refuses_totp_and_the_technicians_override_works_until_reboot(app, svc, gw, cli_config,
                                                                                      tmp_path):
    auth = add_privileged(svc, "wang", "manager")
    svc.writer.call(lambda c: staffops.add_staff(c, "li", "cashier", PIN))
    staff = gw.services["staff"]
    boot = tmp_path / "boot_id"
    boot.write_text(Path(clock.BOOT_ID).read_text())
    staff.clock_policy = clock.ClockPolicy(sync_files=staff.clock_policy.sync_files, boot_id_path=str(boot))
    Path(gw.cfg.staff.clock_sync_files[0]).unlink()  # timesyncd has not synchronised since boot
    assert not staff.clock_state().trusted
    r = staff_login(app.test_client(), "wang", PASSWORD, auth.code())
    assert r.status_code == 401 and "clock is not trusted" in r.get_data(as_text=True)
    assert staff_login(app.test_client(), "li", PIN).status_code == 303  # floor PINs do not need the clock
    # the technician sets the time and runs trust-clock (audited)
    res = CliRunner().invoke(cli.staff, ["trust-clock", "--by", "zhao", "--config", str(cli_config)])
    assert res.exit_code == 0, res.output
    assert staff.clock_state().trusted and "zhao" in staff.clock_state().why
    [(who, subject, why)] = _audit(gw, "trust-clock")
    assert who.startswith("staff:p:") and subject == "clock:board" and "until reboot" in why
    assert staff_login(app.test_client(), "wang", PASSWORD, auth.code()).status_code == 303
    # after a reboot (a new boot id) the override is gone
    boot.write_text("00000000-0000-0000-0000-000000000000\n")
    assert not staff.clock_state().trusted
    assert staff_login(app.test_client(), "wang", PASSWORD, auth.code()).status_code == 401


def test_a_clock_behind_the_last_known_time_is_untrusted_even_when_synchronised(svc, gw, cli_config):
    staff = gw.services["staff"]
    assert staff.clock_state().trusted
    import time

    ahead = int(time.time() * 1000) + 86400_000  # the gateway once saw tomorrow: now the clock went back a day
    svc.writer.call(lambda c: clock.remember(c, ahead))
    state = staff.clock_state()
    assert not state.trusted and "earlier than the last time" in state.why
    res = CliRunner().invoke(cli.staff, ["trust-clock", "--config", str(cli_config)])
    assert res.exit_code == 1 and "set the time first" in res.output
    assert not clock.assess(gw.store.read(), staff.clock_policy, now=clock.BUILD_FLOOR_MS - 1).trusted


def test_a_pin_manager_from_before_is_told_to_enrol_keeps_floor_work_and_doctor_says_so(app, svc, gw, cli_config,
                                                                                       tmp_path):
    digest = staffops._hash(PIN)  # an account made before TOTP existed
    svc.writer.call(lambda c: c.execute("INSERT INTO ord_staff (name, role, pin_hash, created_ms) "
                                        "VALUES ('wang', 'manager', ?, 0)", (digest,)))
    c = app.test_client()
    r = staff_login(c, "wang", PIN)
    assert r.status_code == 303
    page = c.get("/staff/").get_data(as_text=True)
    assert "storegw staff add wang --role manager" in page and "floor work only" in page
    assert c.get("/staff/tables/A1").status_code == 200
    for path in ("/staff/menu", "/staff/accounts", "/staff/audit", "/staff/unmask/id"):
        assert c.get(path).status_code == 403, path
    from provisioning.doctor import check_staff

    findings = check_staff(gw.cfg)
    assert any(f.level == "warn" and "wang (manager)" in f.text for f in findings), findings
    # enrolment through the CLI: the password from a file, the otpauth URI and a QR printed once
    pw = tmp_path / "pw"
    pw.write_text(PASSWORD + "\n")
    res = CliRunner().invoke(cli.staff, ["add", "wang", "--role", "manager", "--password-file", str(pw),
                                         "--config", str(cli_config)])
    assert res.exit_code == 0, res.output
    uri = re.search(r"otpauth://\S+", res.output).group(0)
    assert "issuer=storegw" in uri
    assert any(ch in res.output for ch in "█▀▄")  # the terminal QR code
    auth = Authenticator(pyotp.parse_uri(uri).secret)
    assert c.get("/staff/").status_code == 302  # the PIN session ended at enrolment
    assert staff_login(app.test_client(), "wang", PIN).status_code == 401
    c2 = app.test_client()
    assert staff_login(c2, "wang", PASSWORD, auth.code()).status_code == 303
    assert c2.get("/staff/menu").status_code == 200
    assert not [f for f in check_staff(gw.cfg) if "not enrolled" in f.text]
    res = CliRunner().invoke(cli.staff, ["add", "x", "--role", "auditor", "--pin-stdin", "--config", str(cli_config)],
                             input="246813\n")
    assert res.exit_code == 2 and "password" in res.output


def test_another_manager_resets_a_lost_phone_on_the_staff_page(app, svc, gw):
    boss = add_privileged(svc, "boss", "manager")
    add_privileged(svc, "wang", "manager")
    c = app.test_client()
    assert staff_login(c, "boss", PASSWORD, boss.code()).status_code == 303
    html = c.get("/staff/accounts").get_data(as_text=True)
    sid = gw.store.read().execute("SELECT id FROM ord_staff WHERE name = 'wang'").fetchone()[0]
    assert f"/staff/accounts/{sid}/reset" in html
    r = c.post(f"/staff/accounts/{sid}/reset", data={"password": "a new long password", "csrf_token": _csrf(c)})
    page = r.get_data(as_text=True)
    assert r.status_code == 200 and "<svg" in page
    secret = re.search(r"<code>([A-Z2-7]+)</code>", page).group(1)
    new = Authenticator(secret)
    assert staff_login(app.test_client(), "wang", "a new long password", new.code()).status_code == 303
    assert _audit(gw, "reset-sign-in")[-1][:2] == (_ref(gw, "boss"), _ref(gw, "wang", False))
    own = gw.store.read().execute("SELECT id FROM ord_staff WHERE name = 'boss'").fetchone()[0]
    c.post(f"/staff/accounts/{own}/reset", data={"password": "x" * 20, "csrf_token": _csrf(c)})
    assert c.get("/staff/accounts").status_code == 200  # not reset: still signed in


def test_brute_force_of_a_password_and_code_stops_at_the_lock(app, svc, gw):
    add_privileged(svc, "wang", "manager")
    for i in range(120):
        r = staff_login(app.test_client(), "wang", f"guess number {i:04d}", "123456",
                        addr=f"10.66.{i // 10}.{i % 10 + 1}")
        assert r.status_code == 401
    row = gw.store.read().execute("SELECT failures, locked_ms FROM ord_staff WHERE name = 'wang'").fetchone()
    assert row[1] is not None and staffops.LOCK_AFTER <= row[0] <= 120
    assert len(_audit(gw, "lock")) == 1


def test_totp_secret_is_under_the_field_keys_rewrapped_by_rotation_and_interim_values_move(svc, gw):
    """The TOTP secret is a field ciphertext of the keyring's keys: a field-key rotation re-wraps it
    (the old version retires at 0 rows) and sign-in still works; a value of the interim seal an older
    version wrote (a key in ``meta``) is moved under the field key by the re-wrap and its key deleted."""
    import os

    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    from gateway.privacy import fields

    auth = add_privileged(svc, "wang", "manager")
    staff_svc = gw.services["staff"]
    sid = gw.store.read().execute("SELECT id FROM ord_staff WHERE name = 'wang'").fetchone()[0]

    def stored() -> bytes:
        return bytes(gw.store.read().execute("SELECT totp_sealed FROM ord_staff WHERE id = ?", (sid,)).fetchone()[0])

    old = fields.version_of(stored())
    new = gw.privacy.rotate(db=False, fields=True)["field_version"]
    assert gw.privacy.handle({"op": "rewrap"})["rewrapped"] >= 1
    assert fields.version_of(stored()) == new != old
    assert old not in fields.rows_per_version(gw.store.read())
    assert staff_svc.check_login("wang", PASSWORD, auth.code())[1] == ""

    # what an older version stored: format byte "S", AES-GCM under a key in meta
    key, nonce = os.urandom(32), os.urandom(12)
    aad = b"storegw-staff-sealed\x00" + f"ord_staff\x00totp_sealed\x00{sid}".encode()
    blob = b"S" + nonce + AESGCM(key).encrypt(nonce, auth.totp.secret.encode(), aad)

    def plant(c):
        c.execute("INSERT INTO meta (key, value) VALUES (?, ?)", (fields.LEGACY_SECRET, key.hex()))
        c.execute("UPDATE ord_staff SET totp_sealed = ? WHERE id = ?", (blob, sid))
    gw.store.writer.call(plant)
    assert fields.rows_per_version(gw.store.read()).get(fields.LEGACY_VERSION) == 1
    assert gw.privacy.handle({"op": "rewrap"})["rewrapped"] == 1
    assert fields.version_of(stored()) == new
    left = gw.store.read().execute("SELECT count(*) FROM meta WHERE key = ?", (fields.LEGACY_SECRET,)).fetchone()[0]
    assert left == 0  # the interim key is deleted
    assert staff_svc.check_login("wang", PASSWORD, auth.code())[1] == ""
