"""Which models ML Commons treats as asymmetric: both the ML node and the ML client decide by this one rule."""

import pytest

from opensearch_contract.models import is_asymmetric

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(("config", "expected"), [
    (None, False),
    ({}, False),
    ({"model_type": "bert", "embedding_dimension": 384}, False),
    ({"query_prefix": "query: "}, True),
    ({"passage_prefix": "passage: "}, True),
    ({"query_prefix": ""}, True),        # ML Commons checks for null, not for empty
    ({"query_prefix": None, "passage_prefix": None}, False),
])
def test_is_asymmetric(config: dict | None, expected: bool) -> None:
    assert is_asymmetric(config) is expected
