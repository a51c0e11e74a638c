"""The verdict rule and the two records it fills: a :class:`Measure` (one condition, per-seed values, a verdict)
and a :class:`Finding` (the poster's claim, its measures, the combined verdict).

The verdict rule (:func:`verdict`), written once here and quoted by the report:

    A finding claims that a quantity, measured once per seed, lies on one side of a threshold (above
    or below). Over the n seeds we take the mean and the 95% t-interval of the mean
    (mean ± t_{0.975, n-1} · std / √n). The claim is **supported** when the whole interval lies on the
    claimed side of the threshold, **not supported** when the whole interval lies on the other side
    (or touches the threshold from there), and **inconclusive** otherwise, which includes n < 2 seeds.
    A finding measured under several conditions (e.g. rewind and fine-tune) is supported when it is
    supported under every one of them, not supported when it is not supported under at least one,
    and inconclusive otherwise.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from .stats import Summary, summarize

SUPPORTED, NOT_SUPPORTED, INCONCLUSIVE = "supported", "not supported", "inconclusive"
VERDICTS = (SUPPORTED, NOT_SUPPORTED, INCONCLUSIVE)
NEAR_DENSE_MARGIN = 2.0   # points of accuracy: a sub-network "keeps the dense accuracy" when it loses less
TICKET_DISTANCE = 0.5     # normalised mask distance above which two masks are "different tickets"
DIFFERENT_FUNCTIONS = 0.5  # normalised excess agreement below which two sub-networks "compute different functions"

RULE = ("A finding claims that a quantity, measured once per seed, lies above (or below) a threshold. Over the "
        "n seeds we take the mean and its 95% t-interval (mean ± t(0.975, n−1) · std / √n). The claim is "
        "supported when the whole interval lies on the claimed side of the threshold, not supported when the "
        "whole interval lies on the other side, and inconclusive otherwise, which includes n < 2 seeds. A "
        "finding measured under several conditions is supported when it is supported under each, not "
        "supported when it is not supported under at least one, and inconclusive otherwise.")


def verdict(summary: Summary, threshold: float = 0.0, above: bool = True) -> str:
    """The verdict rule for the claim "the quantity is above ``threshold``" (``above=False``: below)."""
    if summary.n < 2 or math.isnan(summary.low) or math.isnan(summary.high):
        return INCONCLUSIVE
    low, high = (summary.low, summary.high) if above else (-summary.high, -summary.low)
    t = threshold if above else -threshold
    if low > t:
        return SUPPORTED
    if high <= t:
        return NOT_SUPPORTED
    return INCONCLUSIVE


def combine(verdicts) -> str:
    """Several conditions: supported if each is, not supported if at least one is not, else inconclusive."""
    verdicts = list(verdicts)
    if not verdicts:
        return INCONCLUSIVE
    if any(v == NOT_SUPPORTED for v in verdicts):
        return NOT_SUPPORTED
    if all(v == SUPPORTED for v in verdicts):
        return SUPPORTED
    return INCONCLUSIVE


def fmt(x, digits: int = 2) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    return f"{x:,.{digits}f}"


def describe(s: Summary, digits: int = 2, unit: str = "") -> str:
    """ "0.81 ± 0.02 (95% CI 0.63 to 0.99, n = 2)"; the interval is "not defined" for n < 2."""
    ci = (f"95% CI {fmt(s.low, digits)}{unit} to {fmt(s.high, digits)}{unit}" if s.n >= 2 and math.isfinite(s.low)
          else "95% CI not defined")
    return f"{fmt(s.mean, digits)}{unit} ± {fmt(s.std, digits)}{unit} ({ci}, n = {s.n})"


@dataclass
class Measure:
    """One condition of a finding: the per-seed values, their summary, the threshold and the verdict."""
    condition: str
    quantity: str
    values: dict
    threshold: float
    above: bool = True
    digits: int = 2
    unit: str = ""
    baseline: str = ""
    summary: Summary = field(init=False)
    verdict: str = field(init=False)

    def __post_init__(self):
        self.summary = summarize(list(self.values.values()))
        self.verdict = verdict(self.summary, self.threshold, self.above)

    @property
    def text(self) -> str:
        return f"{self.quantity} {describe(self.summary, self.digits, self.unit)}"


@dataclass
class Finding:
    key: str
    claim: str       # the poster's words
    short: str       # the claim in a few words, for the headline
    rule: str        # quantity, threshold and side, in words
    measures: list
    verdict: str = ""
    note: str = ""   # an explanation computed from the data

    def __post_init__(self):
        if not self.verdict:
            self.verdict = combine(m.verdict for m in self.measures)

    @property
    def headline(self) -> str:
        return f"{self.verdict.capitalize()}: {self.short}"

    @property
    def numbers(self) -> str:
        return "; ".join(f"{m.condition}: {m.text}" + (f" ({m.baseline})" if m.baseline else "") for m in self.measures)
