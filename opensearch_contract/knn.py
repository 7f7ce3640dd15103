"""k-NN scores per space type, as OpenSearch's k-NN plugin computes them for the faiss engine.

The engine's raw value is a squared L2 distance (``l2``), an inner product of normalised vectors (``cosinesimil``),
or an inner product (``innerproduct``, whose faiss distance is its negation). ``max_distance`` thresholds are given
in the space's distance and turned into the equivalent score threshold.
"""

from __future__ import annotations

import numpy as np

SPACE_TYPES = ("l2", "cosinesimil", "innerproduct")
DEFAULT_SPACE_TYPE = "l2"

_ONE = np.float32(1)
_TWO = np.float32(2)


def scores_from_raw(space: str, raw: np.ndarray) -> np.ndarray:
    """Scores (float32) from the engine's raw values: squared L2 distance for l2, inner product otherwise."""
    raw = raw.astype(np.float32)
    if space == "l2":
        return (_ONE / (_ONE + raw)).astype(np.float32)
    if space == "cosinesimil":
        return ((_ONE + raw) / _TWO).astype(np.float32)
    # innerproduct: faiss distance d = -ip; score = 1 / (1 + d) when d >= 0, else -d + 1
    return np.where(raw <= 0, _ONE / (_ONE - raw), raw + _ONE).astype(np.float32)


def score_from_distance(space: str, distance: float) -> float:
    """The score of a hit at ``distance`` in the space's own distance (l2: squared L2; cosinesimil: 1 - cos;
    innerproduct: -x.y), so ``max_distance`` becomes a score threshold."""
    if space == "l2":
        return 1.0 / (1.0 + distance)
    if space == "cosinesimil":
        return (2.0 - distance) / 2.0
    return 1.0 / (1.0 + distance) if distance >= 0 else -distance + 1.0
