"""``ml_inference`` ingest and search processors client-side (the processors package), with the real ML node and
the real bundled models. The pipeline bodies are the OpenSearch documentation's local-model examples, verbatim
but for ``<your model id>`` (documentation-website ``_ingest-pipelines/processors/ml-inference.md``,
``_search-plugins/search-pipelines/ml-inference-search-request.md`` and ``ml-inference-search-response.md``).

Expected vectors come from the ML node's own ``_predict`` REST answer for the same texts (raw aiohttp)."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import aiohttp
import pytest

from processors import IngestDocument, IngestPipeline, MLClient
from processors.errors import ProcessorConfigError
from processors.pipeline import SearchPipeline
from processors.search import run_search

pytestmark = [pytest.mark.integration]

MODEL_INPUT = ('{ "text_docs": ${input_map.text_docs}, "return_number": ${model_config.return_number}, '
               '"target_response": ${model_config.target_response} }')

# documentation: _ingest-pipelines/processors/ml-inference.md, "Example: Local model"
INGEST_DOC_PIPELINE = r'''{
  "description": "ingests reviews and generates embeddings",
  "processors": [
    {
      "ml_inference": {
        "function_name": "text_embedding",
        "full_response_path": true,
        "model_id": "<your model id>",
        "model_config": {
          "return_number": true,
          "target_response": ["sentence_embedding"]
        },
        "model_input": "{ \"text_docs\": ${input_map.text_docs}, \"return_number\": ${model_config.return_number}, \"target_response\": ${model_config.target_response} }",
        "input_map": [
          {
            "text_docs": "book.*.chunk.text.*.context"
          }
        ],
        "output_map": [
          {
            "book.*.chunk.text.*.context_embedding": "$.inference_results.*.output.*.data"
          }
        ],
        "ignore_missing": true,
        "ignore_failure": true
      }
    }
  ]
}'''  # noqa: E501

INGEST_DOC_SIMULATE = '''{
  "docs": [
    {
      "_index": "my_books",
      "_id": "1",
      "_source": {
        "book": [
          {
            "chunk": {
              "text": [
                {
                  "chapter": "first chapter",
                  "context": "this is the first part"
                },
                {
                  "chapter": "first chapter",
                  "context": "this is the second part"
                }
              ]
            }
          },
          {
            "chunk": {
              "text": [
                {
                  "chapter": "second chapter",
                  "context": "this is the third part"
                },
                {
                  "chapter": "second chapter",
                  "context": "this is the fourth part"
                }
              ]
            }
          }
        ]
      }
    }
  ]
}'''

# documentation: _search-plugins/search-pipelines/ml-inference-search-response.md, "Example: Local model"
RESPONSE_DOC_PIPELINE = r'''{
  "description": "search passage and generates embeddings",
  "response_processors": [
    {
      "ml_inference": {
        "function_name": "text_embedding",
        "full_response_path": true,
        "model_id": "<your model id>",
        "model_config": {
          "return_number": true,
          "target_response": ["sentence_embedding"]
        },
        "model_input": "{ \"text_docs\": ${input_map.text_docs}, \"return_number\": ${model_config.return_number}, \"target_response\": ${model_config.target_response} }",
        "input_map": [
          {
            "text_docs": "passage_text"
          }
        ],
        "output_map": [
          {
            "passage_embedding": "$.inference_results.*.output.*.data"
          }
        ],
        "ignore_missing": true,
        "ignore_failure": true
      }
    }
  ]
}'''  # noqa: E501

# documentation: _search-plugins/search-pipelines/ml-inference-search-request.md, "Example: Local model" (Dev Tools
# console text: the triple-quoted query_template is turned into a JSON string, as the console does)
REQUEST_DOC_PIPELINE = r'''{
  "description": "searchs reviews and generates embeddings",
  "request_processors": [
    {
      "ml_inference": {
        "function_name": "text_embedding",
        "full_response_path": true,
        "model_id": "<your model id>",
        "model_config": {
          "return_number": true,
          "target_response": [
            "sentence_embedding"
          ]
        },
        "model_input": "{ \"text_docs\": ${input_map.text_docs}, \"return_number\": ${model_config.return_number}, \"target_response\": ${model_config.target_response} }",
        "query_template": """{
        "size": 2,
        "query": {
          "knn": {
            "passage_embedding": {
              "vector": ${modelPredictionOutcome},
              "k": 5
              }
            }
           }
          }""",
        "input_map": [
          {
            "text_docs": "query.term.passage_embedding.value"
          }
        ],
        "output_map": [
          {
            "modelPredictionOutcome": "$.inference_results.*.output.*.data"
          }
        ],
        "ignore_missing": true,
        "ignore_failure": true
      }
    }
  ]
}'''  # noqa: E501

REQUEST_DOC_QUERY = '''{
"query": {
  "term": {
    "passage_embedding": {
      "value": "happy passage"
      }
    }
  }
}'''


def console_json(text: str, model_id: str) -> dict[str, Any]:
    """A Dev Tools console body as the console sends it: triple-quoted strings become JSON strings."""
    text = re.sub(r'"""(.*?)"""', lambda m: json.dumps(m.group(1)), text, flags=re.S)
    return json.loads(text.replace("<your model id>", model_id))


async def raw_vectors(url: str, model_id: str, texts: list[str]) -> list[list[float]]:
    body = {"text_docs": texts, "return_number": True, "target_response": ["sentence_embedding"]}
    async with aiohttp.ClientSession() as s:
        async with s.post(f"{url}/_plugins/_ml/_predict/text_embedding/{model_id}", json=body) as r:
            assert r.status == 200, await r.text()
            payload = await r.json()
    return [res["output"][0]["data"] for res in payload["inference_results"]]


class CountingML(MLClient):
    """Our real client against the real node, recording every predict body."""

    def __init__(self, url: str, **kwargs: Any) -> None:
        super().__init__(url, **kwargs)
        self.predicts: list[tuple[str, dict[str, Any]]] = []

    async def predict(self, model_id: str, algorithm: str, body: dict[str, Any]) -> dict[str, Any]:
        self.predicts.append((model_id, copy.deepcopy(body)))
        return await super().predict(model_id, algorithm, body)


def book(*contexts: str) -> dict[str, Any]:
    return {"book": [{"chunk": {"text": [{"chapter": "c", "context": c} for c in contexts]}}]}


# -- ingest ----------------------------------------------------------------------------------------------------------

async def test_ingest_documentation_example_writes_each_nested_embedding(ml_node: Any) -> None:
    model_id = ml_node.model_ids["dense"]
    async with CountingML(ml_node.url) as ml:
        pipeline = IngestPipeline.from_body("ml_inference_pipeline_local", console_json(INGEST_DOC_PIPELINE, model_id),
                                            ml=ml)
        doc = json.loads(INGEST_DOC_SIMULATE)["docs"][0]
        (result,) = await pipeline.run([IngestDocument(doc["_index"], doc["_id"], copy.deepcopy(doc["_source"]))])
    assert isinstance(result, IngestDocument)
    texts = ["this is the first part", "this is the second part", "this is the third part", "this is the fourth part"]
    want = await raw_vectors(ml_node.url, model_id, texts)
    got = [t["context_embedding"] for b in result.source["book"] for t in b["chunk"]["text"]]
    assert got == want  # the same texts in the same one predict call: the very same numbers
    assert len(got[0]) == 384
    # everything else as it was: the documentation's response shows context next to context_embedding
    assert [t["context"] for b in result.source["book"] for t in b["chunk"]["text"]] == texts
    assert [set(t) for b in result.source["book"] for t in b["chunk"]["text"]] == [
        {"chapter", "context", "context_embedding"}] * 4
    assert ml.predicts == [(model_id, {"text_docs": texts, "return_number": True,
                                       "target_response": ["sentence_embedding"]})]


async def test_ingest_batch_is_one_predict_call_and_each_document_gets_its_own_vectors(ml_node: Any) -> None:
    model_id = ml_node.model_ids["dense"]
    docs = [IngestDocument("books", str(i), book(*texts)) for i, texts in
            enumerate([["alpha one", "alpha two"], ["beta"], ["gamma one", "gamma two", "gamma three"]])]
    docs.append(IngestDocument("books", "3", {"title": "no book field"}))
    async with CountingML(ml_node.url) as ml:
        pipeline = IngestPipeline.from_body("p", console_json(INGEST_DOC_PIPELINE, model_id), ml=ml)
        results = await pipeline.run(docs)
    all_texts = ["alpha one", "alpha two", "beta", "gamma one", "gamma two", "gamma three"]
    assert [texts for _, body in ml.predicts for texts in [body["text_docs"]]] == [all_texts]
    want = dict(zip(all_texts, await raw_vectors(ml_node.url, model_id, all_texts)))
    for result in results[:3]:
        assert isinstance(result, IngestDocument)
        items = result.source["book"][0]["chunk"]["text"]
        for item in items:
            if len(items) > 1:
                assert item["context_embedding"] == want[item["context"]]
            else:  # one place to write: ML Commons writes the whole JSONPath result there, a list of one vector
                assert item["context_embedding"] == [want[item["context"]]]
    # no `book`: no place to write, so ML Commons skips the document (no predict, no error)
    assert isinstance(results[3], IngestDocument) and results[3].source == {"title": "no book field"}


async def test_ingest_override_false_keeps_existing_field_and_skips_the_call(ml_node: Any) -> None:
    model_id = ml_node.model_ids["dense"]
    body = {"processors": [{"ml_inference": {
        "function_name": "text_embedding", "model_id": model_id,
        "model_input": '{ "text_docs": ["${input_map.text_docs}"] }',
        "input_map": [{"text_docs": "passage_text"}],
        "output_map": [{"passage_embedding": "$.inference_results[0].output[0].data"}]}}]}
    async with CountingML(ml_node.url) as ml:
        pipeline = IngestPipeline.from_body("p", body, ml=ml)
        kept, fresh = await pipeline.run([IngestDocument("i", "1", {"passage_text": "hello", "passage_embedding": [1]}),
                                          IngestDocument("i", "2", {"passage_text": "hello world"})])
        assert [b["text_docs"] for _, b in ml.predicts] == [["hello world"]]
        override = IngestPipeline.from_body("p", {"processors": [{"ml_inference": {
            **body["processors"][0]["ml_inference"], "override": True}}]}, ml=ml)
        (replaced,) = await override.run([IngestDocument("i", "1", {"passage_text": "hello",
                                                                    "passage_embedding": [1]})])
    assert isinstance(kept, IngestDocument) and kept.source["passage_embedding"] == [1]
    assert isinstance(fresh, IngestDocument)
    assert fresh.source["passage_embedding"] == (await raw_vectors(ml_node.url, model_id, ["hello world"]))[0]
    assert isinstance(replaced, IngestDocument)
    assert replaced.source["passage_embedding"] == (await raw_vectors(ml_node.url, model_id, ["hello"]))[0]


async def test_ingest_sparse_model_writes_token_weights(ml_node: Any) -> None:
    model_id = ml_node.model_ids["sparse"]
    body = {"processors": [{"ml_inference": {
        "function_name": "sparse_encoding", "model_id": model_id,
        "model_input": '{ "text_docs": ["${input_map.text_docs}"] }',
        "input_map": [{"text_docs": "body"}],
        "output_map": [{"body_sparse": "$.inference_results[0].output[0].dataAsMap.response[0]"}]}}]}
    async with MLClient(ml_node.url) as ml:
        pipeline = IngestPipeline.from_body("p", body, ml=ml)
        (doc,) = await pipeline.run([IngestDocument("i", "1", {"body": "vaccines train the immune system"})])
    async with aiohttp.ClientSession() as s:
        async with s.post(f"{ml_node.url}/_plugins/_ml/_predict/sparse_encoding/{model_id}",
                          json={"text_docs": ["vaccines train the immune system"]}) as r:
            want = (await r.json())["inference_results"][0]["output"][0]["dataAsMap"]["response"][0]
    assert isinstance(doc, IngestDocument)
    assert doc.source["body_sparse"] == want and want


@pytest.mark.parametrize("ignore_missing, ignore_failure, expect", [
    (False, False, "Cannot find field name defined from input map: passage_text"),
    (True, False, None),  # documented: missing input fields are ignored (no predict, the document as it was)
    (False, True, None),
])
async def test_ingest_missing_input_field(ml_node: Any, ignore_missing: bool, ignore_failure: bool,
                                          expect: str | None) -> None:
    body = {"processors": [{"ml_inference": {
        "function_name": "text_embedding", "model_id": ml_node.model_ids["dense"],
        "model_input": '{ "text_docs": ["${input_map.text_docs}"] }',
        "input_map": [{"text_docs": "passage_text"}], "output_map": [{"vec": "$.inference_results[0].output[0].data"}],
        "ignore_missing": ignore_missing, "ignore_failure": ignore_failure}}]}
    async with CountingML(ml_node.url) as ml:
        (result,) = await IngestPipeline.from_body("p", body, ml=ml).run([IngestDocument("i", "1", {"other": "x"})])
        assert ml.predicts == []
    if expect is None:
        assert isinstance(result, IngestDocument) and result.source == {"other": "x"}
    else:
        assert not isinstance(result, IngestDocument)
        assert result.reason == expect and result.status == 400


async def test_ingest_output_count_mismatch_is_reported(ml_node: Any) -> None:
    body = {"processors": [{"ml_inference": {
        "function_name": "text_embedding", "model_id": ml_node.model_ids["dense"],
        "model_input": '{ "text_docs": ["${input_map.text_docs}"] }',
        "input_map": [{"text_docs": "book[0].chunk.text[0].context"}],
        "output_map": [{"book.*.chunk.text.*.vec": "$.inference_results.*.output.*.data"}]}}]}
    async with MLClient(ml_node.url) as ml:
        (result,) = await IngestPipeline.from_body("p", body, ml=ml).run([IngestDocument("i", "1", book("a", "b"))])
    assert not isinstance(result, IngestDocument)
    assert result.reason == ("the prediction field: $.inference_results.*.output.*.data is an array in size of 1 "
                             "but the document field array from field book.*.chunk.text.*.vec is in size of 2")


# -- search response -------------------------------------------------------------------------------------------------

def hits_response(*sources: dict[str, Any]) -> dict[str, Any]:
    return {"took": 1, "timed_out": False, "hits": {"total": {"value": len(sources), "relation": "eq"},
            "max_score": 1.0, "hits": [{"_index": "my_index", "_id": str(i + 1), "_score": 1.0, "_source": s}
                                       for i, s in enumerate(sources)]}}


def fixed_search(response: dict[str, Any], seen: list[dict[str, Any]]) -> Any:
    async def search_fn(index: str, body: dict[str, Any]) -> dict[str, Any]:
        seen.append(body)
        return copy.deepcopy(response)
    return search_fn


async def test_response_documentation_example_adds_each_hits_embedding(ml_node: Any) -> None:
    model_id = ml_node.model_ids["dense"]
    texts = ["hello world", "hi there", "good morning"]
    async with CountingML(ml_node.url) as ml:
        pipeline = SearchPipeline.from_body("ml_inference_pipeline_local", console_json(RESPONSE_DOC_PIPELINE,
                                                                                        model_id), ml=ml)
        seen: list[dict[str, Any]] = []
        out = await run_search("my_index", {"query": {"term": {"passage_text": {"value": "hello"}}}},
                               search_fn=fixed_search(hits_response(*({"passage_text": t} for t in texts)), seen),
                               ml=ml, pipeline=pipeline)
    want = await raw_vectors(ml_node.url, model_id, texts)
    assert [h["_source"] for h in out["hits"]["hits"]] == [{"passage_text": t, "passage_embedding": v}
                                                           for t, v in zip(texts, want)]
    assert [b["text_docs"] for _, b in ml.predicts] == [texts]  # one call for all hits (one_to_one false)


async def test_response_one_to_one_calls_once_per_hit(ml_node: Any) -> None:
    model_id = ml_node.model_ids["dense"]
    body = console_json(RESPONSE_DOC_PIPELINE, model_id)
    cfg = body["response_processors"][0]["ml_inference"]
    cfg.update(one_to_one=True, model_input='{ "text_docs": ["${input_map.text_docs}"] }',
               output_map=[{"passage_embedding": "$.inference_results[0].output[0].data"}])
    texts = ["hello world", "hi there"]
    async with CountingML(ml_node.url) as ml:
        pipeline = SearchPipeline.from_body("p", body, ml=ml)
        out = await run_search("my_index", {"query": {"match_all": {}}}, ml=ml, pipeline=pipeline,
                               search_fn=fixed_search(hits_response(*({"passage_text": t} for t in texts)), []))
    assert sorted(b["text_docs"][0] for _, b in ml.predicts) == texts and len(ml.predicts) == 2
    for hit, text in zip(out["hits"]["hits"], texts):
        # a call's threads follow the node's load: equal to float rounding, not bit for bit
        assert hit["_source"]["passage_embedding"] == pytest.approx(
            (await raw_vectors(ml_node.url, model_id, [text]))[0], rel=1e-5, abs=1e-6)


async def test_response_missing_field_fails_without_ignore_missing(ml_node: Any) -> None:
    body = console_json(RESPONSE_DOC_PIPELINE, ml_node.model_ids["dense"])
    body["response_processors"][0]["ml_inference"].update(ignore_missing=False, ignore_failure=False)
    async with MLClient(ml_node.url) as ml:
        pipeline = SearchPipeline.from_body("p", body, ml=ml)
        with pytest.raises(Exception) as err:
            await run_search("my_index", {"query": {"match_all": {}}}, ml=ml, pipeline=pipeline,
                             search_fn=fixed_search(hits_response({"passage_text": "a"}, {"title": "b"}), []))
    assert err.value.status == 400  # type: ignore[attr-defined]
    assert err.value.reason.startswith("cannot find all required input fields: ['passage_text'] in hit:")  # type: ignore[attr-defined]


# -- search request --------------------------------------------------------------------------------------------------

async def test_request_documentation_example_as_opensearch_runs_it(ml_node: Any) -> None:
    """The documentation's request example cannot work in ML Commons as written: ``${input_map.text_docs}`` puts the
    query text in bare (``"text_docs": happy passage``), so the payload is not JSON, and with ``ignore_failure`` the
    processor leaves the query as it was. The same here, and without ``ignore_failure`` the error is ML Commons'."""
    model_id = ml_node.model_ids["dense"]
    query = json.loads(REQUEST_DOC_QUERY)
    async with CountingML(ml_node.url) as ml:
        seen: list[dict[str, Any]] = []
        pipeline = SearchPipeline.from_body("ml_inference_pipeline_local", console_json(REQUEST_DOC_PIPELINE,
                                                                                        model_id), ml=ml)
        await run_search("my_index", query, search_fn=fixed_search(hits_response(), seen), ml=ml, pipeline=pipeline)
        assert seen == [query] and ml.predicts == []
        strict = console_json(REQUEST_DOC_PIPELINE, model_id)
        strict["request_processors"][0]["ml_inference"]["ignore_failure"] = False
        pipeline = SearchPipeline.from_body("p", strict, ml=ml)
        with pytest.raises(Exception) as err:
            await run_search("my_index", query, search_fn=fixed_search(hits_response(), []), ml=ml,
                             pipeline=pipeline)
    assert err.value.status == 400  # type: ignore[attr-defined]
    assert err.value.reason == (  # type: ignore[attr-defined]
        'Invalid payload: { "text_docs": happy passage, "return_number": true, '
        '"target_response": ["sentence_embedding"] }')


async def test_request_query_template_rewrites_term_into_knn_with_the_query_vector(ml_node: Any) -> None:
    """The documentation's request example with the two changes ML Commons' own tests make for a local model: the
    query text quoted in ``model_input``, and one vector (``[0]``) read from the output."""
    model_id = ml_node.model_ids["dense"]
    body = console_json(REQUEST_DOC_PIPELINE, model_id)
    cfg = body["request_processors"][0]["ml_inference"]
    cfg["model_input"] = cfg["model_input"].replace("${input_map.text_docs}", '["${input_map.text_docs}"]')
    cfg["output_map"] = [{"modelPredictionOutcome": "$.inference_results[0].output[0].data"}]
    cfg["ignore_failure"] = False
    async with CountingML(ml_node.url) as ml:
        seen: list[dict[str, Any]] = []
        pipeline = SearchPipeline.from_body("p", body, ml=ml)
        await run_search("my_index", json.loads(REQUEST_DOC_QUERY), search_fn=fixed_search(hits_response(), seen),
                         ml=ml, pipeline=pipeline)
    (vector,) = await raw_vectors(ml_node.url, model_id, ["happy passage"])
    assert seen == [{"size": 2, "query": {"knn": {"passage_embedding": {"vector": vector, "k": 5}}}}]


async def test_request_output_map_writes_into_the_query(ml_node: Any) -> None:
    model_id = ml_node.model_ids["dense"]
    body = {"request_processors": [{"ml_inference": {
        "function_name": "text_embedding", "model_id": model_id,
        "model_input": '{ "text_docs": ["${input_map.text_docs}"] }',
        "input_map": [{"text_docs": "query.knn.vec.vector"}],
        "output_map": [{"query.knn.vec.vector": "$.inference_results[0].output[0].data"}]}}]}
    async with MLClient(ml_node.url) as ml:
        seen: list[dict[str, Any]] = []
        await run_search("i", {"query": {"knn": {"vec": {"vector": "a rainy day", "k": 3}}}},
                         search_fn=fixed_search(hits_response(), seen), ml=ml,
                         pipeline=SearchPipeline.from_body("p", body, ml=ml))
    (vector,) = await raw_vectors(ml_node.url, model_id, ["a rainy day"])
    assert seen == [{"query": {"knn": {"vec": {"vector": vector, "k": 3}}}}]


async def test_request_missing_query_field(ml_node: Any) -> None:
    body = {"request_processors": [{"ml_inference": {
        "function_name": "text_embedding", "model_id": ml_node.model_ids["dense"],
        "model_input": '{ "text_docs": ["${input_map.text_docs}"] }',
        "input_map": [{"text_docs": "query.term.text.value"}],
        "output_map": [{"query.term.text.value": "$.inference_results[0].output[0].data"}]}}]}
    query = {"query": {"match": {"text": "x"}}}
    async with CountingML(ml_node.url) as ml:
        with pytest.raises(Exception) as err:
            await run_search("i", query, search_fn=fixed_search(hits_response(), []), ml=ml,
                             pipeline=SearchPipeline.from_body("p", body, ml=ml))
        body["request_processors"][0]["ml_inference"]["ignore_missing"] = True
        seen: list[dict[str, Any]] = []
        await run_search("i", query, search_fn=fixed_search(hits_response(), seen), ml=ml,
                         pipeline=SearchPipeline.from_body("p", body, ml=ml))
        assert ml.predicts == []
    assert err.value.reason == ('cannot find field: query.term.text.value in query string: '  # type: ignore[attr-defined]
                                '{"query":{"match":{"text":"x"}}}')
    assert seen == [query]


# -- configuration errors (ML Commons' messages) --------------------------------------------------------------------

LOCAL = {"model_id": "m", "function_name": "text_embedding", "model_input": '{ "text_docs": ["${input_map.t}"] }'}


@pytest.mark.parametrize("kind, config, message", [
    ("ingest", {"function_name": "text_embedding", "model_input": "{}"}, "[model_id] required property is missing"),
    ("ingest", {"model_id": "m", "function_name": "text_embedding"},
     "Please provide model input when using a local model in ML Inference Processor"),
    ("ingest", {**LOCAL, "input_map": [{"t": "a"}, {"t": "b"}], "max_prediction_tasks": 1},
     "The number of prediction task setting in this process is 2. It exceeds the max_prediction_tasks of 1. Please "
     "reduce the size of input_map or increase max_prediction_tasks."),
    ("ingest", {**LOCAL, "input_map": [{"t": "a"}], "output_map": [{"x": "y"}, {"z": "w"}]},
     "The length of output_map and the length of input_map do no match."),
    ("ingest", {**LOCAL, "input_map": {"t": "a"}}, "[input_map] property isn't a list, but of type "
                                                   "[java.util.LinkedHashMap]"),
    ("ingest", {**LOCAL, "full_response_path": "yes"}, "[full_response_path] property isn't a boolean, but of type "
                                                       "[java.lang.String]"),
    ("ingest", {**LOCAL, "max_prediction_tasks": "ten"}, "[max_prediction_tasks] property cannot be converted to an "
                                                         "int [ten]"),
    ("ingest", {**LOCAL, "function_name": "text_embeding"},
     "Wrong function name [text_embeding]; valid values: [remote, sparse_encoding, sparse_tokenize, text_embedding, "
     "text_similarity]"),
    ("ingest", {**LOCAL, "one_to_one": True}, "processor [ml_inference] doesn't support one or more provided "
                                              "configuration parameters [one_to_one]"),
    ("request", {**LOCAL, "output_map": [{"x": "y"}]},
     "Please provide at least one non-empty input_map or optional_input_map for ML Inference Search Request "
     "Processor"),
    ("request", {**LOCAL, "input_map": [{"t": "query.term.a.value"}]},
     "Please provide at least one non-empty output_map or optional_output_map for ML Inference Search Request "
     "Processor"),
    ("request", {**LOCAL, "input_map": [{"t": "a"}, {"t": "b"}], "output_map": [{"x": "y"}]},
     "when output_maps/optional_output_maps and input_maps/optional_input_maps are provided, their length needs to "
     "match. The input is in length of 2, while output_maps is in the length of 1. Please adjust mappings."),
    ("request", {**LOCAL, "input_map": [{"t": "a"}] * 11, "output_map": [{"x": "y"}] * 11},
     "The number of prediction task setting in this process is 11. It exceeds the max_prediction_tasks of 10. Please "
     "reduce the size of input_map or optional_input_map or increase max_prediction_tasks."),
    ("response", {**LOCAL, "one_to_one": True, "input_map": [{"t": "a"}], "output_map": [{"ext.ml_inference.x": "y"}]},
     "Write model response to search extension does not support when one_to_one is true."),
    ("response", {**LOCAL, "input_map": [{"t": "a"}], "output_map": [{"x": "y"}], "query_template": "{}"},
     "processor [ml_inference] doesn't support one or more provided configuration parameters [query_template]"),
])
def test_bad_configurations_get_ml_commons_messages(kind: str, config: dict[str, Any], message: str) -> None:
    key = {"ingest": "processors", "request": "request_processors", "response": "response_processors"}[kind]
    body = {key: [{"ml_inference": config}]}
    with pytest.raises(ProcessorConfigError) as err:
        if kind == "ingest":
            IngestPipeline.from_body("p", body, ml=MLClient("http://127.0.0.1:9"))
        else:
            SearchPipeline.from_body("p", body, ml=MLClient("http://127.0.0.1:9"))
    assert err.value.reason == message
    assert err.value.status == 400
    assert err.value.to_body()["error"]["processor_type"] == "ml_inference"


def test_defaults_as_documented() -> None:
    ml = MLClient("http://127.0.0.1:9")
    local = IngestPipeline.from_body("p", {"processors": [{"ml_inference": {**LOCAL}}]}, ml=ml).processors[0]
    remote = IngestPipeline.from_body("p", {"processors": [{"ml_inference": {"model_id": "m"}}]}, ml=ml).processors[0]
    assert (local.config.full_response_path, local.config.max_prediction_tasks, local.config.ignore_missing,
            local.config.override) == (True, 10, False, False)
    assert (remote.config.function_name, remote.config.full_response_path, remote.config.model_input) == (
        "REMOTE", False, '{ "parameters": ${ml_inference.parameters} }')
    response = SearchPipeline.from_body("p", {"response_processors": [{"ml_inference": {**LOCAL}}]}, ml=ml)
    assert response.response_processors[0].config.one_to_one is False
