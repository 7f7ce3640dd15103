"""k-NN score conversions against the k-NN plugin's formulas, worked by hand per space type."""

import numpy as np
import pytest

from opensearch_contract.knn import score_from_distance, scores_from_raw

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(("space", "raw", "expected"), [
    # l2: raw is the squared distance d, score 1 / (1 + d)
    ("l2", [0.0, 1.0, 3.0], [1.0, 0.5, 0.25]),
    # cosinesimil: raw is cos, score (1 + cos) / 2
    ("cosinesimil", [1.0, 0.0, -0.5], [1.0, 0.5, 0.25]),
    # innerproduct: faiss distance d = -ip; ip >= 0 -> ip + 1, ip < 0 -> 1 / (1 - ip)
    ("innerproduct", [2.0, 0.0, -1.0, -3.0], [3.0, 1.0, 0.5, 0.25]),
])
def test_scores_from_raw(space: str, raw: list[float], expected: list[float]) -> None:
    got = scores_from_raw(space, np.array(raw, dtype=np.float32))
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-7)


@pytest.mark.parametrize(("space", "distance", "expected"), [
    ("l2", 0.0, 1.0), ("l2", 4.0, 0.2),
    ("cosinesimil", 0.0, 1.0), ("cosinesimil", 1.0, 0.5), ("cosinesimil", 2.0, 0.0),
    ("innerproduct", 1.0, 0.5), ("innerproduct", 0.0, 1.0), ("innerproduct", -2.0, 3.0),
])
def test_score_from_distance(space: str, distance: float, expected: float) -> None:
    assert score_from_distance(space, distance) == pytest.approx(expected)


@pytest.mark.parametrize("space", ["l2", "cosinesimil", "innerproduct"])
def test_distance_threshold_agrees_with_raw_scores(space: str) -> None:
    """A hit exactly at max_distance scores exactly the threshold score_from_distance gives."""
    raw = np.array([0.25], dtype=np.float32)            # squared l2 distance, or cos / inner product
    distance = {"l2": 0.25, "cosinesimil": 1 - 0.25, "innerproduct": -0.25}[space]
    assert float(scores_from_raw(space, raw)[0]) == pytest.approx(score_from_distance(space, distance), rel=1e-6)
