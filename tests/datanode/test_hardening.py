"""Issue 11 on the data node: one request must never take the node down, poison an index or fail its neighbours.

Every test drives a real data node over loopback (``data_node``: ``datanode.app.create_app`` in a thread) with raw
HTTP for the malformed bodies opensearch-py would refuse to send, and opensearch-py for the rest. A data dir "written
by an older version" is made by editing the node's SQLite file while the node is stopped. The full disk is the one
mock: SQLite's own ``database or disk is full`` (SQLITE_FULL, what ENOSPC turns into), produced by capping the
database's page count on the node's connections.
"""

from __future__ import annotations

import json
import resource
import shutil
import sqlite3
import urllib.error
import urllib.request
from typing import Any

import numpy as np
import pytest
from opensearchpy import helpers

from datanode.storage import Storage
from tests.fixtures.datanode import DataNodeThread, os_client

pytestmark = pytest.mark.integration

DIM = 8
JSON, NDJSON = "application/json", "application/x-ndjson"


def call(url: str, method: str, path: str, body: bytes | str | dict[str, Any] | None = None,
         content_type: str = JSON) -> tuple[int, Any]:
    """(status, decoded JSON body) of one request; the body as given (bytes / str) or JSON-encoded (a dict)."""
    data = body if isinstance(body, bytes) else body.encode() if isinstance(body, str) else (
        None if body is None else json.dumps(body).encode())
    headers = {"Content-Type": content_type} if data is not None else {}
    request = urllib.request.Request(url + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=60) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    text = raw.decode("utf-8")  # strict: a response that is not UTF-8 fails the test
    try:
        return status, json.loads(text)
    except json.JSONDecodeError:
        return status, text


def ndjson(*lines: str) -> str:
    return "".join(line + "\n" for line in lines)


def vectors(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    v = rng.normal(size=(n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def knn_index(client: Any, name: str = "vec", n: int = 60, space: str = "l2") -> np.ndarray:
    client.indices.create(index=name, body={
        "settings": {"index": {"knn": True, "number_of_replicas": 0}},
        "mappings": {"properties": {"text": {"type": "text"}, "v": {
            "type": "knn_vector", "dimension": DIM,
            "method": {"name": "hnsw", "engine": "faiss", "space_type": space, "parameters": {"m": 4}}}}}})
    vecs = vectors(n)
    ok, errors = helpers.bulk(client, [{"_index": name, "_id": str(i), "text": f"doc {i}", "v": v.tolist()}
                                       for i, v in enumerate(vecs)], refresh=True)
    assert ok == n and not errors
    return vecs


def error_of(body: dict[str, Any]) -> tuple[str, str]:
    """(type, reason) of an error body, from the root cause (where OpenSearch puts a shard failure's reason)."""
    assert set(body) == {"error", "status"}, body
    cause = body["error"]["root_cause"][0]
    return cause["type"], cause["reason"]


@pytest.fixture
def client(data_node: Any) -> Any:
    c = os_client(data_node.url)
    yield c
    c.close()


# --- item 2: knn parameters are bounded, with the k-NN plugin's messages -------------------------------------------
@pytest.mark.parametrize(("clause", "reason"), [
    ({"k": 0}, "[knn] requires k to be in the range (0, 10000]"),
    ({"k": 10001}, "[knn] requires k to be in the range (0, 10000]"),
    ({"k": "5"}, "[knn] requires k to be in the range (0, 10000]"),
    ({"k": 3, "method_parameters": {"ef_search": 0}},
     "[knn] errors in method parameter [Validation Failed: 1: Validation Failed: 1: ef_search should be greater "
     "than 0;;]"),
    ({"k": 3, "method_parameters": {"ef_search": "x"}}, "ef_search value must be an integer"),
    ({"k": 3, "method_parameters": {"ef_search": 2**31}}, "ef_search value must be an integer"),
    ({"k": 3, "method_parameters": {"ef_search": 2.5}}, "ef_search value must be an integer"),
    ({"min_score": 0}, "[knn] requires minScore to be greater than 0"),
    ({"min_score": 1.5}, "[knn] requires score to be in the range [0, 1] for space type: l2"),
    ({"max_distance": -1}, "[knn] requires distance to be non-negative for space type: l2"),
])
def test_knn_parameters_out_of_range_are_refused(client: Any, data_node: Any, clause: dict[str, Any],
                                                 reason: str) -> None:
    vecs = knn_index(client)
    status, body = call(data_node.url, "POST", "/vec/_search",
                        {"query": {"knn": {"v": {"vector": vecs[0].tolist(), **clause}}}})
    assert status == 400
    assert error_of(body)[1].endswith(reason)


def test_knn_query_vector_beyond_float32_is_refused(client: Any, data_node: Any) -> None:
    knn_index(client)
    status, body = call(data_node.url, "POST", "/vec/_search",
                        {"query": {"knn": {"v": {"vector": [1e39] + [0.0] * (DIM - 1), "k": 3}}}})
    assert status == 400 and error_of(body)[1].endswith("KNN vector values cannot be infinity")


def test_huge_ef_search_is_capped_at_the_graph_size(client: Any, data_node: Any) -> None:
    """ef_search 10^9 is a valid int for the k-NN plugin; on a 60-vector graph it must cost what ef_search 60 costs
    (today's main allocated ~7.7 GB for it) and find the exact nearest neighbours."""
    vecs = knn_index(client)
    query = vecs[5] + 0.05 * vecs[7]
    exact = np.argsort(((vecs - query) ** 2).sum(axis=1), kind="stable")[:10].tolist()
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    res = client.search(index="vec", body={"size": 10, "_source": False, "query": {"knn": {"v": {
        "vector": query.tolist(), "k": 10, "method_parameters": {"ef_search": 10**9}}}}})
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before) / 1024
    assert [int(h["_id"]) for h in res["hits"]["hits"]] == exact
    assert grown_mib < 500, f"peak RSS grew by {grown_mib:.0f} MiB for one knn query on 60 vectors"


def test_result_window_follows_the_index_setting(client: Any, data_node: Any) -> None:
    knn_index(client, n=12)
    assert client.indices.put_settings(index="vec", body={"index": {"max_result_window": 5}})["acknowledged"]
    status, body = call(data_node.url, "POST", "/vec/_search", {"size": 4, "from": 2})
    assert status == 400
    assert error_of(body) == ("illegal_argument_exception",
                              "Result window is too large, from + size must be less than or equal to: [5] but was "
                              "[6]. See the scroll api for a more efficient way to request large data sets. This "
                              "limit can be set by changing the [index.max_result_window] index level setting.")
    assert len(client.search(index="vec", body={"size": 3, "from": 2})["hits"]["hits"]) == 3


@pytest.mark.parametrize(("paging", "reason"), [
    ({"size": -1}, "[size] parameter cannot be negative, found [-1]"),
    ({"from": -3}, "[from] parameter cannot be negative, found [-3]"),
    ({"size": 2**31}, f"Failed to parse int parameter [size] with value [{2**31}]"),
])
def test_negative_or_overflowing_paging_is_refused(client: Any, data_node: Any, paging: dict[str, Any],
                                                   reason: str) -> None:
    knn_index(client, n=2)
    status, body = call(data_node.url, "POST", "/vec/_search", paging)
    assert (status, error_of(body)) == (400, ("illegal_argument_exception", reason))


# --- item 3: lone surrogates are refused, and a stored one cannot break reads ---------------------------------------
def test_bulk_document_with_a_lone_surrogate_fails_alone(client: Any, data_node: Any) -> None:
    knn_index(client, n=3)
    body = ndjson('{"index":{"_index":"vec","_id":"bad"}}', '{"text":"broken \\ud800 here"}',
                  '{"index":{"_index":"vec","_id":"good"}}', '{"text":"fine"}')
    status, res = call(data_node.url, "POST", "/_bulk?refresh=true", body, NDJSON)
    assert status == 200 and res["errors"] is True
    bad, good = res["items"][0]["index"], res["items"][1]["index"]
    assert bad["status"] == 400 and bad["error"]["type"] == "mapper_parsing_exception"
    assert "lone surrogate" in bad["error"]["caused_by"]["reason"]
    assert good["status"] == 201
    assert client.get(index="vec", id="good")["_source"] == {"text": "fine"}
    assert call(data_node.url, "GET", "/vec/_doc/bad")[0] == 404
    for path in ("/vec/_search", "/_search"):
        status, res = call(data_node.url, "POST", path, {"size": 20})
        assert status == 200 and res["hits"]["total"]["value"] == 4


def test_a_stored_lone_surrogate_reads_as_replacement_character(client: Any, data_node: Any) -> None:
    """A data dir written by an older version holds a document with ``\\ud800`` (edited into SQLite here)."""
    knn_index(client, n=3)
    node = data_node
    node.stop()
    db = sqlite3.connect(node.data_dir / "datanode.sqlite3")
    source = json.loads(db.execute("SELECT source FROM docs WHERE idx='vec' AND id='1'").fetchone()[0])
    raw = json.dumps({**source, "text": "PLACEHOLDER"}).replace("PLACEHOLDER", "old \\ud800 text")
    db.execute("UPDATE docs SET source=? WHERE idx='vec' AND id='1'", (raw,))
    db.commit()
    db.close()
    shutil.rmtree(node.data_dir / "indices")  # that version's segments are of an older format: rebuilt from SQLite
    node = DataNodeThread(node.data_dir).start()
    try:
        url = node.url
        for method, path, body in [("GET", "/vec/_doc/1", None), ("POST", "/vec/_search", {"size": 10}),
                                   ("POST", "/_search", {"size": 10}), ("POST", "/_mget", {"docs": [
                                       {"_index": "vec", "_id": "1"}]}),
                                   ("POST", "/vec/_search", {"query": {"match": {"text": "old"}}})]:
            status, res = call(url, method, path, body)
            assert status == 200, (path, res)
            hits = res.get("hits", {}).get("hits") or res.get("docs") or [res]
            doc = next(h for h in hits if h["_id"] == "1")
            assert doc["_source"]["text"] == "old \ufffd text"
        status, res = call(url, "POST", "/vec/_update/1?refresh=true", {"doc": {"extra": 1}})
        assert status == 200 and res["result"] == "updated"
        assert call(url, "GET", "/vec/_doc/1")[1]["_source"]["extra"] == 1
    finally:
        node.stop()


# --- item 4: settings are checked before they are stored; a stored bad value cannot break the node ----------------
@pytest.mark.parametrize(("settings", "reason"), [
    ({"number_of_replicas": "x"}, "Failed to parse value [x] for setting [index.number_of_replicas]"),
    ({"number_of_replicas": -1}, "Failed to parse value [-1] for setting [index.number_of_replicas] must be >= 0"),
    ({"knn.algo_param.ef_search": "x"}, "Failed to parse value [x] for setting [index.knn.algo_param.ef_search]"),
    ({"knn.algo_param.ef_search": 1},
     "Failed to parse value [1] for setting [index.knn.algo_param.ef_search] must be >= 2"),
    ({"max_result_window": 0}, "Failed to parse value [0] for setting [index.max_result_window] must be >= 1"),
    ({"refresh_interval": "soon"}, "failed to parse setting [index.refresh_interval] with value [soon] as a time "
                                   "value: unit is missing or unrecognized"),
])
def test_bad_setting_updates_are_refused_and_change_nothing(client: Any, data_node: Any, settings: dict[str, Any],
                                                            reason: str) -> None:
    vecs = knn_index(client, n=5)
    before = client.indices.get_settings(index="vec")
    status, body = call(data_node.url, "PUT", "/vec/_settings", {"index": settings})
    assert (status, error_of(body)) == (400, ("illegal_argument_exception", reason))
    assert client.indices.get_settings(index="vec") == before
    assert call(data_node.url, "GET", "/_cat/indices?format=json")[0] == 200
    assert call(data_node.url, "GET", "/_cluster/health")[0] == 200
    res = client.search(index="vec", body={"query": {"knn": {"v": {"vector": vecs[0].tolist(), "k": 2}}}})
    assert res["hits"]["hits"][0]["_id"] == "0"


@pytest.mark.parametrize(("settings", "reason"), [
    ({"number_of_shards": 0}, "Failed to parse value [0] for setting [index.number_of_shards] must be >= 1"),
    ({"number_of_shards": "two"}, "Failed to parse value [two] for setting [index.number_of_shards]"),
    ({"knn": "yes"}, "Failed to parse value [yes] as only [true] or [false] are allowed."),
    ({"analysis": {"analyzer": 1}}, "custom analysis settings are not supported by this data node, got "
                                    "[index.analysis.analyzer]"),
])
def test_bad_settings_at_creation_are_refused(data_node: Any, settings: dict[str, Any], reason: str) -> None:
    status, body = call(data_node.url, "PUT", "/made", {"settings": {"index": settings}})
    assert status == 400 and error_of(body)[0] == "illegal_argument_exception"
    assert error_of(body)[1].startswith(reason)
    assert call(data_node.url, "GET", "/made")[0] == 404


def test_bad_settings_stored_by_an_older_version_fall_back_to_defaults(client: Any, data_node: Any) -> None:
    vecs = knn_index(client, n=5)
    node = data_node
    node.stop()
    db = sqlite3.connect(node.data_dir / "datanode.sqlite3")
    settings = json.loads(db.execute("SELECT settings FROM indices WHERE name='vec'").fetchone()[0])
    settings.update({"index.number_of_replicas": "x", "index.knn.algo_param.ef_search": "x",
                     "index.max_result_window": "many", "index.number_of_shards": "?"})
    db.execute("UPDATE indices SET settings=? WHERE name='vec'", (json.dumps(settings),))
    db.commit()
    db.close()
    node = DataNodeThread(node.data_dir).start()
    try:
        status, rows = call(node.url, "GET", "/_cat/indices?format=json")
        assert status == 200 and rows[0]["rep"] == "1" and rows[0]["pri"] == "1"  # the defaults
        assert call(node.url, "GET", "/_cluster/health")[0] == 200
        status, res = call(node.url, "POST", "/vec/_search",
                           {"query": {"knn": {"v": {"vector": vecs[3].tolist(), "k": 1}}}})
        assert status == 200 and res["hits"]["hits"][0]["_id"] == "3"
        # and the bad value can be replaced
        assert call(node.url, "PUT", "/vec/_settings", {"index": {"number_of_replicas": 0}})[0] == 200
        assert call(node.url, "GET", "/_cat/indices?format=json")[1][0]["rep"] == "0"
    finally:
        node.stop()


# --- item 11: one bad item fails alone ------------------------------------------------------------------------------
def test_one_bad_bulk_item_fails_alone_and_the_others_are_written(client: Any, data_node: Any) -> None:
    knn_index(client, n=1)
    good = [f'{{"text":"good {i}","v":{json.dumps(vectors(1, i)[0].tolist())}}}' for i in range(8)]
    bad = {
        "digits": '{"text":' + "9" * 5000 + "}",
        "vector_inf": '{"v":[1e39' + ",0" * (DIM - 1) + "]}",
        "deep": '{"a":' * 1200 + "1" + "}" * 1200,
        "out_of_range": '{"n":1e309}',
    }
    lines = []
    for i, doc in enumerate(good[:4]):
        lines += [json.dumps({"index": {"_index": "vec", "_id": f"g{i}"}}), doc]
    for name, doc in bad.items():
        lines += [json.dumps({"index": {"_index": "vec", "_id": name}}), doc]
    for i, doc in enumerate(good[4:], start=4):
        lines += [json.dumps({"index": {"_index": "vec", "_id": f"g{i}"}}), doc]
    body = ndjson(*lines).encode()
    body += b'{"index":{"_index":"vec","_id":"latin1"}}\n{"text":"caf\xe9"}\n'  # not UTF-8
    status, res = call(data_node.url, "POST", "/_bulk?refresh=true", body, NDJSON)
    assert status == 200 and res["errors"] is True
    results = {item["index"]["_id"]: item["index"] for item in res["items"]}
    assert [results[f"g{i}"]["status"] for i in range(8)] == [201] * 8
    for name in [*bad, "latin1"]:
        assert results[name]["status"] == 400, results[name]
        assert results[name]["error"]["type"] == "mapper_parsing_exception"
    assert "KNN vector values cannot be infinity" in json.dumps(results["vector_inf"]["error"])
    assert client.count(index="vec")["count"] == 1 + 8
    assert client.get(index="vec", id="g7")["_source"]["text"] == "good 7"


# --- item 12: wrong types and malformed bodies are 400s in OpenSearch's shape -------------------------------------
@pytest.mark.parametrize(("method", "path", "body", "content_type", "error_type"), [
    ("POST", "/vec/_update/0", {"doc": 5}, JSON, "parsing_exception"),
    ("POST", "/vec/_update/0", {"upsert": [1]}, JSON, "parsing_exception"),
    ("PUT", "/other", {"mappings": "abc"}, JSON, "mapper_parsing_exception"),
    ("PUT", "/other", {"mappings": 0.5}, JSON, "mapper_parsing_exception"),
    ("POST", "/vec/_search", {"_source": {"includes": [[1]]}}, JSON, "parsing_exception"),
    ("POST", "/vec/_search", {"_source": {"excludes": [{}]}}, JSON, "parsing_exception"),
    ("POST", "/vec/_search", {"_source": [1, "a"]}, JSON, "parsing_exception"),
    ("POST", "/_msearch", "null\n{}\n", NDJSON, "parse_exception"),
    ("POST", "/_msearch", '{"index":1.5}\n{}\n', NDJSON, "illegal_argument_exception"),
    ("POST", "/_msearch", b"{}\n\xdd\n", NDJSON, "parse_exception"),
    ("POST", "/_mget", {"docs": [{"_index": "vec", "_id": {"a": 1}}]}, JSON, "action_request_validation_exception"),
    ("POST", "/vec/_search", {"size": "50%"}, JSON, "illegal_argument_exception"),
    ("POST", "/vec/_search", '{"size": ' + "9" * 5000 + "}", JSON, "parse_exception"),
    ("POST", "/vec/_search", '{"size": 1e309}', JSON, "parse_exception"),
    ("POST", "/vec/_search", '{"query": ' * 1100 + "1" + "}" * 1100, JSON, "parse_exception"),
    ("POST", "/vec/_search", '{"query":{"match":{"text":"\\udc00"}}}', JSON, "parse_exception"),
    ("POST", "/_bulk", b"\xff\xfe{}\n", NDJSON, "illegal_argument_exception"),
    ("POST", "/_msearch", "[]\n{}\n", NDJSON, "parse_exception"),
    ("POST", "/_msearch", "{}\n[]\n", NDJSON, "parse_exception"),
    ("POST", "/_msearch", '{"index":[1.5]}\n{}\n', NDJSON, "illegal_argument_exception"),
    ("POST", "/_msearch", '{"index":{"a":1}}\n{}\n', NDJSON, "illegal_argument_exception"),
    ("POST", "/_msearch", '{}\n{"size":' + "9" * 5000 + "}\n", NDJSON, "parse_exception"),
    ("GET", "/vec/y/z/w", None, JSON, "illegal_argument_exception"),
])
def test_malformed_requests_are_400_in_opensearch_shape(client: Any, data_node: Any, method: str, path: str,
                                                         body: Any, content_type: str, error_type: str) -> None:
    knn_index(client, n=2)
    status, res = call(data_node.url, method, path, body, content_type)
    assert status == 400, res
    assert error_of(res)[0] == error_type and res["error"]["type"] == error_type
    assert client.count(index="vec")["count"] == 2
    assert client.get(index="vec", id="0")["_source"]["text"] == "doc 0"


def test_wrong_method_is_405_in_opensearch_shape(data_node: Any) -> None:
    status, res = call(data_node.url, "POST", "/")
    assert status == 405
    assert res == {"error": "Incorrect HTTP method for uri [/] and method [POST], allowed: [GET, HEAD]",
                   "status": 405}


def test_a_vector_beyond_float32_is_not_stored(client: Any, data_node: Any) -> None:
    knn_index(client, n=2)
    status, res = call(data_node.url, "PUT", "/vec/_doc/x", {"v": [1e39] + [0.0] * (DIM - 1)})
    assert status == 400 and error_of(res)[0] == "mapper_parsing_exception"
    assert res["error"]["caused_by"] == {"type": "illegal_argument_exception",
                                         "reason": "KNN vector values cannot be infinity"}
    assert call(data_node.url, "GET", "/vec/_doc/x")[0] == 404


# --- item 12: a full disk is the flood-stage block, and nothing is half written -------------------------------------
def test_full_disk_is_a_flood_stage_block_and_writes_nothing(client: Any, data_node: Any,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """MOCKED: the full disk. Each connection's ``max_page_count`` is capped at the database's current size, so SQLite
    itself fails the write with SQLITE_FULL ("database or disk is full"), as it does when the disk is out of space."""
    knn_index(client, n=2)
    real_conn = Storage.conn

    def full_conn(self: Storage) -> sqlite3.Connection:
        db = real_conn(self)
        pages = db.execute("PRAGMA page_count").fetchone()[0]
        db.execute(f"PRAGMA max_page_count={pages}")
        return db

    monkeypatch.setattr(Storage, "conn", full_conn)
    big = "x" * 200_000  # needs new pages
    body = ndjson(*[line for i in range(3) for line in (json.dumps({"index": {"_index": "vec", "_id": f"n{i}"}}),
                                                        json.dumps({"text": big}))])
    status, res = call(data_node.url, "POST", "/_bulk", body, NDJSON)
    reason = ("index [vec] blocked by: [TOO_MANY_REQUESTS/12/disk usage exceeded flood-stage watermark, index has "
              "read-only-allow-delete block];")
    assert status == 200 and res["errors"] is True
    assert [item["index"]["status"] for item in res["items"]] == [429, 429, 429]
    assert res["items"][0]["index"]["error"] == {"type": "cluster_block_exception", "reason": reason}
    status, res = call(data_node.url, "PUT", "/vec/_doc/one", {"text": big})
    assert (status, error_of(res)) == (429, ("cluster_block_exception", reason))
    status, res = call(data_node.url, "PUT", "/fresh", {"mappings": {"properties": {"text": {"type": "text"}}}})
    assert status in (200, 429)  # a new index needs few bytes: it may still fit
    monkeypatch.setattr(Storage, "conn", real_conn)  # space freed
    client.indices.refresh(index="vec")
    assert client.count(index="vec")["count"] == 2
    assert call(data_node.url, "GET", "/vec/_doc/n0")[0] == 404
    ok, errors = helpers.bulk(client, [{"_index": "vec", "_id": "n0", "text": "after"}], refresh=True)
    assert ok == 1 and not errors and client.count(index="vec")["count"] == 3


@pytest.mark.parametrize(("method", "path", "body", "error_type"), [
    ("POST", "/vec/_analyze", {"text": "a", "analyzer": ["standard"]}, "illegal_argument_exception"),
    ("POST", "/_mget", {"docs": [{"_index": ["vec"], "_id": "0"}]}, "action_request_validation_exception"),
    ("PUT", "/other", {"mappings": {"properties": {"f": {"type": {"a": 1}}}}}, "mapper_parsing_exception"),
    ("PUT", "/other", {"mappings": {"properties": {"f": {"type": "text", "analyzer": {}}}}},
     "mapper_parsing_exception"),
    ("PUT", "/other", {"mappings": {"properties": {"f": {"type": "keyword", "ignore_above": "x"}}}},
     "mapper_parsing_exception"),
    ("PUT", "/vec/_doc/z?if_seq_no=abc", {"text": "a"}, "illegal_argument_exception"),
])
def test_wrong_types_found_by_fuzzing_are_400(client: Any, data_node: Any, method: str, path: str, body: Any,
                                              error_type: str) -> None:
    """Inputs an in-process fuzz of the node's methods found raising TypeError / ValueError (500 over HTTP)."""
    knn_index(client, n=2)
    status, res = call(data_node.url, method, path, body)
    assert (status, error_of(res)[0]) == (400, error_type), res
    assert call(data_node.url, "GET", "/other")[0] == 404
    assert call(data_node.url, "GET", "/vec/_doc/z")[0] == 404


def test_deep_documents_and_mappings_stop_at_the_mapping_depth_limit(client: Any, data_node: Any) -> None:
    """A document nested 25 objects deep would add a 25-level object mapping (and a 990-level one used to recurse
    until Python's limit): OpenSearch's index.mapping.depth.limit (20) refuses it, for that item only."""
    knn_index(client, n=1)
    deep: Any = "x"
    for _ in range(25):
        deep = {"a": deep}
    body = ndjson(json.dumps({"index": {"_index": "vec", "_id": "deep"}}), json.dumps(deep),
                  json.dumps({"index": {"_index": "vec", "_id": "flat"}}), json.dumps({"text": "flat"}))
    status, res = call(data_node.url, "POST", "/_bulk?refresh=true", body, NDJSON)
    assert status == 200 and res["errors"] is True
    deep_item, flat_item = res["items"][0]["index"], res["items"][1]["index"]
    assert (deep_item["status"], deep_item["error"]["type"]) == (400, "illegal_argument_exception")
    assert deep_item["error"]["reason"] == ("Limit of mapping depth [20] has been exceeded due to object field [" +
                                            ".".join(["a"] * 21) + "]")
    assert flat_item["status"] == 201
    assert "a" not in client.indices.get_mapping(index="vec")["vec"]["mappings"]["properties"]
    mapping: Any = {"type": "keyword"}
    for _ in range(22):
        mapping = {"properties": {"o": mapping}}
    for method, path, body in (("PUT", "/other", {"mappings": mapping}), ("PUT", "/vec/_mapping", mapping)):
        status, res = call(data_node.url, method, path, body)
        assert (status, error_of(res)[0]) == (400, "illegal_argument_exception")
    assert call(data_node.url, "GET", "/other")[0] == 404
