"""``neural`` ``min_score`` / ``max_distance`` on every space type, through the real ML node and data node: the hits
are exactly the documents whose hand-computed k-NN score (or distance) passes the threshold, with those scores."""

import numpy as np
import pytest

from processors import MLClient, run_search
from tests.fixtures.datanode import async_os_client

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TEXTS = {
    "coffee": "Coffee is brewed from roasted coffee beans.",
    "tea": "Tea is made by steeping dried leaves in hot water.",
    "espresso": "Espresso forces hot water through finely ground coffee.",
    "stocks": "The stock market fell after the interest rate decision.",
    "bread": "Sourdough bread rises slowly with wild yeast.",
    "football": "The football match ended in a draw after extra time.",
}
QUESTION = "how is coffee made"
SPACES = ("l2", "cosinesimil", "innerproduct")


def _by_hand(space, q, v):
    """(distance in the space's own terms, score) as the k-NN plugin defines them for faiss."""
    if space == "l2":
        d = float(np.sum((q - v) ** 2))
        return d, 1 / (1 + d)
    if space == "cosinesimil":
        d = 1 - float(q @ v / (np.linalg.norm(q) * np.linalg.norm(v)))
        return d, (2 - d) / 2
    d = -float(q @ v)
    return d, (1 / (1 + d) if d >= 0 else 1 - d)


@pytest.fixture
async def radial_index(neural_data_node):
    ml_node = neural_data_node.ml
    async with MLClient(ml_node.url) as ml:
        vectors = await ml.text_embedding(ml_node.model_ids["dense"], list(TEXTS.values()))
        (query,) = await ml.text_embedding(ml_node.model_ids["dense"], [QUESTION], content_type="query")
    client = async_os_client(neural_data_node.url)
    props = {f"v_{s}": {"type": "knn_vector", "dimension": 384,
                        "method": {"name": "hnsw", "engine": "faiss", "space_type": s}} for s in SPACES}
    await client.indices.create(index="radial", body={"settings": {"index": {"knn": True}},
                                                      "mappings": {"properties": props}})
    for doc_id, vec in zip(TEXTS, vectors):
        await client.index(index="radial", id=doc_id, body={f"v_{s}": vec for s in SPACES})
    await client.indices.refresh(index="radial")
    yield client, np.array(query), {i: np.array(v) for i, v in zip(TEXTS, vectors)}
    await client.close()


@pytest.mark.parametrize("space", SPACES)
@pytest.mark.parametrize("param", ["min_score", "max_distance"])
async def test_radial_neural_query_matches_hand_computed_scores(neural_data_node, radial_index, space, param):
    client, query, vectors = radial_index
    by_hand = {i: _by_hand(space, query, v) for i, v in vectors.items()}
    # a threshold between the 3rd and 4th best document: three documents pass
    ranked = sorted(by_hand.values(), key=lambda ds: -ds[1])
    if param == "min_score":
        threshold = (ranked[2][1] + ranked[3][1]) / 2
        expected = {i for i, (_, s) in by_hand.items() if s >= threshold}
    else:
        threshold = (ranked[2][0] + ranked[3][0]) / 2
        expected = {i for i, (d, _) in by_hand.items() if d <= threshold}
    assert len(expected) == 3
    body = {"query": {"neural": {f"v_{space}": {"query_text": QUESTION, param: threshold,
                                                "model_id": neural_data_node.ml.model_ids["dense"]}}}}

    async def search_fn(index, b):
        return await client.search(index=index, body=b)

    async with MLClient(neural_data_node.ml.url) as ml:
        client_side = await run_search("radial", body, search_fn=search_fn, ml=ml)
    server_side = await client.search(index="radial", body=body)
    for resp in (client_side, server_side):
        hits = resp["hits"]["hits"]
        assert {h["_id"] for h in hits} == expected
        for hit in hits:
            assert hit["_score"] == pytest.approx(by_hand[hit["_id"]][1], rel=1e-5)
