"""`storegw doctor`'s checks of what provisioning set up: the board's certificate, the broker's
accounts and ACL, the installed unit's hardening, and the clock against an NTP server.

Registered with one line in provisioning/doctor.py (``CHECKS``); each returns Findings with the fix.
"""

from __future__ import annotations

import datetime as dt
import re
import shutil
import socket
import struct
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from provisioning.findings import FAIL, OK, WARN, Finding

UNIT = Path("/etc/systemd/system/storegw.service")
MAX_EXPOSURE = 2.0
CERT_WARN_DAYS = 30
SKEW_FAIL, SKEW_WARN = 30.0, 2.0  # TOTP allows one 30 s step; TLS and summaries want better
NTP_EPOCH = 2208988800  # 1900-01-01 to 1970-01-01, seconds


def check_certificate(cfg: Any) -> list[Finding]:
    """The board's client certificate for HQ: present, readable, valid now and for a while yet."""
    from cryptography import x509

    up = cfg.uplink
    if not up.cert_file:
        if up.enabled and up.tls:
            return [Finding("certificate", WARN, "no client certificate (uplink.cert_file): HQ must accept a "
                            "password login", "storegw provision init --config CFG --claim CODE, or send HQ "
                            "/etc/storegw/hq.csr and import the answer with --cert")]
        return []
    path = Path(up.cert_file)
    renew = (f"storegw provision csr --config {cfg.source or 'CFG'}; HQ signs it (storegw hq sign); then "
             f"storegw provision init --config {cfg.source or 'CFG'} --cert NEW.crt")
    try:
        cert = x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError) as err:
        return [Finding("certificate", FAIL, f"cannot read {path}: {err}", renew)]
    now = dt.datetime.now(dt.UTC)
    until, since = cert.not_valid_after_utc, cert.not_valid_before_utc
    if now > until:
        return [Finding("certificate", FAIL, f"{path} expired on {until:%Y-%m-%d %H:%M} UTC: HQ refuses the "
                        "board, everything waits in the outbox", renew)]
    if now < since:
        return [Finding("certificate", FAIL, f"{path} is valid only from {since:%Y-%m-%d %H:%M} UTC: the "
                        "board's clock is behind", "fix the clock: timedatectl set-ntp true (see the clock finding)")]
    left = (until - now).days
    if left < CERT_WARN_DAYS:
        return [Finding("certificate", WARN, f"{path} expires in {left} day(s), on {until:%Y-%m-%d}", renew)]
    return [Finding("certificate", OK, f"{path} valid until {until:%Y-%m-%d} ({left} days)")]


def check_broker_accounts(cfg: Any) -> list[Finding]:
    """The broker's ACL matches its accounts: each device writes only its own topics, the gateway reads."""
    from provisioning.mosquitto import acl_users, read_passwd

    lm = cfg.local_mqtt
    if lm.embedded:
        return []
    passwd, acl = Path(lm.broker_passwd_file), Path(lm.broker_acl_file)
    regen = f"storegw provision mosquitto --config {cfg.source or 'CFG'} (regenerates the ACL and reloads Mosquitto)"
    if not passwd.exists():
        return [Finding("broker ACL", WARN, f"no accounts file {passwd}: the store broker's accounts are not "
                        "managed by storegw", f"storegw provision mosquitto --config {cfg.source or 'CFG'}")]
    try:
        accounts = read_passwd(passwd)
        rules = acl_users(acl)
    except OSError as err:
        return [Finding("broker ACL", FAIL, f"cannot read {err.filename}: {err.strerror}", "run doctor as root")]
    if not acl.exists():
        return [Finding("broker ACL", FAIL, f"{acl} is missing: Mosquitto refuses every device", regen)]
    gw = lm.username or "storegw"
    out = []
    for dev in sorted(u for u in accounts if u != gw):
        want = [f"topic write devices/{dev}/#"]
        if dev not in rules:
            out.append(Finding("broker ACL", FAIL, f"device {dev} has an account but no line in {acl}: its "
                               "readings are refused", regen))
        elif rules[dev] != want:
            out.append(Finding("broker ACL", FAIL, f"device {dev} may do more than write devices/{dev}/# "
                               f"({'; '.join(rules[dev])})", regen))
    for dev in sorted(_registry_ids(cfg) - set(accounts)):
        out.append(Finding("broker ACL", WARN, f"equipment {dev} is in the registry but has no broker account: "
                           "its readings are refused", f"storegw equipment add {dev} --config {cfg.source or 'CFG'}"))
    for user in sorted(set(rules) - set(accounts)):
        out.append(Finding("broker ACL", WARN, f"{acl} has rules for {user}, which has no account", regen))
    if "topic read devices/#" not in rules.get(gw, []):
        out.append(Finding("broker ACL", FAIL, f"the gateway's account {gw} may not read devices/#", regen))
    return out or [Finding("broker ACL", OK, f"{len(accounts) - (gw in accounts)} device account(s), each "
                           "limited to its own topics")]


def _can(uid: int, gids: set[int], path: Path, want: int) -> bool:
    """Whether ``uid`` (in ``gids``) may search every directory to ``path`` and has ``want`` (4 r, 2 w) on it."""
    import stat

    def allowed(p: Path, bits: int) -> bool:
        st = p.stat()
        if st.st_uid == uid:
            return bool(st.st_mode & (bits << 6))
        if st.st_gid in gids:
            return bool(st.st_mode & (bits << 3))
        return bool(st.st_mode & bits)

    path = path.absolute()
    ok = all(allowed(d, 1) for d in reversed(path.parents)) and allowed(path, want)
    if stat.S_ISDIR(path.stat().st_mode):
        ok = ok and allowed(path, 1)
    return ok


def check_service_access(cfg: Any, user: str = "storegw") -> list[Finding]:
    """What the service must read (config, certificates) and write (data, keys), as its own user:
    doctor run as root would not notice a 0700 /etc/storegw."""
    import grp
    import os
    import pwd

    try:
        pw = pwd.getpwnam(user)
    except KeyError:
        return []  # not installed as a service on this machine
    if os.geteuid() == pw.pw_uid:
        return []  # the other checks ran as that user already
    gids = {pw.pw_gid} | {g.gr_gid for g in grp.getgrall() if user in g.gr_mem}
    need = [(Path(cfg.source), 4)] if cfg.source else []
    need += [(Path(p), 4) for p in (cfg.uplink.cert_file, cfg.uplink.ca_file) if p]
    need += [(d, 6) for d in (cfg.data_path, cfg.keys_path) if d.exists()]
    out = []
    for path, want in need:
        try:
            ok = _can(pw.pw_uid, gids, path, want)
        except OSError as err:
            out.append(Finding("service access", FAIL, f"{path}: {err.strerror}", "storegw install --config CFG"))
            continue
        if not ok:
            what = "read" if want == 4 else "write"
            out.append(Finding("service access", FAIL, f"the {user} user cannot {what} {path}: the service will "
                               "not start", f"storegw install --config {cfg.source or 'CFG'} (sets the owners and "
                               f"modes), or: chmod 755 {path.parent}; chown -R {user}: for data and keys"))
    return out or [Finding("service access", OK, f"the {user} user reads its config and certificates and "
                           "writes its data and keys")]


def _registry_ids(cfg: Any) -> set[str]:
    """Device ids of the equipment registry (storegw equipment import), read-only; none when unreadable."""
    from gateway.clikit import db_key
    from gateway.equipment import registry
    from gateway.store.db import DB_NAME, connect, key_matches

    db = cfg.data_path / DB_NAME
    try:
        key = db_key(cfg)
        if not db.exists() or key_matches(db, key) is False:
            return set()
        conn = connect(db, key, readonly=True)
        try:
            return set(registry.assets(conn))
        finally:
            conn.close()
    except Exception:  # noqa: BLE001 - no key, no table yet: the database checks say why
        return set()


def exposure(unit: Path) -> tuple[float, str]:
    """`systemd-analyze security --offline=true` of a unit file: (score, verdict)."""
    res = subprocess.run(["systemd-analyze", "security", "--offline=true", "--no-pager", str(unit)],
                         capture_output=True, text=True, timeout=60, check=False)
    m = re.search(r"Overall exposure level for \S+: ([\d.]+) (\w+)", res.stdout + res.stderr)
    if not m:
        raise RuntimeError((res.stderr or res.stdout).strip()[-300:] or "no score")
    return float(m.group(1)), m.group(2)


def check_unit_hardening(unit: Path | None = None) -> list[Finding]:
    """The installed unit's exposure score (systemd-analyze security), at most 2.0."""
    unit = unit or UNIT
    if not unit.is_file() or shutil.which("systemd-analyze") is None:
        return []
    score, verdict = exposure(unit)
    if score > MAX_EXPOSURE:
        return [Finding("hardening", FAIL, f"{unit}: exposure {score} {verdict} (at most {MAX_EXPOSURE})",
                        "reinstall the shipped unit: storegw install --config CFG; a drop-in may loosen it: "
                        "systemctl cat storegw")]
    return [Finding("hardening", OK, f"{unit.name}: exposure {score} {verdict}")]


def sntp_offset(server: str, port: int = 123, timeout: float = 2.0) -> float:
    """The clock's offset from an NTP server, seconds (positive: this board is behind). One SNTP query
    (RFC 4330): offset = ((T2 - T1) + (T3 - T4)) / 2."""
    packet = bytearray(48)
    packet[0] = 0x23  # LI 0, version 4, mode 3 (client)
    t1 = time.time()
    sec = int(t1) + NTP_EPOCH
    packet[40:48] = struct.pack("!II", sec, int((t1 % 1) * 2**32))
    with socket.socket(socket.AF_INET6 if ":" in server else socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(bytes(packet), (server, port))
        data, _ = s.recvfrom(512)
    t4 = time.time()
    if len(data) < 48 or data[0] & 0x07 != 4:
        raise ValueError("not an NTP server answer")

    def ts(off: int) -> float:
        s_, f_ = struct.unpack("!II", data[off:off + 8])
        return s_ - NTP_EPOCH + f_ / 2**32

    t2, t3 = ts(32), ts(40)
    return ((t2 - t1) + (t3 - t4)) / 2


def check_clock_skew(cfg: Any, timeout: float) -> list[Finding]:
    """The clock against store.time_server: off by more than 30 s fails (TLS, TOTP, summaries)."""
    server = cfg.store.time_server
    if not server:
        return []
    host, _, port = server.rpartition(":") if server.count(":") == 1 else (server, "", "")
    try:
        off = sntp_offset(host or server, int(port or 123), timeout=min(timeout, 3.0))
    except (OSError, ValueError) as err:
        return [Finding("clock skew", WARN, f"no answer from the NTP server {server}: {err}",
                        "check that UDP 123 reaches it (store firewall), or set store.time_server")]
    how = f"{abs(off):.1f} s {'behind' if off > 0 else 'ahead of'} {server}"
    if abs(off) > SKEW_FAIL:
        return [Finding("clock skew", FAIL, f"the clock is {how}: TLS to HQ, manager sign-in (TOTP) and "
                        "summary times go wrong", "timedatectl set-ntp true, check `timedatectl timesync-status` and "
                        "that UDP 123 reaches an NTP server; by hand meanwhile: date -s 'YYYY-MM-DD HH:MM:SS'")]
    if abs(off) > SKEW_WARN:
        return [Finding("clock skew", WARN, f"the clock is {how}", "timedatectl set-ntp true")]
    return [Finding("clock skew", OK, how)]


def checks(cfg: Any, timeout: float) -> list[tuple[str, Callable[[], list[Finding]]]]:
    """The checks this module adds to doctor's list, with their names."""
    return [
        ("certificate", lambda: check_certificate(cfg)),
        ("broker ACL", lambda: check_broker_accounts(cfg)),
        ("hardening", check_unit_hardening),
        ("service access", lambda: check_service_access(cfg)),
        ("clock skew", lambda: check_clock_skew(cfg, timeout)),
    ]
