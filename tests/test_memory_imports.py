"""The daemon's start-up import set stays lean, and it runs with glibc's thread caches off
(docs/architecture.md, Memory).

`storegw run` started at 73 MB of the board's 80 MB budget, 10 MB of it python-escpos's Pillow,
qrcode, python-barcode and PyYAML loaded for tickets that never needed an image. The modules of
``gateway.memory.LAZY_MODULES`` are imported only on the paths that need them; these tests fail when
new code imports one at module level again.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
from realparts import ROOT, wait_for


def test_a_started_daemon_has_loaded_no_lazy_module(broker, write_config, gateway_process, monkeypatch):
    monkeypatch.setenv("STOREGW_TRACEMALLOC", "0")  # SIGUSR2 logs a memory line, no tracing
    gw = gateway_process(write_config(local_port=broker.port, hq_port=broker.port)).start()
    gw.health()
    gw.proc.send_signal(signal.SIGUSR2)
    line = wait_for(lambda: next((ln for ln in gw.log.read_text().splitlines() if "memory: RSS" in ln), None),
                    timeout=20, what="the gateway's memory line")
    assert "lazy modules loaded: none" in line, line
    assert "SQLite connections" in line
    # re-executed in place (same PID, the one that answered) with the malloc tunable
    environ = Path(f"/proc/{gw.proc.pid}/environ").read_bytes().split(b"\0")
    assert b"GLIBC_TUNABLES=glibc.malloc.tcache_count=0" in environ


@pytest.mark.parametrize(("argv", "environ", "expected"), [
    (["storegw", "run", "--config", "x.toml"], {}, "glibc.malloc.tcache_count=0"),
    (["storegw", "-v", "demo"], {"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"},
     "glibc.malloc.arena_max=2:glibc.malloc.tcache_count=0"),
    (["storegw", "run"], {"GLIBC_TUNABLES": "glibc.malloc.tcache_count=7"}, None),  # the operator's choice
    (["storegw", "run"], {"STOREGW_MALLOC_REEXEC": "1"}, None),  # never twice
    (["storegw", "status", "--config", "run"], {}, None),  # only the daemons
    (["storegw", "--help"], {}, None),
])
def test_only_the_daemons_re_execute_with_the_tunables(argv, environ, expected):
    from gateway import memory

    env = memory.tuned_environment(argv, environ)
    assert (env and env["GLIBC_TUNABLES"]) == expected


def test_rendering_a_ticket_and_building_the_web_app_load_no_lazy_module():
    code = (
        "import sys\n"
        "import gateway.cli, gateway.app, gateway.jobs, web\n"
        "from devices.escpos import render\n"
        "render.render(render.self_test_doc('kitchen'))\n"
        "from gateway import memory\n"
        "print(','.join(memory.lazy_loaded()))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "", f"imported at start or for a ticket: {out.stdout.strip()}"


def test_the_unknown_name_dummy_hash_has_the_pin_parameters():
    from argon2 import PasswordHasher

    from gateway.staff import accounts

    assert not PasswordHasher(**accounts.ARGON2).check_needs_rehash(accounts._DUMMY)
    assert accounts._verify(None, "0000-not-a-pin") is False  # same work as a known name, never a match
