"""hybrid ``pagination_depth`` as neural-search documents it: each sub-query collects ``pagination_depth`` hits
(``size`` without it), ``from`` pages the combined ranking and needs ``pagination_depth``."""

import pytest

from opensearch_contract.errors import IllegalArgument
from processors import run_search

from .memsearch import MemIndex

pytestmark = pytest.mark.unit

DOCS = {f"d{i}": {"sp": {"a": 1.0 + i, "b": 10.0 - i}, "tag": "x" if i % 2 else "y"} for i in range(10)}


def _hybrid(depth=None, **extra):
    spec = {"queries": [{"rank_feature": {"field": "sp.a", "linear": {}}},
                        {"rank_feature": {"field": "sp.b", "linear": {}}}]}
    if depth is not None:
        spec["pagination_depth"] = depth
    return {"query": {"hybrid": spec}, **extra}


async def test_pages_of_one_depth_concatenate_to_the_whole_ranking():
    index = MemIndex("i", DOCS)
    whole = await run_search("i", _hybrid(8, size=6), search_fn=index.search_fn, ml=None)
    pages = []
    for start in (0, 2, 4):
        resp = await run_search("i", _hybrid(8, size=2, **{"from": start}), search_fn=index.search_fn, ml=None)
        pages += [h["_id"] for h in resp["hits"]["hits"]]
    assert pages == [h["_id"] for h in whole["hits"]["hits"]]
    assert {r["size"] for r in index.requests} == {8}  # every sub-query to pagination_depth


async def test_without_depth_sub_queries_collect_size():
    index = MemIndex("i", DOCS)
    await run_search("i", _hybrid(size=3), search_fn=index.search_fn, ml=None)
    assert [r["size"] for r in index.requests] == [3, 3]


@pytest.mark.parametrize("body,message", [
    (_hybrid(size=2, **{"from": 2}), "pagination_depth param is missing in the search request"),
    (_hybrid(0), "pagination_depth must not be zero"),
    (_hybrid(-3), "pagination_depth should be greater than 0"),
    (_hybrid(10_001), "pagination_depth should be less than or equal to index.max_result_window setting"),
    (_hybrid(3, size=2, **{"from": 20}),
     "Reached end of search result, increase pagination_depth value to see more results"),
])
async def test_pagination_errors(body, message):
    with pytest.raises(IllegalArgument, match=message):
        await run_search("i", body, search_fn=MemIndex("i", DOCS).search_fn, ml=None)
