"""Side-by-side timing that agrees with itself: every variant runs once per round, in an order that rotates
from round to round, and a ratio is the median of the per-round ratios with its interquartile range.

Why per-round ratios: on a shared 2-core machine the load drifts over a run. Two variants measured in the
same round see nearly the same load, so their ratio cancels most of it, while the ratio of two separate
medians does not. Rotating the order keeps a variant from always running first (cold caches, a DataLoader's
fresh workers) or last.
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Callable


def interleave(variants: dict[str, Callable[[], float]], rounds: int) -> dict[str, list[float]]:
    """Each variant's measurement per round, the order rotated by one each round."""
    names = list(variants)
    out: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            out[name].append(variants[name]())
    return out


@dataclass(frozen=True)
class Spread:
    median: float
    q1: float
    q3: float
    low: float
    high: float
    n: int

    def text(self, digits: int = 2) -> str:
        if self.n < 2:
            return f"{self.median:.{digits}f} (one round: no spread)"
        return (f"{self.median:.{digits}f} (IQR {self.q1:.{digits}f}-{self.q3:.{digits}f}, range "
                f"{self.low:.{digits}f}-{self.high:.{digits}f}, {self.n} rounds)")


def spread(values: list[float]) -> Spread:
    values = sorted(values)
    if len(values) < 2:
        return Spread(values[0], values[0], values[0], values[0], values[0], len(values))
    q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return Spread(statistics.median(values), q1, q3, values[0], values[-1], len(values))


def ratio(numerator: list[float], denominator: list[float]) -> Spread:
    """The spread of the per-round ratios numerator[r] / denominator[r]."""
    return spread([a / b for a, b in zip(numerator, denominator)])
