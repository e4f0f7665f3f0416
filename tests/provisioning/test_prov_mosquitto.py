"""The store broker's generated accounts on a real Mosquitto: a device publishing as another is not
delivered, anonymous clients are refused, the gateway (with its password from its systemd credential)
reads each device's own topics; `equipment add` prints what the device needs."""

from __future__ import annotations

import re
import time

from provhelpers import BoardBroker, provision
from realparts import free_port, wait_for

from gateway.spine.mqtt import new_client
from provisioning import mosquitto


def _client(port: int, user: str | None, password: str | None, client_id: str) -> tuple[object, list]:
    rc: list = []
    c = new_client(client_id, clean=True)
    if user:
        c.username_pw_set(user, password)
    c.on_connect = lambda cl, u, f, reason, p=None: rc.append(reason)
    c.connect("127.0.0.1", port)
    c.loop_start()
    wait_for(lambda: rc, timeout=10, what=f"{client_id} CONNACK")
    return c, rc


def test_hash_is_what_mosquitto_reads():
    hashed = mosquitto.hash_password("s3cret")
    assert re.fullmatch(r"\$7\$1000\$[A-Za-z0-9+/=]{16}\$[A-Za-z0-9+/=]{88}", hashed)
    assert mosquitto.check_password("s3cret", hashed) and not mosquitto.check_password("other", hashed)


def test_each_device_publishes_only_as_itself(tmp_path):
    port = free_port()
    board = provision(tmp_path, local_port=port)
    board.storegw("provision", "mosquitto", "--config", str(board.config))
    out = board.storegw("equipment", "add", "fridge-1", "--config", str(board.config)).stdout
    pw1 = re.search(r"password\s+(\S+)", out).group(1)
    assert "devices/fridge-1/telemetry" in out and "username       fridge-1" in out
    pw2 = re.search(r"password\s+(\S+)",
                    board.storegw("equipment", "add", "fryer-1", "--config", str(board.config)).stdout).group(1)
    again = board.storegw("equipment", "add", "fridge-1", "--config", str(board.config), check=False)
    assert again.returncode == 1 and "--replace" in again.stderr
    passwd = (tmp_path / "mosquitto" / "passwd").read_text()
    assert pw1 not in passwd and pw2 not in passwd  # hashes only
    broker = BoardBroker(board, port).start()
    clients = []
    try:
        got: list[str] = []
        gw_pw = (board.credentials / "mqtt-local").read_text().strip()
        gw, rc = _client(port, "storegw", gw_pw, "gw")
        clients.append(gw)
        assert not rc[0].is_failure
        gw.on_message = lambda c, u, m: got.append(f"{m.topic} {m.payload.decode()}")
        gw.subscribe("devices/#", qos=1)
        time.sleep(0.3)
        fridge, rc = _client(port, "fridge-1", pw1, "fridge-1")
        clients.append(fridge)
        assert not rc[0].is_failure
        fridge.publish("devices/fryer-1/telemetry", b'{"oil_c": 999}', qos=1).wait_for_publish(5)  # as B
        fridge.publish("devices/fridge-1/telemetry", b'{"temp_c": 4}', qos=1).wait_for_publish(5)  # as itself
        fryer, rc = _client(port, "fryer-1", pw2, "fryer-1")
        clients.append(fryer)
        fryer.publish("devices/fryer-1/telemetry", b'{"oil_c": 175}', qos=1).wait_for_publish(5)
        wait_for(lambda: len(got) >= 2, timeout=10, what="own topics delivered")
        time.sleep(0.5)
        assert sorted(got) == ['devices/fridge-1/telemetry {"temp_c": 4}', 'devices/fryer-1/telemetry {"oil_c": 175}']
        anon, rc = _client(port, None, None, "anon")
        clients.append(anon)
        assert rc[0].is_failure  # anonymous refused
        wrong, rc = _client(port, "fridge-1", "guess", "guesser")
        clients.append(wrong)
        assert rc[0].is_failure
        # a removed account is refused after the reload
        board.storegw("equipment", "remove", "fryer-1", "--config", str(board.config))
        broker.proc.send_signal(1)  # SIGHUP, what reload_broker sends to the system's Mosquitto
        time.sleep(0.5)
        gone, rc = _client(port, "fryer-1", pw2, "fryer-again")
        clients.append(gone)
        assert rc[0].is_failure
    finally:
        for c in clients:
            c.loop_stop()
        broker.stop()


def test_device_ids_that_would_break_the_acl_are_refused(tmp_path):
    board = provision(tmp_path)
    for bad in ("a/b", "#", "fridge 1", "storegw"):
        res = board.storegw("equipment", "add", bad, "--config", str(board.config), check=False)
        assert res.returncode == 1, bad
    assert not (tmp_path / "mosquitto" / "acl").exists() or "a/b" not in (tmp_path / "mosquitto" / "acl").read_text()

