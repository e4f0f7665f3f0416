#!/usr/bin/env bash
# Developer bootstrap: `provisioning/dev.sh demo` runs the demo, `provisioning/dev.sh test` the tests.
# On a fresh Debian 12 / Raspberry Pi OS with only Python >= 3.11 and apt: creates .venv,
# installs storegw with its test extras, and (as root) installs Mosquitto, Chromium, poppler-utils, PostgreSQL and the
# network tools of the Wi-Fi test (nftables, dnsmasq, dhclient) with apt-get.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
VENV=${STOREGW_VENV:-.venv}

need_python() {
  if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "storegw needs Python >= 3.11 (found: $("$PY" --version 2>&1)). Install python3 (Debian 12 has 3.11)." >&2
    exit 1
  fi
}

apt_install() {
  # apt_install PKG... : install Debian packages when missing (root only; otherwise say how).
  local missing=()
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -eq 0 ]; then
    echo "Installing ${missing[*]} with apt-get ..." >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "Missing packages: ${missing[*]}. Install them with: sudo apt-get install ${missing[*]}" >&2
    return 1
  fi
}

venv() {
  need_python
  if [ ! -x "$VENV/bin/python" ]; then
    echo "Creating virtualenv $VENV ..." >&2
    "$PY" -m venv "$VENV" || { apt_install python3-venv && "$PY" -m venv "$VENV"; }
  fi
  local stamp="$VENV/.storegw-installed"
  if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    echo "Installing storegw and its test extras into $VENV ..." >&2
    "$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null
    "$VENV/bin/python" -m pip install -q -e '.[test]'
    touch "$stamp"
  fi
}

case "${1:-}" in
  demo)
    shift
    venv
    exec "$VENV/bin/storegw" demo "$@"
    ;;
  test)
    shift
    apt_install mosquitto chromium systemd poppler-utils nftables dnsmasq-base isc-dhcp-client iproute2 postgresql || echo "Continuing; tests needing the missing parts will fail with a clear message." >&2
    venv
    echo "ruff check and lint-imports (the floors of docs/architecture.md) ..." >&2
    "$VENV/bin/ruff" check .
    "$VENV/bin/lint-imports" --no-cache >/dev/null || "$VENV/bin/lint-imports" --no-cache
    exec "$VENV/bin/python" -m pytest "$@"
    ;;
  *)
    echo "usage: provisioning/dev.sh demo [storegw demo options] | test [pytest options]" >&2
    exit 2
    ;;
esac
