"""Eval's query-time ML client (CachingML): each (model, text) is sent to the ML node once, the answers are the
node's, in the caller's order. The node is a loopback stand-in of ML Commons' predict API that counts calls."""

from __future__ import annotations

from collections import Counter

import pytest
from aiohttp import web

from neuralpipe.eval.run import CachingML
from neuralpipe.local import make_ml_client
from tests.neuralpipe.busy_cluster import ThreadServer

pytestmark = pytest.mark.integration


class PredictStandIn:
    def __init__(self) -> None:
        self.texts: Counter[tuple[str, str]] = Counter()  # (algorithm, text) -> predict calls naming it

    async def get_model(self, request: web.Request) -> web.Response:
        algorithm = "SPARSE_TOKENIZE" if request.match_info["model_id"] == "tok" else "TEXT_EMBEDDING"
        return web.json_response({"name": request.match_info["model_id"], "algorithm": algorithm,
                                  "model_config": {"query_prefix": "query: "}})

    async def predict(self, request: web.Request) -> web.Response:
        algorithm = request.match_info["algorithm"]
        texts = (await request.json())["text_docs"]
        self.texts.update((algorithm, t) for t in texts)
        if algorithm == "text_embedding":
            results = [{"output": [{"name": "sentence_embedding", "data": [float(len(t)), 1.0]}]} for t in texts]
        else:
            results = [{"output": [{"name": "output", "dataAsMap": {"response": [{t: 1.0}]}}]} for t in texts]
        return web.json_response({"inference_results": results})

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/_plugins/_ml/models/{model_id}", self.get_model)
        app.router.add_post("/_plugins/_ml/_predict/{algorithm}/{model_id}", self.predict)
        return app


async def test_each_query_text_reaches_the_ml_node_once() -> None:
    node = PredictStandIn()
    server = ThreadServer(node.app)
    ml = make_ml_client(server.start(), client_class=CachingML)
    try:
        first = await ml.text_embedding("dense", ["short", "a longer one"], content_type="query")
        again = await ml.text_embedding("dense", ["a longer one", "short", "new"], content_type="query")
        sparse = await ml.sparse_encoding("tok", ["short", "short"])
    finally:
        await ml.close()
        server.stop()
    assert first == [[5.0, 1.0], [12.0, 1.0]]
    assert again == [[12.0, 1.0], [5.0, 1.0], [3.0, 1.0]]
    assert sparse == [{"short": 1.0}, {"short": 1.0}]
    assert node.texts == {("text_embedding", "short"): 1, ("text_embedding", "a longer one"): 1,
                          ("text_embedding", "new"): 1, ("sparse_tokenize", "short"): 1}
