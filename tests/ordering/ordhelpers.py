"""Helpers for the ordering tests (a module of its own: `conftest` names clash across folders)."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from realparts import free_port, wait_for  # noqa: F401 - re-exported to the ordering tests

from gateway.config import parse

TABLES = ("A1", "A2", "B1")


def gateway_config(tmp_path: Path, extra: str = "", store_id: str = "sh-001") -> Any:
    """Return a config for an in-process gateway (no brokers needed: uplink off).

    The board's clock counts as synchronised through ``tmp_path/synchronized`` (delete it to test an
    untrusted clock), unless ``extra`` has a ``[staff]`` section of its own.
    """
    tmp_path.mkdir(parents=True, exist_ok=True)
    synced = tmp_path / "synchronized"
    synced.touch()
    if "[staff]" not in extra:
        extra = f'{extra}\n[staff]\nclock_sync_files = ["{synced.as_posix()}"]\n'
    text = f"""
[store]
id = "{store_id}"
data_dir = "{(tmp_path / 'data').as_posix()}"

[local_mqtt]
port = {free_port()}

[uplink]
enabled = false

[web]
listen = "127.0.0.1:{free_port()}"
public_host = "order.test"
{extra}
"""
    return parse(tomllib.loads(text))


PASSWORD = "correct horse battery"  # test password of managers, technicians and auditors


class Authenticator:
    """A staff member's authenticator app: each ``code()`` is of a newer time step (codes work once)."""

    def __init__(self, secret: str) -> None:
        import pyotp

        self.totp = pyotp.TOTP(secret)
        self.step: int | None = None

    def code(self) -> str:
        import time

        if time.time() % 30 > 28.5:  # not at the edge of a step: the server may already be in the next one
            time.sleep(1.6)
        now = int(time.time() // 30)
        step = now - 1 if self.step is None else self.step + 1
        if step > now + 1:  # used up the window: wait for the next step
            time.sleep((step - 1) * 30 - time.time() + 0.2)
            return self.code()
        self.step = step
        return self.totp.generate_otp(step)


def add_privileged(svc: Any, name: str, role: str = "manager", password: str = PASSWORD) -> Authenticator:
    """Enrol a manager/technician/auditor (password + TOTP) through the store; return their authenticator."""
    from gateway.staff import accounts

    cipher = svc.gw.privacy.cipher  # TOTP secrets are field-encrypted with the keyring's keys
    return Authenticator(svc.writer.call(lambda c: accounts.enrol(c, name, role, password, "test", cipher=cipher)))


def csrf(client: Any, path: str = "/staff/") -> str:
    """The CSRF token of the staff form at ``path`` (a Flask test client)."""
    html = client.get(path).get_data(as_text=True)
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def staff_login(c: Any, name: str, secret: str, code: str = "", addr: str = "10.20.0.1") -> Any:
    """Sign ``c`` in through the form (PIN, or password and code)."""
    page = c.get("/staff/login", environ_base={"REMOTE_ADDR": addr}).get_data(as_text=True)
    tok = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    return c.post("/staff/login", data={"name": name, "pin": secret, "code": code, "csrf_token": tok},
                  environ_base={"REMOTE_ADDR": addr})


def phone_address(d: str) -> str:
    """A stable address per phone id (on the store's Wi-Fi every phone has its own address)."""
    import zlib

    n = zlib.crc32(d.encode())
    return f"10.{(n >> 16) & 255}.{(n >> 8) & 255}.{max(1, n & 255)}"


class Diner:
    """A phone at a table, driven through the no-JS forms of the test client."""

    def __init__(self, client: Any, svc: Any, table: str, d: str = "phone01", lang: str = "en") -> None:
        self.client, self.svc, self.table, self.d, self.lang = client, svc, table, d, lang
        self.token = svc.token_for(table)

    @property
    def url(self) -> str:
        return f"/t/{self.token}?d={self.d}&lang={self.lang}"

    def page(self) -> Any:
        return self.client.get(self.url)

    def form(self, **fields: Any) -> dict[str, Any]:
        return {"csrf": self.svc.form_token(self.token), "d": self.d, "lang": self.lang, **fields}

    def add(self, item: str, qty: int = 1, note: str = "", extra: dict[str, str] | None = None, **opts: Any) -> Any:
        data = self.form(item=item, qty=str(qty), note=note, **(extra or {}))
        for group, choice in opts.items():
            data[f"opt_{group}"] = choice
        return self.client.post(f"/t/{self.token}/add", data=data)

    def idem(self) -> str:
        html = self.page().get_data(as_text=True)
        m = re.search(r'name="idem" value="([^"]+)"', html)
        assert m, "no send form on the page"
        return m.group(1)

    def send(self, idem: str | None = None) -> Any:
        return self.client.post(f"/t/{self.token}/submit", data=self.form(idem=idem or self.idem()))

    def state(self) -> dict[str, Any]:
        return self.client.get(f"/t/{self.token}/state.json?d={self.d}").get_json()




from realparts import CHROMIUM_ARGS  # noqa: E402,F401  (re-exported for the browser tests)


def run_cli(group: Any, *args: str, input: str | None = None) -> str:  # noqa: A002
    """Run one of the ordering click groups in-process; return its output (fails on a non-zero exit)."""
    from click.testing import CliRunner

    result = CliRunner().invoke(group, list(args), input=input, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def enrol_cli(config: Path, tmp_path: Path, name: str, role: str, password: str) -> Any:
    """Add a privileged member (password + TOTP) through `storegw staff add`; return their pyotp TOTP."""
    import pyotp

    from gateway.cli import ordering as cli

    pw = tmp_path / f"{name}.pw"
    pw.write_text(password + "\n")
    out = run_cli(cli.staff, "add", name, "--role", role, "--password-file", str(pw), "--config", str(config))
    return pyotp.parse_uri(re.search(r"otpauth://\S+", out).group(0))


def prepare_store(config: Path, tables: tuple[str, ...] = TABLES, staff: tuple[tuple[str, str], ...] = ()) -> None:
    """Import the sample menu, add tables and staff (PIN 246813) into a gateway's database via the CLI."""
    from gateway.cli import ordering as cli

    run_cli(cli.menu, "import", "--sample", "--config", str(config))
    run_cli(cli.tables, "add", *tables, "--config", str(config))
    for name, role in staff:
        run_cli(cli.staff, "add", name, "--role", role, "--pin-stdin", "--config", str(config), input="246813\n")


def table_url(config: Path, table: str) -> str:
    """Return a table's QR URL (`storegw tables url`)."""
    from gateway.cli import ordering as cli

    return run_cli(cli.tables, "url", table, "--config", str(config)).strip()


def devices_toml(*printers: tuple[str, str, str], fast: bool = True) -> str:
    """Return [[devices]] tables for ESC/POS printers: (id, url, station)."""
    out = []
    for dev_id, url, station in printers:
        timing = 'status_timeout = "500ms"\nconfirm_timeout = "2s"\npoll = "200ms"\n' if fast else ""
        out.append(f'[[devices]]\nid = "{dev_id}"\nkind = "escpos"\nport = "{url}"\nstation = "{station}"\n{timing}')
    return "\n".join(out)


def run_command(config: Path) -> list[str]:
    """Return `storegw run` for this config."""
    import sys

    return [sys.executable, "-m", "gateway", "run", "--config", str(config)]


def start_gateway(gateway_process: Any, config: Path) -> Any:
    """Start a gateway subprocess (tests/conftest.py GatewayProcess) with ``run_command``."""
    import os
    import subprocess

    gp = gateway_process(config)
    cmd = run_command(config)
    root = Path(__file__).resolve().parents[2]

    def start(wait: bool = True) -> Any:
        env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=str(root))
        gp.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(gp.log, "ab"),  # noqa: SIM115
                                   env=env, cwd=root)
        if wait:
            wait_for(gp._healthy, timeout=30, what="gateway health endpoint")
        return gp
    gp.start = start
    return gp


class HttpDiner:
    """A no-JS phone talking HTTP to a real gateway (urllib; redirects are not followed)."""

    def __init__(self, url: str, d: str = "httpdiner1") -> None:
        from urllib.parse import urlsplit

        parts = urlsplit(url)
        self.origin = f"{parts.scheme}://{parts.netloc}"
        self.path = parts.path
        self.d = d

    def _open(self, method: str, path: str, data: dict[str, str] | None = None) -> tuple[int, str, dict[str, str]]:
        import urllib.error
        import urllib.parse
        import urllib.request

        class NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *args: Any, **kwargs: Any) -> None:
                return None

        opener = urllib.request.build_opener(NoRedirect)
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        req = urllib.request.Request(self.origin + path, data=body, method=method)
        try:
            with opener.open(req, timeout=10) as r:
                return r.status, r.read().decode(), dict(r.headers)
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode(), dict(err.headers)

    def page(self) -> str:
        status, html, _ = self._open("GET", f"{self.path}?d={self.d}&lang=en")
        assert status == 200, status
        return html

    def fields(self) -> dict[str, str]:
        html = self.page()
        return {"csrf": re.search(r'name="csrf" value="([^"]+)"', html).group(1),
                "idem": (re.search(r'name="idem" value="([^"]+)"', html) or [None, ""])[1]}

    def post(self, action: str, **fields: str) -> tuple[int, str]:
        f = self.fields()
        data = {"csrf": f["csrf"], "d": self.d, "lang": "en", **fields}
        status, body, _ = self._open("POST", f"{self.path}/{action}", data)
        return status, body

    def send(self) -> tuple[int, str]:
        f = self.fields()
        status, body, headers = self._open("POST", f"{self.path}/submit",
                                           {"csrf": f["csrf"], "d": self.d, "lang": "en", "idem": f["idem"]})
        return status, headers.get("Location", body)

    def state(self) -> dict[str, Any]:
        import json

        status, body, _ = self._open("GET", f"{self.path}/state.json?d={self.d}")
        assert status == 200, (status, body)
        return json.loads(body)


# ---------------------------------------------------------------------------- fixtures
# Shared by the ordering, members and staff tests (each conftest imports them).

@pytest.fixture
def make_gw(tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """Build and start in-process gateways (web off) with the sample menu and tables A1, A2, B1."""
    started: list[Any] = []

    def make(extra: str = "", *, sample: bool = True, sub: str = "gw") -> Any:
        cfg = gateway_config(tmp_path / sub, extra)
        from gateway.app import build

        gw = build(cfg)
        gw.start(web=False, devices=False)
        started.append(gw)
        svc = gw.services["ordering"]
        if sample:
            from gateway.ordering.menu import sample_document

            svc.import_menu(sample_document())
            for t in TABLES:
                svc.add_table(t)
        return gw

    yield make
    for gw in started:
        gw.stop()


@pytest.fixture
def gw(make_gw: Callable[..., Any]) -> Any:
    """A running gateway with the sample menu (require_open_table = false)."""
    return make_gw()


@pytest.fixture
def svc(gw: Any) -> Any:
    """The ordering service."""
    return gw.services["ordering"]
