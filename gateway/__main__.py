"""Allow `python -m gateway` (same as the `storegw` command)."""

from gateway.cli import entry

entry()
