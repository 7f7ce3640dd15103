"""k-NN scores per space type, as OpenSearch's k-NN plugin computes them for the faiss engine.

The engine's raw value is a squared L2 distance (``l2``), an inner product of normalised vectors (``cosinesimil``),
or an inner product (``innerproduct``, whose faiss distance is its negation). ``max_distance`` thresholds are given
in the space's distance and turned into the equivalent score threshold.
"""

from __future__ import annotations

import numpy as np

from .errors import IllegalArgument

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


# --- knn query parameters, checked as the k-NN plugin's KNNQueryBuilder and MethodParameter check them ------------
K_MAX = 10_000
FLOAT32_MAX = float(np.finfo(np.float32).max)


def check_k(k: object) -> int:
    if not isinstance(k, int) or isinstance(k, bool) or not 0 < k <= K_MAX:
        raise IllegalArgument(f"[knn] requires k to be in the range (0, {K_MAX}]")
    return k


def parse_ef_search(value: object) -> int:
    """``method_parameters.ef_search``: what Java's ``Integer.parseInt`` reads from its text (so at most 2^31 - 1),
    greater than 0. The k-NN plugin sets no upper bound; the graph search caps it at the graph's size, beyond which a
    larger candidate list finds nothing more."""
    text = "true" if value is True else "false" if value is False else str(value)
    digits = text[1:] if text[:1] in ("+", "-") else text
    number = int(text) if digits.isascii() and digits.isdigit() and len(digits) <= 10 else None
    if number is None or not -(2**31) <= number <= 2**31 - 1:
        raise IllegalArgument("ef_search value must be an integer")
    if number <= 0:
        # k-NN wraps the parameter's ValidationException message in a second one, hence the doubled prefix
        raise IllegalArgument("[knn] errors in method parameter [Validation Failed: 1: Validation Failed: 1: "
                              "ef_search should be greater than 0;;]")
    return number


def check_vector_values(values: np.ndarray) -> None:
    """A float vector (document or query) whose values a float32 can hold, as k-NN's ``KNNValidationUtil``."""
    if np.isnan(values).any():
        raise IllegalArgument("KNN vector values cannot be NaN")
    if not (np.abs(values) <= FLOAT32_MAX).all():
        raise IllegalArgument("KNN vector values cannot be infinity")


def check_min_score(space: str, min_score: float) -> None:
    if min_score <= 0:
        raise IllegalArgument("[knn] requires minScore to be greater than 0")
    if min_score > 1 and space != "innerproduct":
        raise IllegalArgument(f"[knn] requires score to be in the range [0, 1] for space type: {space}")


def check_max_distance(space: str, max_distance: float) -> None:
    if max_distance < 0 and space != "innerproduct":
        raise IllegalArgument(f"[knn] requires distance to be non-negative for space type: {space}")
