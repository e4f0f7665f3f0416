"""The uplink's reconnect schedule (gateway.spine.mqtt.ReconnectPolicy): decorrelated jitter between
base and cap, at most one CONNECT a second and 12 a minute per client id, and a longer pause when the
broker says it is busy (MQTT 5 reason codes)."""

from __future__ import annotations

import random

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from gateway.spine.mqtt import ReconnectPolicy, is_busy


def schedule(policy: ReconnectPolicy, n: int, *, busy: bool = False, start: float = 1000.0) -> list[float]:
    """Attempt times of n failed CONNECTs in a row, each made as soon as allowed."""
    times, now = [], start
    for _ in range(n):
        policy.attempted(now)
        times.append(now)
        now = policy.next_attempt(now, busy=busy)
    return times


def test_delays_stay_between_base_and_cap_and_grow_decorrelated() -> None:
    for seed in range(50):
        policy = ReconnectPolicy(1.0, 30.0, rng=random.Random(seed))
        times = schedule(policy, 40)
        gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
        for i, gap in enumerate(gaps, start=1):
            assert gap >= 1.0
            # never above the cap, unless the 12-a-minute limit holds the attempt back
            assert gap <= 30.0 + 1e-6 or (i >= 12 and abs(times[i] - (times[i - 12] + 60.0)) < 1e-6), gaps
    # spread: 1,000 stores losing the broker at once do not come back in one wave
    firsts = [ReconnectPolicy(1.0, 30.0, rng=random.Random(s)).delay(0.0) for s in range(1000)]
    assert min(firsts) >= 1.0 and max(firsts) <= 3.0
    assert len({round(f, 1) for f in firsts}) > 15


def test_at_most_one_connect_a_second_and_twelve_a_minute() -> None:
    # a tiny base and cap would retry every few ms: the per-client-id limits hold it back
    policy = ReconnectPolicy(0.01, 0.05, rng=random.Random(1))
    times = schedule(policy, 60)
    assert all(b - a >= 1.0 - 1e-9 for a, b in zip(times, times[1:], strict=False))
    for i in range(len(times)):
        window = [t for t in times if times[i] <= t < times[i] + 60.0]
        assert len(window) <= 12


def test_connected_starts_over_from_base_but_keeps_the_rate_limits() -> None:
    policy = ReconnectPolicy(1.0, 30.0, rng=random.Random(3))
    schedule(policy, 10)
    policy.connected()
    assert 1.0 <= policy.delay(5000.0) <= 3.0
    flapping = ReconnectPolicy(0.01, 0.02, rng=random.Random(3))
    times = schedule(flapping, 13)
    flapping.connected()
    assert times[-1] - times[0] >= 60.0  # the 13th CONNECT waited for the minute to pass


def test_busy_broker_gets_a_longer_pause() -> None:
    policy = ReconnectPolicy(1.0, 30.0, rng=random.Random(4))
    delays = [policy.delay(0.0, busy=True) for _ in range(20)]
    assert all(30.0 <= d <= 60.0 for d in delays)
    assert is_busy(ReasonCode(PacketTypes.CONNACK, identifier=0x97))  # quota exceeded
    assert is_busy(ReasonCode(PacketTypes.CONNACK, identifier=0x89))  # server busy
    assert is_busy(ReasonCode(PacketTypes.DISCONNECT, identifier=0x9F))  # connection rate exceeded
    assert not is_busy(ReasonCode(PacketTypes.CONNACK, identifier=0x87))  # not authorized: not "busy"
    assert not is_busy(0)
