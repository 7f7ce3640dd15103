"""Sparse vector pruning with neural-search's definitions (PruneUtils):

- ``top_k``: keep the k entries with the highest weights (prune_ratio is k, a positive integer);
- ``max_ratio``: keep entries with weight >= prune_ratio * max weight (prune_ratio in [0, 1));
- ``alpha_mass``: walking entries by descending weight, keep an entry while the running sum including it is
  <= prune_ratio * total weight (prune_ratio in [0, 1));
- ``abs_value``: keep entries with weight >= prune_ratio (prune_ratio >= 0);
- ``none``: keep everything.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable

PRUNE_TYPES = ("none", "top_k", "alpha_mass", "max_ratio", "abs_value")


def _top_k(vector: dict[str, float], k: float) -> dict[str, float]:
    limit = int(k)
    heap: list[tuple[float, int, str]] = []
    for seq, (token, weight) in enumerate(vector.items()):
        if len(heap) < limit:
            heapq.heappush(heap, (weight, seq, token))
        elif heap and weight > heap[0][0]:
            heapq.heapreplace(heap, (weight, seq, token))
    return {token: vector[token] for _, _, token in heap}


def _max_ratio(vector: dict[str, float], ratio: float) -> dict[str, float]:
    top = max(vector.values(), default=0.0)
    return {t: w for t, w in vector.items() if w >= ratio * top}


def _abs_value(vector: dict[str, float], threshold: float) -> dict[str, float]:
    return {t: w for t, w in vector.items() if w >= threshold}


def _alpha_mass(vector: dict[str, float], alpha: float) -> dict[str, float]:
    total = math.fsum(vector.values())
    kept: dict[str, float] = {}
    running = 0.0
    for token, weight in sorted(vector.items(), key=lambda kv: kv[1], reverse=True):
        running += weight
        if running <= alpha * total:
            kept[token] = weight
    return kept


_PRUNERS: dict[str, Callable[[dict[str, float], float], dict[str, float]]] = {
    "top_k": _top_k, "max_ratio": _max_ratio, "abs_value": _abs_value, "alpha_mass": _alpha_mass,
}


def prune(prune_type: str, ratio: float, vector: dict[str, float]) -> dict[str, float]:
    if any(w <= 0 for w in vector.values()):
        raise ValueError("Pruned values must be positive")
    pruner = _PRUNERS.get(prune_type)
    return dict(vector) if pruner is None else pruner(vector, ratio)


def split(prune_type: str, ratio: float, vector: dict[str, float]) -> tuple[dict[str, float], dict[str, float]]:
    """(kept, pruned): the entries ``prune`` keeps, and the rest (neural-search's splitSparseVector)."""
    kept = prune(prune_type, ratio, vector)
    return kept, {t: w for t, w in vector.items() if t not in kept}


def is_valid_ratio(prune_type: str, ratio: float) -> bool:
    if prune_type == "top_k":
        return ratio > 0 and ratio == math.floor(ratio)
    if prune_type in ("alpha_mass", "max_ratio"):
        return 0 <= ratio < 1
    if prune_type == "abs_value":
        return ratio >= 0
    return True


def ratio_description(prune_type: str) -> str:
    return {
        "top_k": "prune_ratio should be positive integer.",
        "max_ratio": "prune_ratio should be in the range [0, 1).",
        "alpha_mass": "prune_ratio should be in the range [0, 1).",
        "abs_value": "prune_ratio should be non-negative.",
    }.get(prune_type, "prune_ratio field is not supported when prune_type is none")
