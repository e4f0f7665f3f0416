"""Anomaly detectors, pure functions (no clock, no database): sales per hour against a same-weekday x
hour baseline (median/MAD with a volume floor), complaints per day against their own baseline (a
Poisson tail), and the hysteresis that turns verdicts into alert episodes.

Sales (docs/store-health.md, "Anomalies"): for the slot being checked, ``history`` holds the same
weekday and hour of the previous weeks (at least 3). A slot whose median m is under the volume floor
is ``quiet``: never an alarm. Sales swing by the day (a rainy Tuesday is slower all day), so the
baseline is taken on the log scale, where that swing is additive: c = median(ln(1 + x)) and
s = max(1.4826 · MAD of those logs, 0.1). A *slow ordinary* hour is then L = e^(c − 2s) − 1 and a
*busy ordinary* one H = e^(c + 2s) − 1. Part-way through the hour (``fraction`` f gone), n dishes so
far are ``low`` when n ≤ half of f·m and P(Poisson(f·L) ≤ n) ≤ α, ``high`` when n ≥ 1.5·f·m and
P(Poisson(f·H) ≥ n) ≤ α, with α the normal tail of ``z_limit`` (z 4 → 3.2·10⁻⁵). Counting exactly (a
Poisson tail, not a normal approximation) keeps the first minutes of an hour, with few dishes
expected, from alarming. The score shown is z = (ln(1 + n/f) − c) / √(s² + 1/(1 + f·m)).

Complaints: λ = the mean of the baseline days (the single highest day left out when there are 7
or more, so one past surge does not mute the next), at least 0.2 a day. ``surge`` when today's count
n ≥ ``min_count`` and P(X ≥ n | Poisson λ) ≤ p.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import median

MIN_WEEKS = 3  # a slot needs this many past weeks before it is judged
MIN_LOG_SPREAD = 0.1  # a baseline that never varied still has 10 % spread
SLACK = 2.0  # robust spreads between the slot's typical level and the slow (busy) day an alarm must beat


@dataclass(frozen=True)
class Verdict:
    """What a detector says: ``state`` (quiet, normal, low, high, surge), the score and what was expected."""

    state: str
    score: float | None = None  # robust z (sales) or the Poisson tail probability (complaints)
    expected: float = 0.0
    baseline: float = 0.0       # the full slot's median (sales) or λ (complaints)

    @property
    def alarming(self) -> bool:
        """Whether this verdict is an anomaly."""
        return self.state in ("low", "high", "surge")


def sales_verdict(history: Sequence[float], observed: float, fraction: float = 1.0, *, floor: float = 10.0,
                  z_limit: float = 4.0) -> Verdict:
    """Judge ``observed`` dishes after ``fraction`` of an hour against the slot's past weeks."""
    if len(history) < MIN_WEEKS:
        return Verdict("quiet")
    m = float(median(history))
    if m < floor:
        return Verdict("quiet", baseline=m)
    f = min(1.0, max(fraction, 1e-3))
    expected = f * m
    logs = [math.log1p(x) for x in history]
    centre = float(median(logs))
    spread = max(1.4826 * float(median(abs(v - centre) for v in logs)), MIN_LOG_SPREAD)
    z = (math.log1p(observed / f) - centre) / math.sqrt(spread * spread + 1.0 / (1.0 + expected))
    alpha = 0.5 * math.erfc(z_limit / math.sqrt(2.0))
    n = int(observed)
    state = "normal"
    slow = f * math.expm1(centre - SLACK * spread)   # a slow but ordinary day, so far into the hour
    busy = f * math.expm1(centre + SLACK * spread)
    if observed <= 0.5 * expected and poisson_cdf(n, slow) <= alpha:
        state = "low"
    elif observed >= 1.5 * expected and poisson_tail(n, busy) <= alpha:
        state = "high"
    return Verdict(state, round(z, 2), round(expected, 1), m)


def poisson_cdf(n: int, lam: float) -> float:
    """P(X <= n) for X ~ Poisson(lam)."""
    if n < 0:
        return 0.0
    if lam <= 0:
        return 1.0
    log_lam = math.log(lam)
    return min(1.0, sum(math.exp(k * log_lam - lam - math.lgamma(k + 1)) for k in range(n + 1)))


def poisson_tail(n: int, lam: float) -> float:
    """P(X >= n) for X ~ Poisson(lam)."""
    if n <= 0:
        return 1.0
    return max(0.0, 1.0 - poisson_cdf(n - 1, lam))


def complaint_verdict(history: Sequence[int], today: int, *, p: float = 0.001, min_count: int = 3) -> Verdict:
    """Judge today's complaint count against the baseline days."""
    days = sorted(history)
    if len(days) >= 7:
        days = days[:-1]
    lam = max(0.2, sum(days) / len(days)) if days else 0.2
    tail = poisson_tail(today, lam)
    state = "surge" if today >= min_count and tail <= p else "normal"
    return Verdict(state, tail, round(lam, 2), round(lam, 2))


@dataclass
class Hysteresis:
    """Sales verdicts into episodes: raise on an alarming verdict; clear once |z| is back under half the
    limit (or the slot turns quiet). ``step`` returns "raise", "clear" or None."""

    z_limit: float = 4.0
    active: bool = False

    def step(self, v: Verdict) -> str | None:
        """Feed one verdict."""
        if not self.active:
            if v.alarming:
                self.active = True
                return "raise"
            return None
        if v.state == "quiet" or (v.score is not None and abs(v.score) < self.z_limit / 2):
            self.active = False
            return "clear"
        return None
