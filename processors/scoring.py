"""Score normalization and combination for hybrid queries, with neural-search's definitions.

Normalization works per sub-query over that sub-query's result list:
- ``min_max``: (s - min) / (max - min); a sub-query whose results all share one score (e.g. a single result) gives
  1.0; a normalized score of exactly 0 becomes 0.001 so the document is not lost; optional per-sub-query
  ``lower_bounds`` / ``upper_bounds`` (modes apply, clip, ignore) replace the observed min / max;
- ``l2``: s / sqrt(sum of squares) (0 when the norm is 0);
- ``z_score``: (s - mean) / sample standard deviation; a score equal to the mean gives the sub-query's max score,
  a zero deviation gives the min score, a result <= 0 gives 0.001;
- ``rrf``: 1 / (rank_constant + rank), rank counted from 1 in the sub-query's order.
Combination per document over its sub-query scores (a sub-query that missed the document contributes 0):
- ``arithmetic_mean``: sum(w_i * s_i) / sum(w_i) over s_i >= 0;
- ``geometric_mean``: exp(sum(w_i * ln s_i) / sum(w_i)) over s_i > 0;
- ``harmonic_mean``: sum(w_i) / sum(w_i / s_i) over s_i > 0;
- ``rrf``: sum(w_i * s_i) (weights default to 1).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass

MIN_SCORE = 0.001
DEFAULT_RANK_CONSTANT = 60


@dataclass(frozen=True)
class Bound:
    """A min_max lower or upper bound for one sub-query (neural-search's LowerBound / UpperBound).

    mode ``apply`` (default): a score beyond the bound normalizes against the bound instead of the observed min/max;
    ``clip``: scores beyond the bound become 0.001 (lower) or 1.0 (upper); ``ignore``: the observed min/max."""

    lower: bool
    mode: str = "apply"
    score: float = 0.0

    def effective(self, score: float, lo: float, hi: float) -> float:
        b = self.score
        if self.lower:
            if self.mode == "apply":
                return b if (hi > b and score > b) else lo
            return (lo if hi < b else b) if self.mode == "clip" else lo
        if self.mode == "apply":
            return b if (lo < b and score < b) else hi
        return (hi if lo > b else b) if self.mode == "clip" else hi

    def clips(self, score: float, effective: float) -> bool:
        return self.mode == "clip" and (score < effective if self.lower else score > effective)


BOUND_MODES = ("apply", "clip", "ignore")


def min_max(scores: list[list[float]], lower: list[Bound] | None = None,
            upper: list[Bound] | None = None) -> list[list[float]]:
    out: list[list[float]] = []
    for j, sub in enumerate(scores):
        if not sub:
            out.append([])
            continue
        lo, hi = min(sub), max(sub)
        lb = lower[j] if lower else None
        ub = upper[j] if upper else None
        norm = []
        for s in sub:
            if hi == lo == s:  # a single result, or all results with one score
                norm.append(1.0)
                continue
            eff_lo = lb.effective(s, lo, hi) if lb else lo
            eff_hi = ub.effective(s, lo, hi) if ub else hi
            if lb and lb.clips(s, eff_lo):
                norm.append(MIN_SCORE)
            elif ub and ub.clips(s, eff_hi):
                norm.append(1.0)
            elif eff_hi == eff_lo:
                norm.append(1.0)
            else:
                value = (s - eff_lo) / (eff_hi - eff_lo)
                norm.append(MIN_SCORE if value == 0.0 else value)
        out.append(norm)
    return out


def l2(scores: list[list[float]]) -> list[list[float]]:
    out = []
    for sub in scores:
        norm = math.sqrt(math.fsum(s * s for s in sub))
        out.append([0.0 if norm == 0 else s / norm for s in sub])
    return out


def z_score(scores: list[list[float]]) -> list[list[float]]:
    out: list[list[float]] = []
    for sub in scores:
        if not sub:
            out.append([])
            continue
        mean = math.fsum(sub) / len(sub)
        std = statistics.stdev(sub) if len(sub) > 1 else 0.0
        lo, hi = min(sub), max(sub)
        norm = []
        for s in sub:
            if s == mean:
                norm.append(hi)
            elif std == 0:
                norm.append(lo)
            else:
                value = (s - mean) / std
                norm.append(MIN_SCORE if value <= 0 else value)
        out.append(norm)
    return out


def rrf(scores: list[list[float]], rank_constant: int = DEFAULT_RANK_CONSTANT) -> list[list[float]]:
    return [[1.0 / (rank_constant + rank) for rank in range(1, len(sub) + 1)] for sub in scores]


NORMALIZATIONS: dict[str, Callable[..., list[list[float]]]] = {
    "min_max": min_max, "l2": l2, "z_score": z_score,
}
COMPATIBLE_COMBINATIONS = {
    "min_max": ("arithmetic_mean", "geometric_mean", "harmonic_mean"),
    "l2": ("arithmetic_mean", "geometric_mean", "harmonic_mean"),
    "z_score": ("arithmetic_mean",),
    "rrf": ("rrf",),
}


def _weight(weights: list[float], i: int) -> float:
    return weights[i] if i < len(weights) else 1.0


def _check(scores: list[float], weights: list[float]) -> None:
    if weights and len(weights) != len(scores):
        raise ValueError(f"number of weights [{len(weights)}] must match number of sub-queries [{len(scores)}] "
                         f"in hybrid query")


def arithmetic_mean(scores: list[float], weights: list[float]) -> float:
    _check(scores, weights)
    pairs = [(s, _weight(weights, i)) for i, s in enumerate(scores) if s >= 0]
    total_w = sum(w for _, w in pairs)
    return 0.0 if total_w == 0 else sum(s * w for s, w in pairs) / total_w


def geometric_mean(scores: list[float], weights: list[float]) -> float:
    _check(scores, weights)
    pairs = [(s, _weight(weights, i)) for i, s in enumerate(scores) if s > 0]
    total_w = sum(w for _, w in pairs)
    return 0.0 if total_w == 0 else math.exp(sum(w * math.log(s) for s, w in pairs) / total_w)


def harmonic_mean(scores: list[float], weights: list[float]) -> float:
    _check(scores, weights)
    pairs = [(s, _weight(weights, i)) for i, s in enumerate(scores) if s > 0]
    harmonics = sum(w / s for s, w in pairs)
    return sum(w for _, w in pairs) / harmonics if harmonics > 0 else 0.0


def rrf_sum(scores: list[float], weights: list[float]) -> float:
    _check(scores, weights)
    pairs = [(s, _weight(weights, i)) for i, s in enumerate(scores) if s >= 0]
    return 0.0 if sum(w for _, w in pairs) == 0 else sum(s * w for s, w in pairs)


COMBINATIONS: dict[str, Callable[[list[float], list[float]], float]] = {
    "arithmetic_mean": arithmetic_mean, "geometric_mean": geometric_mean, "harmonic_mean": harmonic_mean,
    "rrf": rrf_sum,
}


def validate_weights(weights: list[float]) -> None:
    if any(not 0.0 <= w <= 1.0 for w in weights):
        raise ValueError(f"all weights must be in range [0.0 ... 1.0], submitted weights: {weights}")
    if weights and abs(sum(weights) - 1.0) > 0.01:
        raise ValueError(f"sum of weights for combination must be equal to 1.0, submitted weights: {weights}")
