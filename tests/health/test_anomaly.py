"""Anomalies, quiet by default: 8 weeks of replayed synthetic hourly sales (lunch and dinner peaks,
weekends x 1.4, 15 % day-to-day noise, Poisson arrivals within each hour) checked every 5 minutes as the
gateway does. A >= 80 % drop in a busy hour is flagged within that hour; clean weeks raise at most one
episode a week; a complaint surge is flagged and a normal day is not."""

from __future__ import annotations

import random

from gateway.health.anomaly import Hysteresis, complaint_verdict, poisson_tail, sales_verdict

WEEKS = 8
TICKS = 12  # every 5 minutes


def level(weekday: int, hour: int) -> float:
    """Mean dishes per hour: closed at night, lunch and dinner peaks, busier weekends."""
    if hour < 10 or hour > 21:
        return 0.5
    base = {10: 6, 11: 35, 12: 60, 13: 40, 14: 12, 15: 6, 16: 8, 17: 30, 18: 70, 19: 65, 20: 35, 21: 12}[hour]
    return base * (1.4 if weekday >= 5 else 1.0)


def poisson(rng: random.Random, lam: float) -> int:
    # Knuth for small means, normal approximation above
    if lam > 50:
        return max(0, round(rng.gauss(lam, lam ** 0.5)))
    limit, k, p = pow(2.718281828459045, -lam), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def synth(seed: int, drops: dict[tuple[int, int, int], float]) -> list[list[list[float]]]:
    """weeks x 7 x 24 lists of arrival times (fraction of the hour) per hour."""
    rng = random.Random(seed)
    out = []
    for w in range(WEEKS):
        week = []
        for d in range(7):
            day_factor = max(0.5, rng.gauss(1.0, 0.15))
            day = []
            for h in range(24):
                lam = level(d, h) * day_factor * drops.get((w, d, h), 1.0)
                day.append(sorted(rng.random() for _ in range(poisson(rng, lam))))
            week.append(day)
        out.append(week)
    return out


def replay(series: list[list[list[float]]]) -> list[tuple[int, int, int, int]]:
    """Run the detector every 5 minutes over weeks 3..8; return raised episodes (week, day, hour, tick)."""
    raised = []
    state = Hysteresis()
    for w in range(3, WEEKS):
        for d in range(7):
            for h in range(24):
                history = [len(series[pw][d][h]) for pw in range(w)]
                arrivals = series[w][d][h]
                for t in range(1, TICKS + 1):
                    f = t / TICKS
                    observed = sum(1 for a in arrivals if a < f)
                    if state.step(sales_verdict(history, observed, f)) == "raise":
                        raised.append((w, d, h, t))
    return raised


def test_drop_in_a_busy_hour_is_flagged_within_the_hour_and_clean_weeks_stay_quiet() -> None:
    drop = (7, 5, 18)  # week 8, Saturday 18:00: 90 % fewer dishes
    drop2 = (6, 2, 12)  # week 7, Wednesday noon: 80 % fewer
    worst = 0
    for seed in range(5):
        series = synth(seed, {drop: 0.1, drop2: 0.2})
        raised = replay(series)
        flagged = {(w, d, h) for w, d, h, _ in raised}
        assert drop in flagged and drop2 in flagged, (seed, raised)
        for w, d, h, t in raised:
            if (w, d, h) in (drop, drop2):
                assert t < TICKS, f"flagged only at the end of the hour ({t}/{TICKS})"
        per_week: dict[int, int] = {}
        for w, d, h, _ in raised:
            if (w, d, h) not in (drop, drop2):
                per_week[w] = per_week.get(w, 0) + 1
        worst = max(worst, *per_week.values(), 0)
    assert worst <= 1, f"false alarms in a clean week: {worst}"


def test_quiet_slots_and_missing_history_never_alarm() -> None:
    assert sales_verdict([3, 4, 2, 5], 0, 1.0).state == "quiet"  # under the volume floor
    assert sales_verdict([60, 62], 0, 1.0).state == "quiet"  # two weeks of history are not a baseline
    assert sales_verdict([60, 62, 58, 61], 0, 1.0).state == "low"
    assert sales_verdict([60, 62, 58, 61], 200, 1.0).state == "high"
    assert sales_verdict([60, 62, 58, 61], 55, 1.0).state == "normal"


def test_complaint_surge_is_flagged() -> None:
    assert abs(poisson_tail(3, 1.0) - (1 - 2.5 * 2.718281828459045 ** -1)) < 1e-12
    normal_days = [0, 1, 0, 2, 1, 0, 0, 1, 3, 0, 1, 0, 0, 2, 1, 0, 1, 0, 0, 1, 0, 2, 0, 1, 0, 0, 1, 8]
    assert complaint_verdict(normal_days, 2).state == "normal"
    assert complaint_verdict(normal_days, 3).state == "normal"  # a busy day, not a surge
    v = complaint_verdict(normal_days, 7)
    assert v.state == "surge" and v.score is not None and v.score < 0.001
    # a store that never has complaints: four in a day is a surge (P = 5.6e-5 at the 0.2/day floor)
    assert complaint_verdict([0] * 28, 4).state == "surge"
    assert complaint_verdict([0] * 28, 2).state == "normal"  # min_count: 2 is never a surge
