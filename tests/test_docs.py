"""Docs are tests: every config key, device option and CLI command is documented."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest

from gateway import config
from gateway.cli import main

DOCS = Path(__file__).resolve().parent.parent / "docs"
ROOT = DOCS.parent


def _all_docs() -> str:
    return "\n".join(p.read_text(encoding="utf-8") for p in [*DOCS.glob("*.md"), ROOT / "README.md"])


@pytest.mark.parametrize("key", [k for k, _ in config.iter_keys()])
def test_every_config_key_is_documented(key):
    text = (DOCS / "configuration.md").read_text(encoding="utf-8")
    assert f"`{key}`" in text, f"{key} is missing from docs/configuration.md"


def _commands(group: click.Group, prefix: str = "storegw") -> list[tuple[str, click.Command]]:
    out = []
    for name, cmd in sorted(group.commands.items()):
        path = f"{prefix} {name}"
        out.append((path, cmd))
        if isinstance(cmd, click.Group):
            out.extend(_commands(cmd, path))
    return out


@pytest.mark.parametrize(("path", "cmd"), _commands(main), ids=lambda v: v if isinstance(v, str) else "")
def test_every_command_is_documented_with_an_example(path, cmd):
    assert cmd.help, f"{path} has no help"
    if not isinstance(cmd, click.Group):
        assert "example" in cmd.help.lower(), f"{path} --help has no example"
    assert re.search(re.escape(path) + r"\b", _all_docs()), f"`{path}` is not mentioned in README.md or docs/"


def test_every_device_option_is_documented():
    from devices import registry

    text = (DOCS / "devices.md").read_text(encoding="utf-8") if (DOCS / "devices.md").exists() else ""
    text += "".join(p.read_text(encoding="utf-8") for p in DOCS.glob("devices-*.md"))
    missing = []
    for kind in registry.KINDS:
        spec = registry.spec(kind)
        if spec is None:
            continue
        for option in spec.options:
            if f"`{option}`" not in text:
                missing.append(f"{kind}.{option}")
    assert not missing, f"device options missing from docs/devices*.md: {missing}"
