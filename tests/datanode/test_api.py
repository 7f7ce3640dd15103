"""The data node's REST API driven by the real opensearch-py client (sync) over loopback."""

from __future__ import annotations

from typing import Any

import pytest
from opensearchpy import NotFoundError, RequestError, TransportError, helpers

from tests.fixtures.datanode import os_client

pytestmark = pytest.mark.integration

KNN_INDEX = {
    "settings": {"index": {"knn": True, "number_of_shards": 2, "number_of_replicas": 0}},
    "mappings": {"properties": {
        "title": {"type": "text"},
        "tag": {"type": "keyword"},
        "year": {"type": "integer"},
        "price": {"type": "float"},
        "published": {"type": "date"},
        "draft": {"type": "boolean"},
        "vec": {"type": "knn_vector", "dimension": 3,
                "method": {"name": "hnsw", "engine": "faiss", "space_type": "l2",
                           "parameters": {"m": 8, "ef_construction": 64}}},
        "tokens": {"type": "rank_features"},
    }},
}


def docs() -> list[dict[str, Any]]:
    return [
        {"_id": "1", "title": "The quick brown fox", "tag": "animal", "year": 2001, "price": 9.5,
         "published": "2020-01-02", "draft": False, "vec": [1, 0, 0], "tokens": {"fox": 1.5, "quick": 0.5}},
        {"_id": "2", "title": "A lazy dog sleeps", "tag": "animal", "year": 2010, "price": 20.0,
         "published": "2021-06-01T10:00:00Z", "draft": True, "vec": [0, 1, 0], "tokens": {"dog": 2.0}},
        {"_id": "3", "title": "Quick thinking wins", "tag": "idea", "year": 2020, "price": 1.0,
         "published": "2023-03-03", "draft": False, "vec": [0, 0, 1], "tokens": {"quick": 1.0}},
    ]


@pytest.fixture
def client(data_node: Any) -> Any:
    c = os_client(data_node.url)
    yield c
    c.close()


@pytest.fixture
def loaded(client: Any) -> Any:
    client.indices.create(index="books", body=KNN_INDEX)
    ok, errors = helpers.bulk(client, [{"_index": "books", **d} for d in docs()], refresh=True)
    assert ok == 3 and errors == []
    return client


def ids(response: dict[str, Any]) -> list[str]:
    return [h["_id"] for h in response["hits"]["hits"]]


def test_info_and_health(client: Any) -> None:
    info = client.info()
    assert info["version"]["distribution"] == "opensearch"
    assert info["version"]["number"] == "3.1.0"
    health = client.cluster.health()
    assert health["status"] in ("green", "yellow") and health["number_of_nodes"] == 1


def test_index_lifecycle(client: Any) -> None:
    assert client.indices.create(index="books", body=KNN_INDEX) == {
        "acknowledged": True, "shards_acknowledged": True, "index": "books"}
    assert client.indices.exists(index="books") is True
    assert client.indices.exists(index="nope") is False
    got = client.indices.get(index="books")["books"]
    assert got["settings"]["index"]["knn"] == "true"
    assert got["settings"]["index"]["number_of_shards"] == "2"
    assert got["settings"]["index"]["number_of_replicas"] == "0"
    assert got["mappings"]["properties"]["vec"]["dimension"] == 3
    with pytest.raises(RequestError) as err:
        client.indices.create(index="books", body=KNN_INDEX)
    assert err.value.error == "resource_already_exists_exception"
    assert "index [books/" in err.value.info["error"]["reason"]
    with pytest.raises(RequestError) as err:
        client.indices.create(index="Books")
    assert err.value.error == "invalid_index_name_exception"
    assert "must be lowercase" in err.value.info["error"]["reason"]
    client.indices.put_mapping(index="books", body={"properties": {"summary": {"type": "text"}}})
    assert client.indices.get_mapping(index="books")["books"]["mappings"]["properties"]["summary"] == {"type": "text"}
    with pytest.raises(RequestError) as err:
        client.indices.put_mapping(index="books", body={"properties": {"year": {"type": "keyword"}}})
    assert "cannot be changed from type [integer] to [keyword]" in err.value.info["error"]["reason"]
    assert client.indices.delete(index="books") == {"acknowledged": True}
    with pytest.raises(NotFoundError) as err:
        client.indices.delete(index="books")
    assert err.value.error == "index_not_found_exception"
    assert err.value.info["error"]["reason"] == "no such index [books]"


@pytest.mark.parametrize("mapping, needle", [
    ({"v": {"type": "knn_vector"}}, "Dimension value missing for vector: v"),
    ({"v": {"type": "knn_vector", "dimension": 3, "space_type": "hamming2"}}, "Invalid space type [hamming2]"),
    ({"v": {"type": "knn_vector", "dimension": 3, "method": {"name": "ivf2"}}}, "Invalid method name [ivf2]"),
    ({"v": {"type": "vectorz"}}, "No handler for type [vectorz] declared on field [v]"),
])
def test_bad_mappings_are_rejected_and_create_nothing(client: Any, mapping: dict[str, Any], needle: str) -> None:
    with pytest.raises(RequestError) as err:
        client.indices.create(index="bad", body={"settings": {"index.knn": True}, "mappings": {"properties": mapping}})
    assert err.value.error == "mapper_parsing_exception"
    assert needle in err.value.info["error"]["reason"]
    assert client.indices.exists(index="bad") is False


def test_documents_crud(loaded: Any) -> None:
    c = loaded
    got = c.get(index="books", id="1")
    assert got["found"] is True and got["_version"] == 1 and got["_source"]["title"] == "The quick brown fox"
    source = {k: v for k, v in docs()[0].items() if k != "_id"} | {"title": "The slow red fox"}
    put = c.index(index="books", id="1", body=source)
    assert put["result"] == "updated" and put["_version"] == 2
    auto = c.index(index="books", body={"title": "no id given"})
    assert auto["result"] == "created" and len(auto["_id"]) >= 16
    upd = c.update(index="books", id="2", body={"doc": {"year": 2011}})
    assert upd["result"] == "updated"
    assert c.get(index="books", id="2")["_source"]["year"] == 2011
    assert c.update(index="books", id="2", body={"doc": {"year": 2011}})["result"] == "noop"
    with pytest.raises(NotFoundError) as err:
        c.update(index="books", id="404", body={"doc": {"year": 1}})
    assert err.value.error == "document_missing_exception"
    assert c.update(index="books", id="404", body={"doc": {"year": 1}, "doc_as_upsert": True})["result"] == "created"
    with pytest.raises(RequestError) as err:
        c.index(index="books", id="9", body={"_id": "x", "title": "metadata inside"})
    assert err.value.error == "mapper_parsing_exception" and "is a metadata field" in err.value.info["error"]["reason"]
    with pytest.raises(TransportError) as err:
        c.create(index="books", id="3", body={"title": "dup"})
    assert err.value.status_code == 409 and err.value.error == "version_conflict_engine_exception"
    assert c.delete(index="books", id="3")["result"] == "deleted"
    with pytest.raises(NotFoundError):
        c.get(index="books", id="3")
    assert c.exists(index="books", id="1") is True and c.exists(index="books", id="3") is False
    mget = c.mget(index="books", body={"ids": ["1", "3"]})
    assert [d["found"] for d in mget["docs"]] == [True, False]
    partial = c.get(index="books", id="1", params={"_source_includes": "title,tag"})
    assert partial["_source"] == {"title": "The slow red fox", "tag": "animal"}


def test_bulk_reports_each_item_and_rejects_only_bad_ones(data_node: Any, client: Any) -> None:
    client.indices.create(index="books", body=KNN_INDEX)
    body = [
        {"index": {"_index": "books", "_id": "a"}}, {"title": "good", "vec": [1, 2, 3]},
        {"index": {"_index": "books", "_id": "b"}}, {"title": "bad dim", "vec": [1, 2]},
        {"index": {"_index": "books", "_id": "c"}}, {"year": "not a number"},
        {"create": {"_index": "books", "_id": "a"}}, {"title": "again"},
        {"update": {"_index": "books", "_id": "zz"}}, {"doc": {"title": "x"}},
        {"delete": {"_index": "books", "_id": "nope"}},
        {"update": {"_index": "books", "_id": "a"}}, {"doc": {"year": 7}},
        {"index": {"_index": "books", "_id": "d"}}, {"title": "also good"},
        {"delete": {"_index": "books", "_id": "d"}},
    ]
    res = client.bulk(body=body, refresh=True)
    assert res["errors"] is True
    items = res["items"]
    assert [next(iter(i)) for i in items] == ["index", "index", "index", "create", "update", "delete", "update",
                                             "index", "delete"]
    status = [next(iter(i.values()))["status"] for i in items]
    assert status == [201, 400, 400, 409, 404, 404, 200, 201, 200]
    bad_dim = items[1]["index"]["error"]
    assert bad_dim["type"] == "mapper_parsing_exception"
    assert bad_dim["caused_by"]["reason"] == "Vector dimension mismatch. Expected: 3, Given: 2"
    bad_num = items[2]["index"]["error"]
    assert bad_num["type"] == "mapper_parsing_exception"
    assert "failed to parse field [year] of type [integer]" in bad_num["reason"]
    assert items[3]["create"]["error"]["type"] == "version_conflict_engine_exception"
    assert items[4]["update"]["error"]["type"] == "document_missing_exception"
    assert items[5]["delete"]["result"] == "not_found"
    assert items[6]["update"]["result"] == "updated" and items[6]["update"]["_version"] == 2
    assert client.count(index="books")["count"] == 1
    assert client.get(index="books", id="a")["_source"] == {"title": "good", "vec": [1, 2, 3], "year": 7}
    # a failed item changed nothing: no dynamic field appeared from the rejected documents
    assert "year" in client.indices.get_mapping(index="books")["books"]["mappings"]["properties"]


def test_bulk_auto_creates_index_with_dynamic_mapping(client: Any) -> None:
    ok, _ = helpers.bulk(client, [{"_index": "auto", "_id": "1", "name": "Ann", "age": 3, "score": 1.5,
                                  "when": "2024-01-01", "ok": True}], refresh=True)
    assert ok == 1
    props = client.indices.get_mapping(index="auto")["auto"]["mappings"]["properties"]
    assert props["name"]["type"] == "text" and props["name"]["fields"]["keyword"]["type"] == "keyword"
    assert [props[f]["type"] for f in ("age", "score", "when", "ok")] == ["long", "float", "date", "boolean"]
    hits = client.search(index="auto", body={"query": {"term": {"name.keyword": "Ann"}}})
    assert ids(hits) == ["1"]


def test_search_queries(loaded: Any) -> None:
    c = loaded

    def q(query: dict[str, Any], **extra: Any) -> dict[str, Any]:
        return c.search(index="books", body={"query": query, **extra})

    assert q({"match_all": {}})["hits"]["total"] == {"value": 3, "relation": "eq"}
    assert ids(q({"term": {"tag": "idea"}})) == ["3"]
    assert sorted(ids(q({"terms": {"tag": ["idea", "animal"]}}))) == ["1", "2", "3"]
    assert ids(q({"range": {"year": {"gte": 2005, "lt": 2020}}})) == ["2"]
    assert ids(q({"range": {"published": {"gte": "2021-01-01"}}}, sort=["_score"])) == ["2", "3"]
    assert ids(q({"term": {"draft": True}})) == ["2"]
    assert ids(q({"ids": {"values": ["3", "9"]}})) == ["3"]
    assert sorted(ids(q({"exists": {"field": "tokens"}}))) == ["1", "2", "3"]
    res = q({"bool": {"must": [{"match": {"title": "quick"}}], "filter": [{"term": {"tag": "animal"}}]}})
    assert ids(res) == ["1"]
    res = q({"bool": {"should": [{"term": {"tag": "idea"}}, {"range": {"price": {"lte": 10}}}],
                      "minimum_should_match": 2}})
    assert ids(res) == ["3"]
    res = q({"bool": {"must_not": [{"term": {"tag": "idea"}}], "filter": {"range": {"year": {"gt": 1990}}}}})
    assert sorted(ids(res)) == ["1", "2"] and all(h["_score"] == 0.0 for h in res["hits"]["hits"])
    res = q({"match": {"title": {"query": "quick fox", "operator": "and"}}})
    assert ids(res) == ["1"]
    page = q({"match_all": {}}, size=1, **{"from": 1}, _source=["title"])
    assert len(page["hits"]["hits"]) == 1 and set(page["hits"]["hits"][0]["_source"]) == {"title"}
    nosrc = q({"match_all": {}}, _source=False)
    assert all("_source" not in h for h in nosrc["hits"]["hits"])
    excl = q({"ids": {"values": ["1"]}}, _source={"excludes": ["vec", "tokens"]})
    assert "vec" not in excl["hits"]["hits"][0]["_source"] and "title" in excl["hits"]["hits"][0]["_source"]
    assert "total" not in q({"match_all": {}}, track_total_hits=False)["hits"]
    assert q({"match_all": {}}, size=0)["hits"] == {"total": {"value": 3, "relation": "eq"}, "max_score": None,
                                                    "hits": []}
    assert q({"match_all": {}}, track_total_hits=2)["hits"]["total"] == {"value": 2, "relation": "gte"}
    empty = q({"term": {"tag": "none"}})
    assert empty["hits"] == {"total": {"value": 0, "relation": "eq"}, "max_score": None, "hits": []}
    knn = q({"knn": {"vec": {"vector": [1, 0.1, 0], "k": 2, "filter": {"term": {"tag": "animal"}}}}})
    assert ids(knn) == ["1", "2"]
    assert c.count(index="books", body={"query": {"term": {"tag": "animal"}}})["count"] == 2


SHARD = "search_phase_execution_exception"  # a query that parses but fails on the shard, as a cluster answers


@pytest.mark.parametrize("query, error, needle", [
    ({"fuzzy_thing": {"title": "x"}}, "parsing_exception", "unknown query [fuzzy_thing]"),
    ({"bool": {"must": [], "shoulda": []}}, "parsing_exception", "[bool] query does not support [shoulda]"),
    ({"knn": {"vec": {"vector": [1, 2], "k": 3}}}, SHARD,
     "failed to create query: Query vector has invalid dimension: 2. Dimension should be: 3"),
    ({"knn": {"vec": {"vector": [1, 2, 3]}}}, SHARD, "exactly one of k, distance or score"),
    ({"neural": {"vec": {"query_text": "hi", "model_id": "m", "k": 3}}}, "illegal_argument_exception",
     "needs an ML node"),
    ({"rank_feature": {"field": "title"}}, SHARD,
     "only works on [rank_feature] fields and features of [rank_features] fields, not [text]"),
])
def test_search_errors(loaded: Any, query: dict[str, Any], error: str, needle: str) -> None:
    with pytest.raises(RequestError) as err:
        loaded.search(index="books", body={"query": query})
    assert err.value.error == error
    assert needle in err.value.info["error"]["root_cause"][0]["reason"]
    if error == SHARD:
        assert err.value.info["error"]["reason"] == "all shards failed"
        assert err.value.info["error"]["root_cause"][0]["type"] == "query_shard_exception"
        assert err.value.info["error"]["caused_by"]["type"] == "illegal_argument_exception"


def test_neural_sparse_with_query_tokens_needs_no_ml_node(loaded: Any) -> None:
    """query_tokens carry the weights already: a data node without an ML node answers, with the sparse dot product
    (fox 1.5 x 2.0 + quick 0.5 x 1.0 for doc 1, quick 1.0 x 1.0 for doc 3)."""
    body = {"query": {"neural_sparse": {"tokens": {"query_tokens": {"fox": 2.0, "quick": 1.0}}}}}
    res = loaded.search(index="books", body=body)
    assert [(h["_id"], round(h["_score"], 4)) for h in res["hits"]["hits"]] == [("1", 3.5), ("3", 1.0)]
    with pytest.raises(RequestError, match="needs an ML node"):
        loaded.search(index="books", body={"query": {"neural_sparse": {"tokens": {"query_text": "fox",
                                                                                  "model_id": "m"}}}})


def test_rank_feature_on_an_unmapped_path_matches_nothing(loaded: Any) -> None:
    """OpenSearch's RankFeatureQueryBuilder answers an unmapped field (here a token under a text field, as a sparse
    query aimed at the wrong field becomes) with no hits, not an error."""
    res = loaded.search(index="books", body={"query": {"rank_feature": {"field": "title.x", "linear": {}}}})
    assert res["hits"]["total"]["value"] == 0 and res["hits"]["hits"] == []


def test_missing_index_errors(client: Any) -> None:
    for call in (lambda: client.search(index="ghost", body={}), lambda: client.get(index="ghost", id="1"),
                 lambda: client.count(index="ghost")):
        with pytest.raises(NotFoundError) as err:
            call()
        assert err.value.error == "index_not_found_exception"


def test_pipelines_crud_simulate_and_bulk_pipeline(client: Any) -> None:
    chunking = {"description": "split on blank lines", "processors": [
        {"text_chunking": {"algorithm": {"delimiter": {"delimiter": "\n\n"}},
                           "field_map": {"body": "body_chunks"}}}]}
    assert client.ingest.put_pipeline(id="chunk", body=chunking) == {"acknowledged": True}
    assert client.ingest.get_pipeline(id="chunk") == {"chunk": chunking}
    sim = client.ingest.simulate(id="chunk", body={"docs": [{"_source": {"body": "a\n\nb"}}]})
    assert sim["docs"][0]["doc"]["_source"]["body_chunks"] == ["a\n\n", "b"]
    with pytest.raises(RequestError) as err:
        client.ingest.put_pipeline(id="broken", body={"processors": [{"no_such_processor": {}}]})
    assert "No processor type exists with name [no_such_processor]" in str(err.value.info)
    client.indices.create(index="notes", body={"settings": {"index.default_pipeline": "chunk"}})
    helpers.bulk(client, [{"_index": "notes", "_id": "1", "body": "x\n\ny"}], refresh=True)
    assert client.get(index="notes", id="1")["_source"]["body_chunks"] == ["x\n\n", "y"]
    helpers.bulk(client, [{"_index": "notes", "_id": "2", "body": "p\n\nq", "pipeline": "_none"}], refresh=True)
    assert "body_chunks" not in client.get(index="notes", id="2")["_source"]
    res = client.bulk(body=[{"index": {"_index": "plain", "_id": "1"}}, {"body": "m\n\nn"}], pipeline="chunk")
    assert res["items"][0]["index"]["status"] == 201
    assert client.get(index="plain", id="1")["_source"]["body_chunks"] == ["m\n\n", "n"]
    res = client.bulk(body=[{"index": {"_index": "plain", "_id": "2"}}, {"body": "z"}], pipeline="missing")
    assert res["items"][0]["index"]["status"] == 400
    assert "pipeline with id [missing] does not exist" in res["items"][0]["index"]["error"]["reason"]
    assert client.ingest.delete_pipeline(id="chunk") == {"acknowledged": True}
    with pytest.raises(NotFoundError):
        client.ingest.get_pipeline(id="chunk")
    rrf = {"phase_results_processors": [{"score-ranker-processor": {"combination": {"technique": "rrf"}}}]}
    assert client.search_pipeline.put(id="rrf", body=rrf) == {"acknowledged": True}
    assert client.search_pipeline.get(id="rrf") == {"rrf": rrf}
    assert client.search_pipeline.delete(id="rrf") == {"acknowledged": True}
    with pytest.raises(NotFoundError):
        client.search_pipeline.get(id="rrf")


def test_settings_update_and_optimistic_concurrency(loaded: Any) -> None:
    c = loaded
    c.indices.put_settings(index="books", body={"index": {"search.default_pipeline": "none-yet"}})
    assert c.indices.get_settings(index="books")["books"]["settings"]["index"]["search"]["default_pipeline"] == \
        "none-yet"
    with pytest.raises(NotFoundError):  # the default search pipeline applies to every search of the index
        c.search(index="books", body={"query": {"match_all": {}}})
    c.indices.put_settings(index="books", body={"index.search.default_pipeline": None})
    assert c.search(index="books", body={"query": {"match_all": {}}})["hits"]["total"]["value"] == 3
    with pytest.raises(RequestError) as err:
        c.indices.put_settings(index="books", body={"index": {"number_of_shards": 3}})
    assert "Can't update non dynamic settings [[index.number_of_shards]]" in err.value.info["error"]["reason"]
    seq = c.get(index="books", id="1")["_seq_no"]
    c.index(index="books", id="1", body={"title": "v2"}, params={"if_seq_no": seq, "if_primary_term": 1})
    with pytest.raises(TransportError) as err:
        c.index(index="books", id="1", body={"title": "v3"}, params={"if_seq_no": seq, "if_primary_term": 1})
    assert err.value.status_code == 409 and "required seqNo" in err.value.info["error"]["reason"]
    with pytest.raises(RequestError) as err:
        c.search(index="books", body={"aggs": {"t": {"terms": {"field": "tag"}}}})
    assert "[aggs] is not supported by this data node" in err.value.info["error"]["reason"]


def test_hybrid_of_plain_queries_needs_no_ml_node(loaded: Any) -> None:
    c = loaded
    c.search_pipeline.put(id="norm", body={"phase_results_processors": [{"normalization-processor": {
        "normalization": {"technique": "min_max"}, "combination": {"technique": "arithmetic_mean"}}}]})
    res = c.search(index="books", params={"search_pipeline": "norm"}, body={"query": {"hybrid": {"queries": [
        {"match": {"title": "fox"}}, {"knn": {"vec": {"vector": [1, 0, 0], "k": 3}}}]}}})
    # doc 1: the only match hit (min_max of one result = 1.0) and the best knn hit (1.0) -> mean 1.0;
    # docs 2 and 3: knn only, both at the knn minimum (normalized 0 -> 0.001) -> (0.001 + 0) / 2
    got = {h["_id"]: h["_score"] for h in res["hits"]["hits"]}
    assert got == pytest.approx({"1": 1.0, "2": 0.0005, "3": 0.0005})
    assert res["hits"]["hits"][0]["_id"] == "1"


def test_id_terms_disabled_objects_analyzers_and_cat(client: Any) -> None:
    client.indices.create(index="misc", body={"mappings": {"properties": {
        "meta": {"type": "object", "enabled": False}, "body": {"type": "text", "analyzer": "standard"}}}})
    client.index(index="misc", id="a", body={"meta": {"anything": [1, "x", {"y": True}]}, "body": "Hello"},
                 refresh=True)
    client.index(index="misc", id="b", body={"body": "World"}, refresh=True)
    assert ids(client.search(index="misc", body={"query": {"terms": {"_id": ["b", "zz"]}}})) == ["b"]
    assert ids(client.search(index="misc", body={"query": {"term": {"_id": "a"}}})) == ["a"]
    assert client.get(index="misc", id="a")["_source"]["meta"] == {"anything": [1, "x", {"y": True}]}
    with pytest.raises(RequestError) as err:
        client.indices.create(index="eng", body={"mappings": {"properties": {
            "body": {"type": "text", "analyzer": "klingon"}}}})
    assert err.value.info["error"]["reason"] == ("Failed to parse mapping [_doc]: analyzer [klingon] has not been "
                                                 "configured in mappings")
    rows = client.cat.indices(format="json")
    assert [(r["index"], r["docs.count"]) for r in rows] == [("misc", "2")]


def test_sort_by_fields(loaded: Any) -> None:
    c = loaded
    c.index(index="books", id="4", body={"title": "no year"}, refresh=True)
    res = c.search(index="books", body={"sort": [{"year": "desc"}], "query": {"match_all": {}}})
    assert ids(res) == ["3", "2", "1", "4"]  # missing values last
    assert [h["sort"] for h in res["hits"]["hits"]] == [[2020], [2010], [2001], [None]]
    assert res["hits"]["hits"][0]["_score"] is None and res["hits"]["max_score"] is None
    res = c.search(index="books", body={"sort": ["tag", {"price": {"order": "desc"}}], "query": {"exists": {
        "field": "tag"}}})
    assert ids(res) == ["2", "1", "3"]
    res = c.search(index="books", body={"sort": [{"published": "asc"}, "_score"], "query": {"match_all": {}}},
                   params={"size": 2})
    assert ids(res) == ["1", "2"] and res["hits"]["hits"][0]["sort"][1] == 1.0
    with pytest.raises(RequestError) as err:
        c.search(index="books", body={"sort": ["title"]})
    assert "Text fields are not optimised" in err.value.info["error"]["reason"]


def test_final_pipeline_runs_after_the_default_one(client: Any) -> None:
    client.ingest.put_pipeline(id="split", body={"processors": [
        {"text_chunking": {"algorithm": {"delimiter": {"delimiter": "."}}, "field_map": {"body": "parts"}}}]})
    client.ingest.put_pipeline(id="split_parts", body={"processors": [
        {"text_chunking": {"algorithm": {"fixed_char_length": {"char_limit": 2, "overlap_rate": 0.0}},
                           "field_map": {"body": "pairs"}}}]})
    client.indices.create(index="fin", body={"settings": {"index": {"default_pipeline": "split",
                                                                    "final_pipeline": "split_parts"}}})
    client.index(index="fin", id="1", body={"body": "ab.cd"}, refresh=True)
    source = client.get(index="fin", id="1")["_source"]
    assert source["parts"] == ["ab.", "cd"] and source["pairs"] == ["ab", ".c", "d"]


def test_unsupported_endpoint_is_named(client: Any) -> None:
    with pytest.raises(RequestError) as err:
        client.transport.perform_request("GET", "/_nodes")
    assert "no handler found for uri [/_nodes] and method [GET]" in err.value.info["error"]["reason"]


def test_msearch(loaded: Any) -> None:
    res = loaded.msearch(index="books", body=[
        {}, {"query": {"term": {"tag": "idea"}}},
        {"index": "ghost"}, {"query": {"match_all": {}}},
        {}, {"query": {"ids": {"values": ["1", "2"]}}, "size": 1}])
    r = res["responses"]
    assert ids(r[0]) == ["3"] and r[0]["status"] == 200
    assert r[1]["status"] == 404 and r[1]["error"]["type"] == "index_not_found_exception"
    assert r[2]["hits"]["total"]["value"] == 2 and len(r[2]["hits"]["hits"]) == 1


def test_analyze_shows_the_standard_analyzer(client: Any) -> None:
    res = client.indices.analyze(body={"analyzer": "standard", "text": "Don't stop: 3.14 U.S.A. e-mail"})
    assert [t["token"] for t in res["tokens"]] == ["don't", "stop", "3.14", "u.s.a", "e", "mail"]
    assert res["tokens"][2] == {"token": "3.14", "start_offset": 12, "end_offset": 16, "type": "<NUM>",
                                "position": 2}


def test_compound_queries_combine_scores_as_lucene_does(loaded: Any) -> None:
    c = loaded

    def scores(query: dict[str, Any]) -> dict[str, float]:
        return {h["_id"]: h["_score"] for h in c.search(index="books", body={"query": query})["hits"]["hits"]}

    quick = scores({"match": {"title": "quick"}})
    fox = scores({"match": {"title": "fox"}})
    assert set(quick) == {"1", "3"} and set(fox) == {"1"}
    both = scores({"match": {"title": "quick fox"}})
    assert both["1"] == pytest.approx(quick["1"] + fox["1"], rel=1e-6)
    dis = scores({"dis_max": {"tie_breaker": 0.5, "queries": [{"match": {"title": "quick"}},
                                                            {"match": {"title": "fox"}}]}})
    assert dis["1"] == pytest.approx(max(quick["1"], fox["1"]) + 0.5 * min(quick["1"], fox["1"]), rel=1e-6)
    assert scores({"constant_score": {"filter": {"term": {"tag": "animal"}}, "boost": 2.5}}) == {"1": 2.5, "2": 2.5}
    multi = scores({"multi_match": {"query": "quick", "fields": ["title^2", "tag"]}})
    assert multi == pytest.approx({k: 2 * v for k, v in quick.items()}, rel=1e-6)
    msm = scores({"match": {"title": {"query": "quick brown fox wins", "minimum_should_match": "75%"}}})
    assert set(msm) == {"1"}  # 3 of 4 terms required: only "The quick brown fox" has them
    boosted = scores({"bool": {"should": [{"match": {"title": "quick"}}], "boost": 3.0}})
    assert boosted == pytest.approx({k: 3 * v for k, v in quick.items()}, rel=1e-6)


def test_ml_pipeline_on_a_node_without_ml_fails_clearly_when_used(client: Any) -> None:
    body = {"processors": [{"text_embedding": {"model_id": "m1", "field_map": {"text": "emb"}}}]}
    assert client.ingest.put_pipeline(id="emb", body=body) == {"acknowledged": True}
    res = client.bulk(body=[{"index": {"_index": "t", "_id": "1"}}, {"text": "hi"}], pipeline="emb")
    item = res["items"][0]["index"]
    assert item["status"] == 400 and "needs an ML node" in item["error"]["reason"]
    assert client.indices.exists(index="t") is False  # a failed item creates nothing


def test_delete_by_query(loaded: Any) -> None:
    res = loaded.delete_by_query(index="books", body={"query": {"term": {"tag": "animal"}}}, refresh=True)
    assert res["total"] == 2 and res["deleted"] == 2 and res["failures"] == []
    assert ids(loaded.search(index="books", body={"query": {"match_all": {}}})) == ["3"]
    knn = loaded.search(index="books", body={"query": {"knn": {"vec": {"vector": [1, 0, 0], "k": 3}}}})
    assert ids(knn) == ["3"]


@pytest.mark.parametrize("method, path, body", [
    ("PUT", "/x", "[1, 2]"), ("POST", "/x/_search", '"match_all"'), ("PUT", "/x/_doc/1", "{not json"),
    ("PUT", "/_ingest/pipeline/p", "[]"),
])
def test_malformed_bodies_are_400_and_change_nothing(client: Any, method: str, path: str, body: str) -> None:
    with pytest.raises(RequestError) as err:
        client.transport.perform_request(method, path, body=body)
    assert err.value.error == "parse_exception"
    assert client.indices.exists(index="x") is False


@pytest.mark.parametrize("body", [
    {"query": {"knn": {"vec": {"vector": ["a", "b", "c"], "k": 1}}}},
    {"query": {"exists": {"field": 5}}},
    {"query": {"rank_feature": {"field": "tokens.fox", "saturation": {"pivot": "x"}}}},
    {"query": {"range": {"published": {"gte": "not-a-date"}}}},
    {"query": {"knn": {"vec": {"vector": [1, 2, 3], "max_distance": "x"}}}},
    {"query": {"match_all": {"boost": "x"}}},
    {"query": {"match": {"title": None}}},
    {"min_score": "x"}, {"track_total_hits": "abc"}, {"_source": 5},
])
def test_values_of_the_wrong_kind_are_400_not_500(loaded: Any, body: dict[str, Any]) -> None:
    with pytest.raises(RequestError) as err:
        loaded.search(index="books", body=body)
    assert err.value.status_code == 400


@pytest.mark.parametrize("method, path, body", [
    ("PUT", "/a", {"mappings": {"properties": {"x": {"type": "text", "fields": "k"}}}}),
    ("PUT", "/a", {"mappings": {"properties": {"v": {"type": "knn_vector", "dimension": 3, "method": "hnsw"}}}}),
    ("PUT", "/books/_mapping", {"properties": {"title": "x"}}),
    ("POST", "/books/_mget", {"docs": "x"}),
    ("POST", "/books/_mget", {"ids": "x"}),
    ("POST", "/_bulk", '{"index": {"_index": 5}}\n{"a": 1}\n'),
    ("POST", "/_bulk", '{"index": {"_index": "books", "_id": {"a": 1}}}\n{"a": 1}\n'),
])
def test_bad_write_requests_are_400_and_change_nothing(loaded: Any, method: str, path: str, body: Any) -> None:
    mapping = loaded.indices.get_mapping(index="books")
    with pytest.raises(RequestError):
        loaded.transport.perform_request(method, path, body=body)
    assert loaded.indices.exists(index="a") is False
    assert loaded.indices.get_mapping(index="books") == mapping
    assert loaded.count(index="books")["count"] == 3


def test_match_phrase_does_not_span_values_and_rejects_slop(client: Any) -> None:
    client.index(index="ph", id="1", body={"t": ["the quick", "brown fox"]}, refresh=True)
    client.index(index="ph", id="2", body={"t": "a quick brown fox"}, refresh=True)
    assert ids(client.search(index="ph", body={"query": {"match_phrase": {"t": "quick brown"}}})) == ["2"]
    assert sorted(ids(client.search(index="ph", body={"query": {"match_phrase": {"t": "brown fox"}}}))) == ["1", "2"]
    with pytest.raises(RequestError) as err:
        client.search(index="ph", body={"query": {"match_phrase": {"t": {"query": "quick fox", "slop": 2}}}})
    assert "slop > 0 is not supported" in str(err.value.info)


def test_multi_match_adds_only_the_fields_that_match(client: Any) -> None:
    """A field whose own ``operator: and`` fails must add nothing to a multi_match (each field is a match query of
    its own, as OpenSearch builds it): doc 1 holds both words only in ``body``, so its score is body's alone."""
    client.indices.create(index="mm", body={"mappings": {"properties": {"title": {"type": "text"},
                                                                         "body": {"type": "text"}}}})
    for doc_id, doc in {"1": {"title": "alpha", "body": "alpha beta"},
                        "2": {"title": "alpha beta", "body": "gamma"}}.items():
        client.index(index="mm", id=doc_id, body=doc, refresh=True)

    def scores(query: dict[str, Any]) -> dict[str, float]:
        return {h["_id"]: h["_score"] for h in client.search(index="mm", body={"query": query})["hits"]["hits"]}

    body_only = scores({"match": {"body": {"query": "alpha beta", "operator": "and"}}})
    title_only = scores({"match": {"title": {"query": "alpha beta", "operator": "and"}}})
    assert set(body_only) == {"1"} and set(title_only) == {"2"}
    for kind in ("most_fields", "best_fields"):
        multi = scores({"multi_match": {"query": "alpha beta", "fields": ["title", "body"], "operator": "and",
                                        "type": kind}})
        assert multi == pytest.approx({"1": body_only["1"], "2": title_only["2"]}, rel=1e-6), kind
