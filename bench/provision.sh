#!/usr/bin/env bash
# Blank board to a passing `storegw doctor`, timed, in a fresh Debian 12 root (what a board is before
# storegw): apt installs (Python, Mosquitto, systemd), pip install storegw from this checkout (as a
# wheel), HQ issues a claim code, `storegw provision init` by flags trades it for the certificate and
# config, `storegw install`, Mosquitto starts, `storegw equipment add`, then `storegw doctor` must pass.
# Untimed after that: systemd-analyze security/verify of the installed unit, the gateway run as the unit
# runs it (storegw user, credentials decrypted) and doctored, `provision init` again, `uninstall`.
#
#   sudo bench/provision.sh [BASE_ROOTFS]
#
# BASE_ROOTFS: a `debootstrap --variant=minbase bookworm DIR http://deb.debian.org/debian` tree (only
# apt, no Python); made in a temporary directory when not given (about a minute, not timed: it stands
# for the blank board). It is copied, never changed. A chroot stands in for the board: systemd is not
# PID 1 there, so units are enabled for the next boot and Mosquitto is started by hand. Ports are
# random (the chroot shares this machine's network). Prints one JSON line last.
set -euo pipefail
cd "$(dirname "$0")/.."
SRC=$(pwd)
[ "$(id -u)" -eq 0 ] || { echo "run as root (chroot, mounts)" >&2; exit 2; }
command -v debootstrap >/dev/null || { echo "needs debootstrap: apt-get install debootstrap" >&2; exit 2; }

WORK=$(mktemp -d /tmp/storegw-provision-XXXXXX)
BASE=${1:-}
if [ -z "$BASE" ]; then
  BASE="$WORK/base"
  echo "debootstrap a minimal Debian 12 into $BASE (not timed) ..." >&2
  debootstrap --variant=minbase bookworm "$BASE" http://deb.debian.org/debian >"$WORK/debootstrap.log" 2>&1
fi
R="$WORK/board"
cp -a "$BASE" "$R"

cleanup() {
  set +e
  for pidfile in "$R"/run/bench-*.pid "$R"/run/mosquitto/mosquitto.pid; do
    [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null
  done
  sleep 0.5
  for m in sys proc dev; do umount -R -l "$R/$m" 2>/dev/null; done
  # --one-file-system: never into a mount still attached; again while the chroot's last processes exit
  for _ in 1 2 3 4 5; do rm -rf --one-file-system "$WORK" 2>/dev/null && [ ! -e "$WORK" ] && break; sleep 1; done
}
trap cleanup EXIT

mount -t proc proc "$R/proc"
mount --rbind /dev "$R/dev"
mount -t sysfs sysfs "$R/sys"
cp /etc/resolv.conf "$R/etc/resolv.conf"
[ -f /etc/ssl/certs/ca-certificates.crt ] && mkdir -p "$R/usr/local/share/host-ca" \
  && cp /etc/ssl/certs/ca-certificates.crt "$R/usr/local/share/host-ca/ca.crt"
mkdir -p "$R/opt/storegw/src"
git ls-files -z | tar --null -T - -cf - | tar -xf - -C "$R/opt/storegw/src"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
HQ_PORT=$(free_port)
LOCAL_PORT=$(free_port)

cat >"$R/opt/storegw/run.sh" <<EOF
#!/bin/sh
set -eu
export DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8 PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
[ -f /usr/local/share/host-ca/ca.crt ] && export PIP_CERT=/usr/local/share/host-ca/ca.crt
t0=\$(date +%s.%N)
apt-get update -qq
apt-get install -y -qq --no-install-recommends python3 python3-venv mosquitto systemd ca-certificates >/dev/null
t1=\$(date +%s.%N)
python3 -m venv /opt/storegw/venv
/opt/storegw/venv/bin/pip install -q --disable-pip-version-check /opt/storegw/src
t2=\$(date +%s.%N)
S=/opt/storegw/venv/bin/storegw
# HQ (stands in on the same machine): its broker, a claim code, the provisioner answering one claim
printf 'listener $HQ_PORT 127.0.0.1\nallow_anonymous true\nuser root\n' >/opt/hq-broker.conf
mosquitto -c /opt/hq-broker.conf >/dev/null 2>&1 & echo \$! >/run/bench-hq-broker.pid
sleep 0.5
CODE=\$(\$S hq claim --store sh-001 --name "Bench store" --timezone Asia/Shanghai --hq-host 127.0.0.1 \
  --hq-port $HQ_PORT --no-tls --dir /var/lib/storegw-hq | sed -n 's/^claim code for store sh-001: \([A-Z0-9-]*\).*/\1/p')
\$S hq provisioner --port $HQ_PORT --count 1 --dir /var/lib/storegw-hq & echo \$! >/run/bench-hq-prov.pid
sleep 1
# The technician: three answers, by flags (stdin is not a terminal: nothing is asked)
\$S provision init --store-id sh-001 --hq-host 127.0.0.1 --hq-port $HQ_PORT --no-hq-tls --claim "\$CODE" \
  --local-port $LOCAL_PORT --web-listen 127.0.0.1:$(free_port) --time-server "" </dev/null
\$S install
mkdir -p /run/mosquitto && chown mosquitto: /run/mosquitto
mosquitto -d -c /etc/mosquitto/mosquitto.conf
sleep 0.5
\$S equipment add fridge-1 --config /etc/storegw/storegw.toml
\$S doctor --config /etc/storegw/storegw.toml
t3=\$(date +%s.%N)
# The gateway as the unit would run it: the storegw user, its credentials decrypted into a private directory
mkdir -m 0700 /run/creds
for c in kek hq-key mqtt-local; do systemd-creds decrypt --name=\$c /etc/storegw/credentials/\$c.cred /run/creds/\$c; done
chown -R storegw: /run/creds
runuser -u storegw -- env CREDENTIALS_DIRECTORY=/run/creds \$S run --config /etc/storegw/storegw.toml \
  >/run/bench-gw.log 2>&1 & echo \$! >/run/bench-gw.pid
for _ in \$(seq 60); do \$S status --config /etc/storegw/storegw.toml >/dev/null 2>&1 && break; sleep 1; done
\$S doctor --config /etc/storegw/storegw.toml | grep -E '^  (ok|warn|FAIL) +service {2,}' | sed 's/^/RUNNING /'
kill \$(cat /run/bench-gw.pid) 2>/dev/null || { echo "the gateway exited:"; grep -v ' INFO ' /run/bench-gw.log | tail -20; }
sleep 2
rcv=0; systemd-analyze verify /etc/systemd/system/storegw.service >/run/bench-verify.txt 2>&1 || rcv=\$?
cat /run/bench-verify.txt
echo "VERIFY \$rcv \$(grep -c storegw.service /run/bench-verify.txt || true)"
# Running it again on the installed board (credentials sealed, data the storegw user's) is safe
\$S provision init --store-name "Bench store, again" </dev/null
echo "RERUN \$(find /var/lib/storegw /var/lib/storegw-keys ! -user storegw | wc -l)"
\$S doctor --config /etc/storegw/storegw.toml >/dev/null && echo "DOCTOR_AGAIN ok"
cp /etc/systemd/system/storegw.service /run/bench-unit.service   # as installed, for the score below
\$S uninstall
if [ -f /var/lib/storegw/storegw.db ] && [ ! -f /etc/systemd/system/storegw.service ]; then echo "UNINSTALL kept-data"; fi
echo "TIMES \$t0 \$t1 \$t2 \$t3"
EOF
chmod +x "$R/opt/storegw/run.sh"
START=$(date +%s.%N)
set +e
env -i HOME=/root TERM=dumb PATH=/usr/sbin:/usr/bin:/sbin:/bin chroot "$R" /opt/storegw/run.sh 2>&1 | tee "$WORK/run.log" | grep -v " INFO " >&2
RC=${PIPESTATUS[0]}
set -e
END=$(date +%s.%N)
read -r _ T0 T1 T2 T3 < <(grep '^TIMES' "$WORK/run.log" || echo "TIMES 0 0 0 0")
UNIT="$R/run/bench-unit.service"
SCORE=$( (systemd-analyze security --offline=true "$UNIT" 2>/dev/null || true) \
  | sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')
ENC=$(grep -c '^LoadCredentialEncrypted=' "$UNIT" 2>/dev/null || true)
NOT_STOREGW=$(sed -n 's/^RERUN \([0-9]*\)$/\1/p' "$WORK/run.log")  # files left to root by the re-run
SERVICE=$(sed -n 's/^RUNNING  *\([a-zA-Z]*\) *service *\(.*\)$/\1: \2/p' "$WORK/run.log")  # doctor on the running gateway
AGAIN=$(grep -c '^DOCTOR_AGAIN ok' "$WORK/run.log" || true)
KEPT=$(grep -c '^UNINSTALL kept-data' "$WORK/run.log" || true)
VERIFY=$(sed -n 's/^VERIFY \([0-9]*\) \([0-9]*\)$/\1,\2/p' "$WORK/run.log")  # exit code, lines naming the unit
python3 - "$RC" "$START" "$END" "$T0" "$T1" "$T2" "$T3" "${SCORE:-null}" "$ENC" "${VERIFY:-failed}" "${NOT_STOREGW:-x}" "$AGAIN" "$KEPT" "$SERVICE" <<'EOF'
import json, sys
rc, start, end, t0, t1, t2, t3, score, enc, verify, not_storegw, again, kept, service = sys.argv[1:]
f = lambda a, b: round(float(b) - float(a), 1)
print(json.dumps({"bench": "provision", "doctor_passed": rc == "0", "total_s": f(start, end),
                  "apt_s": f(t0, t1), "pip_s": f(t1, t2), "provision_install_doctor_s": f(t2, t3),
                  "under_10_min": float(end) - float(start) < 600, "unit_exposure": float(score) if score != "null" else None,
                  "encrypted_credentials": int(enc or 0), "verify_clean": verify == "0,0",
                  "rerun_safe": not_storegw == "0" and again == "1", "uninstall_kept_data": kept == "1",
                  "gateway_running_as_storegw": service}))
EOF
exit "$RC"
