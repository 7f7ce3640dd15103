"""What a search returns on the data node's fast path: only the parts of stored documents the request asks for.

The hit sources are decoded without the vectors a ``_source`` filter drops; these tests pin that the filtered
``_source`` is still exactly what OpenSearch's filtering gives, including the traps (a non-vector key with a
vector's name, a string holding vector-like JSON, vectors inside nested objects)."""

from __future__ import annotations

import urllib.request
from typing import Any

import pytest
from opensearchpy import RequestError

from tests.fixtures.datanode import os_client

pytestmark = pytest.mark.integration

INDEX = {
    "settings": {"index": {"knn": True, "number_of_replicas": 0}},
    "mappings": {"properties": {
        "title": {"type": "keyword"},
        "vec": {"type": "knn_vector", "dimension": 2, "method": {"name": "hnsw", "engine": "faiss",
                                                                 "space_type": "l2"}},
        "meta": {"properties": {"vec": {"type": "float"}, "note": {"type": "keyword"}}},
        "passages": {"type": "nested", "properties": {
            "vec": {"type": "knn_vector", "dimension": 2},
            "text": {"type": "keyword"}}},
        "quote": {"type": "keyword"},
    }},
}
DOC = {"title": "first", "vec": [1.0, 0.25], "meta": {"vec": [3.5, -1e-3], "note": "not a knn vector"},
       "passages": [{"vec": [0.5, 0.5], "text": "p1"}, {"vec": [-1, 2], "text": "p2"}],
       "quote": '{"vec":[9,9]}'}


@pytest.fixture
def client(data_node: Any) -> Any:
    c = os_client(data_node.url)
    c.indices.create(index="src", body=INDEX)
    c.index(index="src", id="1", body=DOC, refresh=True)
    yield c
    c.close()


def knn_search(client: Any, **body: Any) -> dict[str, Any]:
    return client.search(index="src", body={"query": {"knn": {"vec": {"vector": [1, 0], "k": 1}}}, **body})


@pytest.mark.parametrize("source, expected", [
    (True, DOC),
    (["title"], {"title": "first"}),
    ({"excludes": ["vec"]}, {k: v for k, v in DOC.items() if k != "vec"}),
    (["meta"], {"meta": DOC["meta"]}),             # "meta.vec" is no knn vector: kept, with its exact values
    (["meta.vec", "quote"], {"meta": {"vec": [3.5, -1e-3]}, "quote": DOC["quote"]}),
    ({"excludes": ["vec", "passages.vec"]}, {"title": "first", "meta": DOC["meta"], "quote": DOC["quote"],
                                             "passages": [{"text": "p1"}, {"text": "p2"}]}),
    (["passages"], {"passages": DOC["passages"]}),
    (["vec"], {"vec": [1.0, 0.25]}),
    ("title,quote", {"title": "first", "quote": DOC["quote"]}),
])
def test_hit_source_is_exactly_what_the_filter_keeps(client: Any, source: Any, expected: dict[str, Any]) -> None:
    hit = knn_search(client, _source=source)["hits"]["hits"][0]
    assert hit["_id"] == "1" and hit["_source"] == expected


def test_url_source_parameters_filter_hits_too(client: Any) -> None:
    res = client.search(index="src", body={"query": {"match_all": {}}},
                        params={"_source_includes": "title,meta", "_source_excludes": "meta.note"})
    assert res["hits"]["hits"][0]["_source"] == {"title": "first", "meta": {"vec": [3.5, -1e-3]}}


def test_no_source_asked_gives_none_but_versions_still_come(client: Any) -> None:
    client.index(index="src", id="1", body=DOC, refresh=True)  # version 2
    hit = knn_search(client, _source=False)["hits"]["hits"][0]
    assert set(hit) == {"_index", "_id", "_score"} and hit["_score"] == pytest.approx(1 / (1 + 0.0625))
    hit = knn_search(client, _source=False, version=True, seq_no_primary_term=True)["hits"]["hits"][0]
    assert "_source" not in hit and hit["_version"] == 2 and hit["_seq_no"] == 1 and hit["_primary_term"] == 1


def test_nested_inner_hits_still_see_the_whole_document(client: Any) -> None:
    res = client.search(index="src", body={"_source": ["title"], "query": {"nested": {
        "path": "passages", "query": {"term": {"passages.text": "p2"}}, "inner_hits": {}}}})
    hit = res["hits"]["hits"][0]
    assert hit["_source"] == {"title": "first"}
    inner = hit["inner_hits"]["passages"]["hits"]["hits"]
    assert [h["_source"] for h in inner] == [{"vec": [-1, 2], "text": "p2"}]


def test_search_body_errors_are_still_opensearch_errors(client: Any) -> None:
    with pytest.raises(RequestError) as err:
        client.transport.perform_request("POST", "/src/_search", body='{"query": ')
    assert err.value.status_code == 400 and err.value.error == "parse_exception"
    with pytest.raises(RequestError) as err:
        client.search(index="src", body={"query": {"nope": {}}})
    assert err.value.error == "parsing_exception" and "unknown query [nope]" in str(err.value.info)


def test_knn_scores_and_max_score_across_ef_search_and_filters(data_node: Any) -> None:
    c = os_client(data_node.url)
    c.indices.create(index="cos", body={"settings": {"index.knn": True}, "mappings": {"properties": {
        "v": {"type": "knn_vector", "dimension": 2, "method": {"name": "hnsw", "engine": "faiss",
                                                              "space_type": "cosinesimil"}},
        "tag": {"type": "keyword"}}}})
    body = "".join(f'{{"index":{{"_index":"cos","_id":"{i}"}}}}\n{{"v":[{i + 1},{30 - i}],"tag":"{"ab"[i % 2]}"}}\n'
                   for i in range(30))
    c.bulk(body=body, refresh=True)

    def expected(i: int) -> float:  # OpenSearch cosinesimil score: (1 + cos) / 2, query [1, 0]
        return (1 + (i + 1) / ((i + 1) ** 2 + (30 - i) ** 2) ** 0.5) / 2

    for ef in (None, 1, 200, None):
        knn: dict[str, Any] = {"vector": [3, 0], "k": 3}
        if ef is not None:
            knn["method_parameters"] = {"ef_search": ef}
        hits = c.search(index="cos", body={"size": 3, "query": {"knn": {"v": knn}}})["hits"]
        assert [h["_id"] for h in hits["hits"]] == ["29", "28", "27"]
        assert [h["_score"] for h in hits["hits"]] == pytest.approx([expected(i) for i in (29, 28, 27)], rel=1e-6)
        assert hits["max_score"] == hits["hits"][0]["_score"]
    filtered = c.search(index="cos", body={"size": 2, "query": {"knn": {"v": {
        "vector": [3, 0], "k": 2, "filter": {"term": {"tag": "a"}}}}}})["hits"]
    assert [h["_id"] for h in filtered["hits"]] == ["28", "26"]
    assert filtered["max_score"] == filtered["hits"][0]["_score"]
    by_field = c.search(index="cos", body={"size": 2, "sort": [{"tag": "asc"}], "query": {"knn": {"v": {
        "vector": [3, 0], "k": 4}}}})["hits"]
    assert by_field["max_score"] is None and all(h["_score"] is None for h in by_field["hits"])
    c.close()


def test_a_data_node_alone_serves_its_metrics(data_node: Any) -> None:
    c = os_client(data_node.url)
    c.indices.create(index="solo", body={})
    c.index(index="solo", id="1", body={"x": 1}, refresh=True)
    c.search(index="solo", body={"query": {"match_all": {}}})
    c.close()
    with urllib.request.urlopen(data_node.url + "/metrics", timeout=10) as resp:
        text = resp.read().decode()
    assert 'datanode_documents{index="solo"} 1.0' in text
    assert 'datanode_search_requests_total{kind="plain",outcome="ok"} 1.0' in text
