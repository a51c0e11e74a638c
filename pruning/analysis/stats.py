"""Statistics over seeds: mean, standard deviation, and the 95% t-interval of the mean."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# Two-sided 95% quantiles of Student's t (t_{0.975, df}) for df = 1..30, from the standard table.
_T975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
         2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042]
_Z975 = 1.959964


def t_quantile(df: int) -> float:
    """t_{0.975, df}: the table for df <= 30, the Cornish-Fisher expansion beyond (error < 0.001)."""
    if df < 1:
        return math.nan
    if df <= len(_T975):
        return _T975[df - 1]
    z = _Z975
    return z + (z ** 3 + z) / (4 * df) + (5 * z ** 5 + 16 * z ** 3 + 3 * z) / (96 * df ** 2)


@dataclass(frozen=True)
class Summary:
    """Mean, std (ddof=1), n and the 95% t-interval [low, high] of values over seeds.

    With one value the std is 0 and the interval unknown (NaN): one seed says nothing about the spread.
    """
    mean: float
    std: float
    n: int
    low: float
    high: float

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2


def summarize(values) -> Summary:
    """:class:`Summary` of ``values`` (NaN and None dropped): mean ± t_{0.975, n-1} * std / sqrt(n)."""
    vals = np.asarray([v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))],
                      dtype=float)
    n = len(vals)
    if n == 0:
        return Summary(math.nan, math.nan, 0, math.nan, math.nan)
    mean = float(vals.mean())
    if n == 1:
        return Summary(mean, 0.0, 1, math.nan, math.nan)
    std = float(vals.std(ddof=1))
    half = t_quantile(n - 1) * std / math.sqrt(n)
    return Summary(mean, std, n, mean - half, mean + half)


def pearson(x, y) -> float:
    """Pearson correlation of paired values (pairs with a NaN dropped); NaN for < 3 pairs or a constant side."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    ok = ~(np.isnan(x) | np.isnan(y))
    x, y = x[ok], y[ok]
    if len(x) < 3 or x.std() == 0 or y.std() == 0:
        return math.nan
    return float(np.corrcoef(x, y)[0, 1])
