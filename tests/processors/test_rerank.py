"""The ``rerank`` response processor: configuration errors, by_field, query context, and ml_opensearch with a real
cross-encoder served by the ML node, after hybrid + normalization."""

import copy

import pytest
from opensearchpy import OpenSearch

from opensearch_contract.errors import IllegalArgument
from processors import MLClient, SearchPipeline, resolve_model_names, run_search
from processors.errors import ProcessorConfigError
from processors.rerank import query_text
from tests.fixtures.mlnode import deploy, register_file_model
from tests.fixtures.models import tiny_model_dir

from .fakes import RecordingML
from .memsearch import MemIndex

pytestmark = pytest.mark.unit

BAD_RERANK = [
    ({}, r"No rerank type found. Possible rerank types are: \[ml_opensearch, by_field\]"),
    ({"ml_opensearch": {"model_id": "m"}, "by_field": {"target_field": "x"}, "context": {"document_fields": ["t"]}},
     r"Multiple rerank types found: \[ml_opensearch, by_field\]. Only one is permitted."),
    ({"ml_opensearch": {"model_id": "m"}}, r"\[context\] required property is missing"),
    ({"ml_opensearch": {"model_id": "m"}, "context": {"document_fields": "text"}},
     "document_fields must be a list of field names"),
    ({"ml_opensearch": {"model_id": "m"}, "context": {"document_fields": []}}, "document_fields must be nonempty"),
    ({"ml_opensearch": {"model_id": "m"}, "context": {"document_fields": [f"f{i}" for i in range(51)]}},
     "document_fields must not contain more than 50 fields. Configure by setting "
     "plugins.neural_search.reranker_max_document_fields"),
    ({"ml_opensearch": {"model_id": "m"}, "context": {"document_fields": ["t"], "query_fields": ["q"]}},
     "unrecognized context field: query_fields"),
    ({"ml_opensearch": {}, "context": {"document_fields": ["t"]}}, r"\[model_id\] required property is missing"),
    ({"ml_opensearch": "m", "context": {"document_fields": ["t"]}},
     r"\[ml_opensearch\] property isn't a map, but of type \[java.lang.String\]"),
    ({"by_field": {}}, r"\[target_field\] required property is missing"),
    ({"by_field": {"target_field": "x", "keep_previous_score": "yes"}},
     r"\[keep_previous_score\] property isn't a boolean"),
    ({"by_field": {"target_field": "x"}, "context": {"document_fields": ["t"]}},
     r"processor \[rerank\] doesn't support one or more provided configuration parameters \[context\]"),
    ({"by_field": {"target_field": "x", "top_n": 3}}, r"\[by_field\] unsupported parameters \['top_n'\]"),
]


@pytest.mark.parametrize("config,message", BAD_RERANK)
def test_bad_rerank_configs_get_opensearch_messages(config, message):
    body = {"response_processors": [{"rerank": {"tag": "r", **config}}]}
    with pytest.raises(ProcessorConfigError, match=message) as info:
        SearchPipeline.from_body("p", body, ml=None)
    assert info.value.errors[0].extra["processor_type"] == "rerank"
    assert info.value.errors[0].extra["processor_tag"] == "r"


def _response(*hits):
    return {"took": 1, "timed_out": False, "hits": {"total": {"value": len(hits), "relation": "eq"},
                                                      "max_score": hits[0]["_score"] if hits else None,
                                                      "hits": list(hits)}}


def _hit(doc_id, score, source):
    return {"_index": "i", "_id": doc_id, "_score": score, "_source": source}


async def _by_field(config, response):
    pipe = SearchPipeline.from_body("p", {"response_processors": [{"rerank": {"by_field": config}}]}, ml=None)
    (proc,) = pipe.response_processors
    return await proc.process({}, copy.deepcopy(response), None)


async def test_by_field_orders_by_the_field_and_keeps_or_removes_what_it_is_told():
    response = _response(_hit("a", 3.0, {"meta": {"rank": 1}, "t": "x"}), _hit("b", 2.0, {"meta": {"rank": "7.5"}}),
                         _hit("c", 1.0, {"meta": {"rank": 4, "other": 1}}))
    out = await _by_field({"target_field": "meta.rank", "remove_target_field": True, "keep_previous_score": True},
                          response)
    assert [(h["_id"], h["_score"]) for h in out["hits"]["hits"]] == [("b", 7.5), ("c", 4.0), ("a", 1.0)]
    assert out["hits"]["max_score"] == 7.5
    assert [h["_source"] for h in out["hits"]["hits"]] == [
        {"previous_score": 2.0}, {"meta": {"other": 1}, "previous_score": 1.0}, {"t": "x", "previous_score": 3.0}]
    plain = await _by_field({"target_field": "meta.rank"}, response)
    assert plain["hits"]["hits"][0]["_source"] == {"meta": {"rank": "7.5"}}


@pytest.mark.parametrize("source,message", [
    (None, r"There is no source field to be able to perform rerank on hit \[b\]"),
    ({"meta": {}}, r"The field to rerank by is not found at hit \[b\]"),
    ({"meta": {"rank": "high"}},
     r"The field mapping to rerank by \[high\] is not Numerical, instead of type \[String\]"),
])
async def test_by_field_errors_and_ignore_failure(source, message):
    response = _response(_hit("a", 2.0, {"meta": {"rank": 1}}), _hit("b", 1.0, source))
    with pytest.raises(IllegalArgument, match=message):
        await _by_field({"target_field": "meta.rank"}, response)
    pipe = SearchPipeline.from_body("p", {"response_processors": [{"rerank": {
        "by_field": {"target_field": "meta.rank"}, "ignore_failure": True}}]}, ml=None)
    assert await pipe.response_processors[0].process({}, copy.deepcopy(response), None) == response


HYBRID = {"query": {"hybrid": {"queries": [{"match": {"text": "capital"}},
                                           {"neural": {"v": {"query_text": "the capital of France", "k": 3}}}]}}}


@pytest.mark.parametrize("ctx,expected", [
    ({"query_text": "plain text"}, "plain text"),
    ({"query_text_path": "query.hybrid.queries.1.neural.v.query_text"}, "the capital of France"),
    ({"query_text_path": "query.hybrid.queries.0.match.text"}, "capital"),
])
def test_query_context(ctx, expected):
    assert query_text({**HYBRID, "ext": {"rerank": {"query_context": ctx}}}) == expected


@pytest.mark.parametrize("ext,message", [
    ({}, "must specify query_context"),
    ({"rerank": {"query_context": "q"}}, "query_context must be a map"),
    ({"rerank": {"query_context": {}}}, 'Must specify either "query_text" or "query_text_path"'),
    ({"rerank": {"query_context": {"query_text": "a", "query_text_path": "b"}}},
     'Cannot specify both "query_text" and "query_text_path"'),
    ({"rerank": {"query_context": {"query_text_path": "query.hybrid"}}},
     "query_text_path must point to a string field"),
    ({"rerank": {"query_context": {"query_text_path": "a." * 20 + "b"}}},
     "query_text_path exceeded the maximum path length of 20 nested fields"),
    ({"rerank": {"query_context": {"query_text_path": "a" * 1001}}},
     "query_text_path exceeded the maximum path length of 1000 characters"),
])
def test_query_context_errors(ext, message):
    with pytest.raises(IllegalArgument, match=message):
        query_text({**HYBRID, "ext": ext})


# -- ml_opensearch with a real cross-encoder ------------------------------------------------------------------------

CORPUS = {
    "d1": {"title": "Paris", "text": "Paris is the capital and largest city of France."},
    "d2": {"title": "Berlin", "text": "Berlin is the capital of Germany."},
    "d3": {"title": "Coffee", "text": "Coffee is brewed from roasted beans."},
    "d4": {"title": "Lyon", "text": "Lyon is a city in France known for its cuisine."},
    "d5": {"title": "France", "text": "France is a country in Western Europe; its capital is Paris."},
}
QUERY = "what is the capital of france"


class CountingML(MLClient):
    """The real client, counting the predict calls it sends (per algorithm)."""

    def __init__(self, url):
        super().__init__(url)
        self.predicts = []

    async def predict(self, model_id, algorithm, body):
        self.predicts.append(algorithm)
        return await super().predict(model_id, algorithm, body)


@pytest.fixture(scope="module")
def cross_encoder_id(ml_node, model_zips):
    client = OpenSearch(hosts=[ml_node.url], timeout=600)
    try:
        model_id = register_file_model(client, model_zips["tiny-cross-encoder-onnx"])
        deploy(client, model_id)
        yield model_id
    finally:
        client.close()


def _transformers_logits(pairs):
    # torch and transformers load only for the integration test that needs them (seconds of import time)
    import torch
    from transformers import AutoTokenizer, BertForSequenceClassification

    folder = tiny_model_dir("cross-encoder")
    model = BertForSequenceClassification.from_pretrained(str(folder)).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    batch = tokenizer([q for q, _ in pairs], [d for _, d in pairs], padding=True, truncation="longest_first",
                      max_length=512, return_tensors="pt")
    with torch.no_grad():
        return model(**batch).logits[:, 0].tolist()


@pytest.mark.integration
@pytest.mark.slow
async def test_ml_opensearch_rerank_after_hybrid_equals_transformers_logits(ml_node, cross_encoder_id):
    index = MemIndex("docs", copy.deepcopy(CORPUS))
    pipe = SearchPipeline.from_body("p", {
        "phase_results_processors": [{"normalization-processor": {}}],
        "response_processors": [{"rerank": {"ml_opensearch": {"model_id": cross_encoder_id},
                                            "context": {"document_fields": ["title", "text"]}}}]}, ml=None)
    body = {"size": 4, "query": {"hybrid": {"queries": [{"match_all": {}}, {"term": {"title": "France"}}]}},
            "ext": {"rerank": {"query_context": {"query_text": QUERY}}}}
    async with CountingML(ml_node.url) as ml:
        before = await run_search("docs", {k: v for k, v in body.items() if k != "ext"}, search_fn=index.search_fn,
                                  ml=ml)
        ml.predicts.clear()
        resp = await run_search("docs", body, search_fn=index.search_fn, ml=ml, pipeline=pipe)

    assert ml.predicts == ["text_similarity"]  # one batched predict for the whole page
    page = [h["_id"] for h in before["hits"]["hits"]]
    logits = dict(zip(page, _transformers_logits([(QUERY, CORPUS[i]["title"] + CORPUS[i]["text"]) for i in page])))
    expected = sorted(page, key=lambda i: -logits[i])
    assert [h["_id"] for h in resp["hits"]["hits"]] == expected
    for hit in resp["hits"]["hits"]:
        assert hit["_score"] == pytest.approx(logits[hit["_id"]], abs=1e-4)
    assert resp["hits"]["max_score"] == resp["hits"]["hits"][0]["_score"]
    assert all("ext" not in r for r in index.requests)  # ext.rerank is the processor's, never sent to the index


async def test_export_resolves_the_rerank_model_name():
    body = {"response_processors": [{"rerank": {"ml_opensearch": {"model_id": "dense-name"},
                                                "context": {"document_fields": ["text"]}}}]}
    out = await resolve_model_names("search", body, ml=RecordingML())
    assert out["response_processors"][0]["rerank"]["ml_opensearch"]["model_id"] == "dense-id"
    assert SearchPipeline.from_body("p", body, ml=None).model_refs() == ["dense-name"]
