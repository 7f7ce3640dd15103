"""``filter_source`` with wildcard-free excludes takes a fast path (used when an index's text and feature fields are
indexed from SQLite without their vectors): it must give exactly what the general matcher gives."""

from __future__ import annotations

from typing import Any

import pytest

from datanode.source import filter_source

pytestmark = pytest.mark.unit

DOCS: list[dict[str, Any]] = [
    {"text": "a", "v": [1.0, 2.0], "sparse": {"t1": 0.5, "t2": 1.5}},
    {"a": {"v": [1, 2], "w": 3, "deep": {"v": [4]}}, "v": "not a vector here", "n": None},
    {"a.v": [1], "a": {"b": {}}, "list": [{"v": [1], "k": 2}, 3, {"k": {"v": 1}}]},
    {"chunks": [{"emb": {"knn": [1, 2]}, "text": "x"}, {"text": "y"}], "emb": {}, "e": []},
    {},
]
EXCLUDES = [["v"], ["a.v"], ["a.deep.v", "sparse"], ["chunks.emb.knn"], ["chunks.emb"], ["list.k", "emb"],
            ["a.b", "list.v"], ["missing", "a"]]


@pytest.mark.parametrize("excludes", EXCLUDES)
def test_fast_exclude_path_equals_the_general_matcher(excludes: list[str]) -> None:
    for doc in DOCS:
        # a wildcard pattern that matches nothing forces the general path on the same excludes
        assert filter_source(doc, [], excludes) == filter_source(doc, [], [*excludes, "*never-matches*"]), doc
