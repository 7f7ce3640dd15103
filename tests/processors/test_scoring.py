"""Normalization and combination equal hand-computed values (neural-search's definitions)."""

import math

import pytest

from processors import scoring
from processors.search import combine_responses
from processors.search_processors import NormalizationProcessor, ScoreRankerProcessor

pytestmark = pytest.mark.unit


def test_min_max_by_hand():
    assert scoring.min_max([[10.0, 6.0, 2.0]]) == [[1.0, 0.5, 0.001]]  # min maps to 0 -> 0.001


def test_min_max_single_result_and_equal_scores():
    assert scoring.min_max([[3.7], [2.0, 2.0], []]) == [[1.0], [1.0, 1.0], []]


def test_l2_by_hand():
    (out,) = scoring.l2([[3.0, 4.0]])
    assert out == pytest.approx([0.6, 0.8])
    assert scoring.l2([[0.0, 0.0]]) == [[0.0, 0.0]]


def test_z_score_by_hand():
    # mean 2, sample std 1: (3-2)/1 = 1; score == mean -> max (3); (1-2)/1 = -1 -> 0.001
    assert scoring.z_score([[3.0, 2.0, 1.0]]) == [[1.0, 3.0, 0.001]]


def test_rrf_formula():
    (out,) = scoring.rrf([[9.0, 5.0, 1.0]], rank_constant=60)
    assert out == [1 / 61, 1 / 62, 1 / 63]


def test_combinations_by_hand():
    assert scoring.arithmetic_mean([0.8, 0.2], [0.75, 0.25]) == pytest.approx(0.65)
    assert scoring.arithmetic_mean([0.8, 0.0], []) == pytest.approx(0.4)  # a missed sub-query counts as 0
    assert scoring.geometric_mean([0.8, 0.2], [0.5, 0.5]) == pytest.approx(math.sqrt(0.16))
    assert scoring.geometric_mean([0.8, 0.0], [0.5, 0.5]) == pytest.approx(0.8)  # zeros skipped
    assert scoring.harmonic_mean([0.8, 0.2], [0.5, 0.5]) == pytest.approx(1 / (0.5 / 0.8 + 0.5 / 0.2))
    assert scoring.rrf_sum([1 / 61, 1 / 62], []) == pytest.approx(1 / 61 + 1 / 62)


def _resp(*hits):
    return {"took": 3, "timed_out": False, "_shards": {"total": 1, "successful": 1, "skipped": 0, "failed": 0},
            "hits": {"total": {"value": len(hits), "relation": "eq"}, "max_score": hits[0][1] if hits else None,
                     "hits": [{"_index": "i", "_id": d, "_score": s, "_source": {"d": d}} for d, s in hits]}}


def test_hybrid_combination_min_max_arithmetic_by_hand():
    dense = _resp(("a", 0.9), ("b", 0.7), ("c", 0.5))
    sparse = _resp(("c", 12.0), ("d", 4.0))
    proc = NormalizationProcessor(weights=[0.4, 0.6])
    out = combine_responses([dense, sparse], proc, size=10)
    # dense min_max: a 1, b 0.5, c 0.001; sparse: c 1, d 0.001
    expected = {"a": 0.4 * 1.0, "b": 0.4 * 0.5, "c": 0.4 * 0.001 + 0.6 * 1.0, "d": 0.6 * 0.001}
    got = {h["_id"]: h["_score"] for h in out["hits"]["hits"]}
    assert got == pytest.approx(expected)
    assert [h["_id"] for h in out["hits"]["hits"]] == ["c", "a", "b", "d"]
    assert out["hits"]["total"] == {"value": 4, "relation": "eq"}
    assert out["hits"]["max_score"] == pytest.approx(expected["c"])
    assert out["hits"]["hits"][0]["_source"] == {"d": "c"}


def test_hybrid_rrf_by_hand_and_paging():
    dense = _resp(("a", 0.9), ("b", 0.7))
    sparse = _resp(("b", 5.0), ("c", 1.0))
    out = combine_responses([dense, sparse], ScoreRankerProcessor(normalization="rrf", combination="rrf"),
                            start=1, size=1)
    # a 1/61; b 1/62 + 1/61; c 1/62 -> order b, a, c; page from=1 size=1 -> a
    assert [h["_id"] for h in out["hits"]["hits"]] == ["a"]
    assert out["hits"]["hits"][0]["_score"] == pytest.approx(1 / 61)
    assert out["hits"]["max_score"] == pytest.approx(1 / 62 + 1 / 61)


def test_min_max_lower_bound_modes_by_hand():
    from processors.scoring import Bound

    scores = [[0.9, 0.5, 0.1]]
    # apply, bound 0.2: scores above it normalize against 0.2; 0.1 (below) keeps the observed min
    (out,) = scoring.min_max(scores, [Bound(True, "apply", 0.2)])
    assert out == pytest.approx([(0.9 - 0.2) / (0.9 - 0.2), (0.5 - 0.2) / 0.7, 0.001])
    # clip, bound 0.2: below it -> 0.001, the rest against 0.2
    (out,) = scoring.min_max(scores, [Bound(True, "clip", 0.2)])
    assert out == pytest.approx([1.0, 0.3 / 0.7, 0.001])
    # upper clip at 0.6: above it -> 1.0
    (out,) = scoring.min_max(scores, None, [Bound(False, "clip", 0.6)])
    assert out == pytest.approx([1.0, 0.4 / 0.5, 0.001])


def test_normalization_processor_reads_bounds():
    from processors import SearchPipeline

    pipe = SearchPipeline.from_body("b", {"phase_results_processors": [{"normalization-processor": {
        "normalization": {"technique": "min_max", "parameters": {"lower_bounds": [
            {"mode": "clip", "min_score": 0.2}, {"mode": "ignore"}]}}}}]}, ml=None)
    first, second = pipe.combiner.normalize([[0.9, 0.5, 0.1], [3.0, 1.0]])
    assert first == pytest.approx([1.0, 0.3 / 0.7, 0.001])
    assert second == pytest.approx([1.0, 0.001])
