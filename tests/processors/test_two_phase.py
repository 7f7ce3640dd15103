"""neural_sparse_two_phase_processor: OpenSearch's defaults and messages, and within the window the same hits and
scores as the full neural_sparse query (on an exact in-memory engine; SciFact in bench/sparse_two_phase.py)."""

import random

import pytest

from opensearch_contract.errors import IllegalArgument
from processors import SearchPipeline, run_search
from processors.errors import ProcessorConfigError
from processors.two_phase import NeuralSparseTwoPhaseProcessor

from .memsearch import MemIndex

pytestmark = pytest.mark.unit


def _pipeline(config=None):
    return SearchPipeline.from_body("p", {"request_processors": [
        {"neural_sparse_two_phase_processor": config or {}}]}, ml=None)


def test_defaults_are_opensearchs():
    proc = _pipeline().two_phase
    assert (proc.enabled, proc.prune_ratio, proc.prune_type, proc.expansion_rate, proc.max_window_size) == (
        True, 0.4, "max_ratio", 5.0, 10000)


BAD = [
    ({"two_phase_parameter": {"prune_ratio": 1.5}},
     r"Illegal prune_ratio 1.500000 for prune_type: max_ratio. prune_ratio should be in the range \[0, 1\)."),
    ({"two_phase_parameter": {"prune_ratio": 2.5, "prune_type": "top_k"}},
     "Illegal prune_ratio 2.500000 for prune_type: top_k. prune_ratio should be positive integer."),
    ({"two_phase_parameter": {"prune_ratio": -1, "prune_type": "abs_value"}},
     "Illegal prune_ratio -1.000000 for prune_type: abs_value. prune_ratio should be non-negative."),
    ({"two_phase_parameter": {"prune_type": "largest"}}, "Unknown prune type: largest"),
    ({"two_phase_parameter": {"expansion_rate": 0.5}},
     "The two_phase_parameter.expansion_rate must >= 1.0. Received: 0.500000"),
    ({"two_phase_parameter": {"max_window_size": 20}},
     "The two_phase_parameter.max_window_size must >= 50. Received: \n20"),
    ({"two_phase_parameter": {"prune_ratio": "0.4"}}, r"two_phase_parameter.prune_ratio must be a number"),
    ({"two_phase_parameter": {"window_expansion": 2}}, r"unsupported parameters \['window_expansion'\]"),
    ({"enabled": "yes"}, r"\[enabled\] property isn't a boolean"),
    ({"two_phase_parameter": 0.4}, r"\[two_phase_parameter\] property isn't a map"),
    ({"prune_ratio": 0.4}, r"doesn't support one or more provided configuration parameters \[prune_ratio\]"),
]


@pytest.mark.parametrize("config,message", BAD)
def test_bad_configs_get_opensearch_messages(config, message):
    with pytest.raises(ProcessorConfigError, match=message) as info:
        _pipeline({"tag": "t", **config})
    assert info.value.errors[0].extra["processor_type"] == NeuralSparseTwoPhaseProcessor.TYPE


def _corpus(n=300, vocab=40, seed=7):
    rng = random.Random(seed)
    words = [f"w{i}" for i in range(vocab)]
    return {f"d{i:03d}": {"sp": {w: round(rng.uniform(0.05, 3.0), 3) for w in rng.sample(words, 8)}}
            for i in range(n)}


QUERY_TOKENS = {"w1": 3.0, "w2": 2.1, "w3": 1.3, "w4": 1.1, "w5": 0.6, "w6": 0.3, "w7": 0.2, "w8": 0.05}


@pytest.mark.parametrize("query", [
    {"neural_sparse": {"sp": {"query_tokens": QUERY_TOKENS}}},
    {"bool": {"boost": 2.0, "should": [{"neural_sparse": {"sp": {"query_tokens": QUERY_TOKENS, "boost": 1.5}}},
                                       {"term": {"tag": "x"}}]}},
])
async def test_top_hits_and_scores_equal_the_full_query(query):
    index = MemIndex("i", _corpus())
    body = {"size": 10, "query": query}
    full = await run_search("i", body, search_fn=index.search_fn, ml=None)
    index.requests.clear()
    two = await run_search("i", body, search_fn=index.search_fn, ml=None, pipeline=_pipeline())
    assert [h["_id"] for h in two["hits"]["hits"]] == [h["_id"] for h in full["hits"]["hits"]]
    for a, b in zip(two["hits"]["hits"], full["hits"]["hits"]):
        assert a["_score"] == pytest.approx(b["_score"], rel=1e-9)
    first, second = index.requests
    assert first["size"] == 50  # size x expansion_rate 5.0
    high = {c["rank_feature"]["field"] for c in rank_features(first["query"])}
    assert high == {"sp.w1", "sp.w2", "sp.w3"}  # weight >= 0.4 x 3.0
    assert len(second["query"]["bool"]["filter"][0]["ids"]["values"]) == 50


def rank_features(query):
    """Every rank_feature clause in a query tree."""
    if isinstance(query, dict):
        if "rank_feature" in query:
            return [query]
        return [c for v in query.values() for c in rank_features(v)]
    if isinstance(query, list):
        return [c for v in query for c in rank_features(v)]
    return []


@pytest.mark.parametrize("config,body", [
    ({"enabled": False}, {}),
    ({"two_phase_parameter": {"prune_ratio": 0}}, {}),
    ({}, {"sort": [{"_id": "asc"}]}),
    ({}, {"query": {"hybrid": {"queries": [{"neural_sparse": {"sp": {"query_tokens": QUERY_TOKENS}}}]}}}),
])
async def test_left_alone_when_disabled_sorted_or_hybrid(config, body):
    index = MemIndex("i", _corpus(n=20))
    body = {"query": {"neural_sparse": {"sp": {"query_tokens": QUERY_TOKENS}}}, **body}
    await run_search("i", body, search_fn=index.search_fn, ml=None, pipeline=_pipeline(config))
    assert len(index.requests) == 1
    assert len(rank_features(index.requests[0]["query"])) == len(QUERY_TOKENS)


async def test_window_over_max_window_size_is_an_error():
    index = MemIndex("i", _corpus(n=5))
    body = {"size": 30, "query": {"neural_sparse": {"sp": {"query_tokens": QUERY_TOKENS}}}}
    with pytest.raises(IllegalArgument, match=r"The two-phase window size of neural_sparse_two_phase_processor "
                                              r"should be \[0,100\], but get the value of 150"):
        await run_search("i", body, search_fn=index.search_fn, ml=None,
                         pipeline=_pipeline({"two_phase_parameter": {"max_window_size": 100}}))
