"""The fuzz suite's table of every route of both nodes, with a body template per route.

``ROUTES`` holds one entry per (method, path) that ``neuralpipe serve --roles ml,data`` answers (the ML node's
routes, the data node's, and the combined node's ``/health`` and ``/metrics``); ``test_every_route_is_fuzzed``
compares it with the live application's router, so a new route without a fuzz entry fails the suite.

``destructive`` routes change state: their path parameters never name the sentinel model or index (only victims,
``fz``-prefixed names and odd values that cannot match the sentinel), and their bodies never address it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tests.fuzz.node import SENTINEL_INDEX, VICTIM_INDEX

ML = "/_plugins/_ml"
READ_ONLY = False
CHANGES = True

DOC = {"title": "fz alpha text", "tag": "t9", "n": 7, "vec": [0.1, 0.2, 0.3, 0.4]}
SEARCHES: list[dict[str, Any]] = [
    {"query": {"bool": {"must": [{"match": {"title": {"query": "alpha", "operator": "or"}}}],
                        "filter": [{"term": {"tag": "t0"}}, {"range": {"n": {"gte": 0, "lte": 10}}}]}},
     "size": 10, "from": 0, "sort": [{"n": {"order": "asc"}}], "_source": ["title", "n"], "track_total_hits": True,
     "min_score": 0.0},
    {"query": {"knn": {"vec": {"vector": [1.0, 2.0, 0.5, -1.0], "k": 5, "method_parameters": {"ef_search": 100},
                               "filter": {"term": {"tag": "t1"}}}}}, "size": 5, "_source": {"excludes": ["vec"]}},
    {"query": {"neural": {"vec": {"query_text": "alpha", "model_id": "@sentinel_model", "k": 3}}}},
    {"query": {"hybrid": {"queries": [{"match": {"title": "alpha"}},
                                      {"knn": {"vec": {"vector": [0.0, 1.0, 0.0, 1.0], "k": 3}}}]}},
     "size": 3},
    {"query": {"multi_match": {"query": "bravo", "fields": ["title^2", "tag"]}}, "highlight": {"fields": {"title": {}}},
     "aggs": {"tags": {"terms": {"field": "tag", "size": 3}}}, "search_after": [1], "timeout": "1s"},
    {"query": {"knn": {"vec": {"vector": [1.0, 2.0, 0.5, -1.0], "max_distance": 10.0}}},
     "post_filter": {"exists": {"field": "n"}}, "terminate_after": 5, "explain": True, "version": True},
    {"query": {"rank_feature": {"field": "fz_sparse.alpha", "linear": {}, "boost": 2.0}}},
    {"query": {"query_string": {"query": "alpha AND bravo"}}, "stored_fields": ["title"]},
    {"query": {"bool": {"should": [{"match_phrase": {"title": "alpha bravo"}}, {"terms": {"tag": ["t1", "t2"]}}],
                        "must_not": [{"ids": {"values": ["s3"]}}], "minimum_should_match": 1}},
     "from": 2, "size": 3, "sort": ["_score", {"n": "desc"}], "_source": False},
    {"query": {"knn": {"vec": {"vector": [0.5, 0.5, 0.5, 0.5], "k": 12, "min_score": 0.01}}}, "size": 12,
     "track_total_hits": 5, "seq_no_primary_term": True},
]
INGEST_PIPELINE = {"description": "fz", "processors": [
    {"text_embedding": {"model_id": "@sentinel_model", "field_map": {"title": "emb"}, "batch_size": 2}},
    {"text_chunking": {"field_map": {"title": "chunks"}, "algorithm": {"fixed_token_length": {"token_limit": 10}}}},
]}
SEARCH_PIPELINE = {
    "request_processors": [{"neural_query_enricher": {"default_model_id": "@sentinel_model"}}],
    "phase_results_processors": [{"normalization-processor": {
        "normalization": {"technique": "min_max"},
        "combination": {"technique": "arithmetic_mean", "parameters": {"weights": [0.5, 0.5]}}}}],
}
CREATE_INDEX = [
    {"settings": {"index.knn": True, "number_of_shards": 1, "number_of_replicas": 0,
                  "analysis": {"analyzer": {"a": {"type": "custom", "tokenizer": "standard",
                                                  "filter": ["lowercase"]}}}},
     "mappings": {"properties": {"title": {"type": "text", "analyzer": "standard"}, "vec": {
         "type": "knn_vector", "dimension": 3, "method": {"name": "hnsw", "engine": "faiss", "space_type": "l2",
                                                         "parameters": {"m": 16, "ef_construction": 100}}},
         "sp": {"type": "rank_features"}, "nest": {"type": "nested", "properties": {"k": {"type": "keyword"}}}}}},
    {"mappings": {"dynamic": "strict", "properties": {"d": {"type": "date"}, "f": {"type": "float"}}},
     "aliases": {"fz-alias": {}}},
]
MODEL_CONFIG = {"model_type": "bert", "embedding_dimension": 384, "framework_type": "sentence_transformers",
                "all_config": "{}", "pooling_mode": "mean", "normalize_result": True, "model_max_length": 512}
REGISTER = [
    {"name": "fz-model", "version": "1.0.0", "model_group_id": "@victim_group", "model_format": "TORCH_SCRIPT",
     "function_name": "TEXT_EMBEDDING", "model_content_hash_value": "0" * 64, "url": "file:///nonexistent/fz.zip",
     "model_config": MODEL_CONFIG, "description": "d", "is_enabled": True,
     "rate_limiter": {"limit": "4", "unit": "MINUTES"}, "model_content_size_in_bytes": 1000},
    {"name": "huggingface/sentence-transformers/all-MiniLM-L6-v2", "version": "0.0.0-fz",
     "model_format": "TORCH_SCRIPT", "model_group_id": "@victim_group"},
]
REGISTER_META = {"name": "fz-meta", "version": "1.0.0", "model_format": "TORCH_SCRIPT",
                 "function_name": "TEXT_EMBEDDING", "model_group_id": "@victim_group",
                 "model_content_hash_value": "0" * 64, "model_content_size_in_bytes": 1000, "total_chunks": 2,
                 "model_config": MODEL_CONFIG}
PREDICTS: list[dict[str, Any]] = [
    {"text_docs": ["alpha bravo", "charlie"], "return_number": True, "target_response": ["sentence_embedding"]},
    {"text_docs": ["alpha"], "parameters": {"content_type": "QUERY", "sparse_embedding_format": "WORD"},
     "return_bytes": False, "target_response_positions": [0]},
    {"query_text": "q", "text_docs": ["d1", "d2"]},
    {"question": "who?", "context": "nobody knows"},
    {"text_docs": ["one", "two two", "three three three", "four"], "return_number": True,
     "target_response": ["sentence_embedding"], "target_response_positions": [0]},
    {"text_docs": ["a longer text about alpha and bravo " * 20], "return_bytes": True},
]
ML_SEARCH = [{"query": {"match_all": {}}, "size": 10, "from": 0, "sort": [{"created_time": {"order": "desc"}}],
              "_source": ["name", "model_state"]},
             {"query": {"bool": {"must": [{"term": {"name.keyword": "fz"}}, {"terms": {"model_state": ["DEPLOYED"]}}],
                                 "must_not": [{"exists": {"field": "chunk_number"}}]}}},
             {"query": {"ids": {"values": ["@victim_model"]}}, "size": 1}]
MODEL_UPDATES = [{"name": "fz-renamed", "description": "d", "is_enabled": True,
                  "rate_limiter": {"limit": "1", "unit": "SECONDS"}},
                 {"model_config": MODEL_CONFIG, "model_group_id": "@empty_group"}]
PROFILE = {"node_ids": ["fuzz-node"], "model_ids": ["@victim_model"], "task_ids": ["@victim_task"],
           "return_all_tasks": True, "return_all_models": True}
CLUSTER_SETTINGS = {"persistent": {"plugins.ml_commons.monitoring_request_count": 100},
                    "transient": {"plugins.ml_commons.ml_task_timeout_in_seconds": 600,
                                  "plugins": {"ml_commons": {"max_register_model_tasks_per_node": 10}}}}


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # aiohttp's formatter: "/{index}/_doc/{id}"
    changes: bool  # the route may change state: path parameters never name the sentinels
    bodies: list[Any] = field(default_factory=list)  # JSON templates; [] = no body expected
    ndjson: list[tuple[Any, Any]] = field(default_factory=list)  # (header, body) line templates
    raw: bool = False  # the body is raw bytes (a model chunk)
    budget: int = 1  # weight of the route's share of the examples

    @property
    def label(self) -> str:
        return f"{self.method} {self.path}"


def _r(methods: str, path: str, changes: bool, bodies: Any = None, budget: int = 1, **kw: Any) -> list[Route]:
    if isinstance(bodies, dict):
        bodies = [bodies]
    return [Route(m, path, changes, list(bodies or []), budget=budget, **kw) for m in methods.split(",")]


BULK_LINES: list[tuple[Any, Any]] = [
    ({"index": {"_index": VICTIM_INDEX, "_id": "v1"}}, DOC),
    ({"create": {"_index": "fz-new", "_id": "c1"}}, DOC),
    ({"update": {"_index": VICTIM_INDEX, "_id": "s1", "retry_on_conflict": 1}}, {"doc": {"n": 5},
                                                                                  "doc_as_upsert": True}),
    ({"delete": {"_index": VICTIM_INDEX, "_id": "s2"}}, None),
    ({"index": {"_index": VICTIM_INDEX, "pipeline": "fz-pipe"}}, {"title": "alpha", "vec": [1, 2, 3, 4]}),
    ({"index": {}}, {"title": "no index named: the URL's", "vec": [1e39, 0, 0, 0]}),
]
MSEARCH_LINES: list[tuple[Any, Any]] = [({"index": SENTINEL_INDEX}, s) for s in SEARCHES[:3]] + [
    ({}, {"query": {"match_all": {}}, "size": 2}), ({"index": [SENTINEL_INDEX, VICTIM_INDEX]}, SEARCHES[0]),
    ({"index": "fz-missing", "search_pipeline": "fz-pipe"}, SEARCHES[1])]
ANALYZE = [{"analyzer": "standard", "text": "Hello World"}, {"field": "title", "text": ["a b", "c"]},
           {"tokenizer": "standard", "filter": ["lowercase", {"type": "stop", "stopwords": ["a"]}], "text": "A b"}]
MGET = [{"docs": [{"_index": SENTINEL_INDEX, "_id": "s1", "_source": ["title"]}, {"_id": "s2"}]},
        {"ids": ["s1", "s2", "nope"]}]

ROUTES: list[Route] = [
    # ---- data node: cluster and node level
    *_r("GET,HEAD", "/", READ_ONLY),
    *_r("GET", "/metrics", READ_ONLY), *_r("GET", "/health", READ_ONLY),
    *_r("GET,POST", "/_analyze", READ_ONLY, ANALYZE), *_r("GET,POST", "/{index}/_analyze", READ_ONLY, ANALYZE),
    *_r("GET", "/_cat/indices", READ_ONLY), *_r("GET", "/_cat/indices/{index}", READ_ONLY),
    *_r("GET", "/_cluster/health", READ_ONLY), *_r("GET", "/_cluster/health/{index}", READ_ONLY),
    *_r("GET", "/_mapping", READ_ONLY), *_r("GET", "/_settings", READ_ONLY),
    *_r("GET,POST", "/_refresh", READ_ONLY), *_r("GET,POST", "/{index}/_refresh", READ_ONLY),
    # ---- documents and search
    *_r("POST,PUT", "/_bulk", CHANGES, ndjson=BULK_LINES, budget=3),
    *_r("POST,PUT", "/{index}/_bulk", CHANGES, ndjson=BULK_LINES, budget=2),
    *_r("GET,POST", "/_search", READ_ONLY, SEARCHES, budget=2),
    *_r("GET,POST", "/{index}/_search", READ_ONLY, SEARCHES, budget=4),
    *_r("GET,POST", "/_count", READ_ONLY, SEARCHES[:2]), *_r("GET,POST", "/{index}/_count", READ_ONLY, SEARCHES[:3]),
    *_r("GET,POST", "/_msearch", READ_ONLY, ndjson=MSEARCH_LINES, budget=2),
    *_r("GET,POST", "/{index}/_msearch", READ_ONLY, ndjson=MSEARCH_LINES),
    *_r("GET,POST", "/_mget", READ_ONLY, MGET), *_r("GET,POST", "/{index}/_mget", READ_ONLY, MGET),
    *_r("POST", "/{index}/_doc", CHANGES, DOC, budget=2),
    *_r("PUT,POST", "/{index}/_doc/{id}", CHANGES, DOC, budget=2),
    *_r("PUT,POST", "/{index}/_create/{id}", CHANGES, DOC),
    *_r("GET,HEAD", "/{index}/_doc/{id}", READ_ONLY),
    *_r("DELETE", "/{index}/_doc/{id}", CHANGES),
    *_r("POST", "/{index}/_update/{id}", CHANGES, [{"doc": {"n": 8, "title": "upd"}, "doc_as_upsert": False},
                                                   {"doc": DOC, "upsert": DOC, "detect_noop": True}]),
    *_r("POST", "/{index}/_delete_by_query", CHANGES, {"query": {"term": {"tag": "t1"}}, "max_docs": 2}),
    # ---- indices
    *_r("PUT", "/{index}", CHANGES, CREATE_INDEX, budget=3),
    *_r("GET,HEAD", "/{index}", READ_ONLY),
    *_r("DELETE", "/{index}", CHANGES),
    *_r("GET", "/{index}/_mapping", READ_ONLY),
    *_r("PUT,POST", "/{index}/_mapping", CHANGES, {"properties": {"fz_new": {"type": "keyword"}, "vec2": {
        "type": "knn_vector", "dimension": 3}, "title": {"type": "text"}}}),
    *_r("GET", "/{index}/_settings", READ_ONLY),
    *_r("PUT", "/{index}/_settings", CHANGES, [{"index": {"number_of_replicas": 0, "refresh_interval": "1s",
                                                          "knn.algo_param.ef_search": 100}},
                                               {"index.number_of_replicas": 1, "index.max_result_window": 100}],
        budget=2),
    # ---- pipelines
    *_r("GET", "/_ingest/pipeline", READ_ONLY), *_r("GET", "/_search/pipeline", READ_ONLY),
    *_r("GET,POST", "/_ingest/pipeline/_simulate", READ_ONLY, {"pipeline": INGEST_PIPELINE, "docs": [
        {"_index": "x", "_id": "1", "_source": {"title": "alpha"}}]}),
    *_r("GET,POST", "/_ingest/pipeline/{id}/_simulate", READ_ONLY, {"docs": [{"_source": {"title": "alpha"}}]}),
    *_r("PUT", "/_ingest/pipeline/{id}", CHANGES, INGEST_PIPELINE, budget=2),
    *_r("GET", "/_ingest/pipeline/{id}", READ_ONLY), *_r("DELETE", "/_ingest/pipeline/{id}", CHANGES),
    *_r("PUT", "/_search/pipeline/{id}", CHANGES, SEARCH_PIPELINE, budget=2),
    *_r("GET", "/_search/pipeline/{id}", READ_ONLY), *_r("DELETE", "/_search/pipeline/{id}", CHANGES),
    # ---- ML node: model groups
    *_r("POST", f"{ML}/model_groups/_register", CHANGES, {"name": "fz-group", "description": "d",
                                                          "access_mode": "public", "backend_roles": ["r"],
                                                          "add_all_backend_roles": False}),
    *_r("GET,POST", f"{ML}/model_groups/_search", READ_ONLY, ML_SEARCH),
    *_r("GET", f"{ML}/model_groups/{{model_group_id}}", READ_ONLY),
    *_r("PUT", f"{ML}/model_groups/{{model_group_id}}", CHANGES, {"name": "fz-group2", "description": "d2"}),
    *_r("DELETE", f"{ML}/model_groups/{{model_group_id}}", CHANGES),
    # ---- ML node: models
    *_r("POST", f"{ML}/models/_register", CHANGES, REGISTER, budget=2),
    *_r("POST", f"{ML}/models/_upload", CHANGES, REGISTER),
    *_r("POST", f"{ML}/models/_register_meta", CHANGES, REGISTER_META, budget=2),
    *_r("POST", f"{ML}/models/meta", CHANGES, REGISTER_META),
    *_r("GET,POST", f"{ML}/models/_search", READ_ONLY, ML_SEARCH),
    *_r("POST", f"{ML}/models/_undeploy", CHANGES, {"model_ids": ["@victim_model", "fz-x"], "node_ids": ["fuzz-node"]}),
    *_r("POST", f"{ML}/models/_unload", CHANGES, {"model_ids": ["@victim_model"], "node_ids": ["fuzz-node"]}),
    *_r("POST", f"{ML}/models/{{model_id}}/upload_chunk/{{chunk_number}}", CHANGES, raw=True),
    *_r("POST", f"{ML}/models/{{model_id}}/chunk/{{chunk_number}}", CHANGES, raw=True),
    *_r("POST", f"{ML}/models/{{model_id}}/_deploy", CHANGES, {"node_ids": ["fuzz-node"]}),
    *_r("POST", f"{ML}/models/{{model_id}}/_load", CHANGES, {"node_ids": ["fuzz-node"]}),
    *_r("POST", f"{ML}/models/{{model_id}}/_undeploy", CHANGES, {"node_ids": ["fuzz-node"]}),
    *_r("POST", f"{ML}/models/{{model_id}}/_unload", CHANGES, {"node_ids": ["fuzz-node"]}),
    *_r("POST", f"{ML}/models/{{model_id}}/_predict", READ_ONLY, PREDICTS, budget=3),
    *_r("GET", f"{ML}/models/{{model_id}}", READ_ONLY),
    *_r("PUT", f"{ML}/models/{{model_id}}", CHANGES, MODEL_UPDATES),
    *_r("DELETE", f"{ML}/models/{{model_id}}", CHANGES),
    *_r("POST", f"{ML}/_predict/{{algorithm}}/{{model_id}}", READ_ONLY, PREDICTS, budget=4),
    # ---- ML node: tasks, profile, stats, settings, extras
    *_r("GET,POST", f"{ML}/tasks/_search", READ_ONLY, ML_SEARCH),
    *_r("GET", f"{ML}/tasks/{{task_id}}", READ_ONLY), *_r("DELETE", f"{ML}/tasks/{{task_id}}", CHANGES),
    *_r("GET", f"{ML}/profile", READ_ONLY, PROFILE),
    *_r("GET", f"{ML}/profile/{{kind}}", READ_ONLY, PROFILE),
    *_r("GET", f"{ML}/profile/{{kind}}/{{ids}}", READ_ONLY, PROFILE),
    *_r("GET", f"{ML}/stats", READ_ONLY), *_r("GET", f"{ML}/stats/", READ_ONLY),
    *_r("GET", f"{ML}/stats/{{stat}}", READ_ONLY), *_r("GET", f"{ML}/{{node_id}}/stats", READ_ONLY),
    *_r("GET", f"{ML}/{{node_id}}/stats/", READ_ONLY), *_r("GET", f"{ML}/{{node_id}}/stats/{{stat}}", READ_ONLY),
    *_r("GET", "/_cluster/settings", READ_ONLY),
    *_r("PUT", "/_cluster/settings", CHANGES, CLUSTER_SETTINGS, budget=2),
    *_r("GET", f"{ML}/health", READ_ONLY), *_r("GET", f"{ML}/metrics", READ_ONLY),
]

# Path parameter names -> the real names a generated request may use (besides fz-names and odd values), for routes
# that only read / for routes that change state. "@key" is a fixture id (tests.fuzz.node.setup_sentinels).
NAMED: dict[str, tuple[list[str], list[str]]] = {
    "index": ([SENTINEL_INDEX, VICTIM_INDEX, f"{SENTINEL_INDEX},{VICTIM_INDEX}", "fz*"], [VICTIM_INDEX, "fz*"]),
    "id": (["s1", "s0", "v1", "fz-pipe"], ["s1", "s3", "v1", "fz-pipe"]),
    "model_id": (["@sentinel_model", "@victim_model"], ["@victim_model"]),
    "model_group_id": (["@sentinel_group", "@victim_group"], ["@victim_group", "@empty_group"]),
    "task_id": (["@sentinel_task", "@victim_task"], ["@victim_task"]),
    "algorithm": (["text_embedding", "TEXT_EMBEDDING", "sparse_tokenize", "sparse_encoding", "remote",
                   "text_similarity", "question_answering", "kmeans"], []),
    "chunk_number": (["0", "1", "2", "-1", "1e309", "99999999999", "00", "+1", " 1".replace(" ", "%20")], []),
    "kind": (["models", "tasks"], []),
    "ids": (["@victim_model", "@sentinel_model", "@victim_model,@victim_task", "_all"], []),
    "stat": (["ml_model_count", "ml_total_request_count", "ml_executing_task_count", "fz", "_all"], []),
    "node_id": (["fuzz-node", "_local", "_all", "nope"], []),
}

# A node with one role answers the node-level routes with that role's own handlers.
SINGLE_ROLE_ROUTES: dict[str, list[Route]] = {
    "ml": [*_r("GET", "/", READ_ONLY), *_r("GET", "/health", READ_ONLY), *_r("GET", "/metrics", READ_ONLY),
           *_r("GET", f"{ML}/health", READ_ONLY)],
    "data": [*_r("GET,HEAD", "/", READ_ONLY), *_r("GET", "/metrics", READ_ONLY),
             *_r("GET", "/_cat/indices", READ_ONLY)],
}


def _nd(*lines: str) -> str:
    return "".join(line + "\n" for line in lines)


DEEP_ARRAY = "[" * 1500 + "]" * 1500
BIG_INT = "1" + "0" * 5000
# Requests issue 11 names (test_issue_11_inputs sends them before the generated ones), each followed by the reads
# that showed the damage. Left out on purpose: the memory and time bombs (a 20 MB text, ef_search 10^9, total_chunks
# 10^7, a TorchScript model that never returns, slow URLs), which the owners' own tests cover without taking this
# shared machine's memory or the suite's time budget.
Seed = tuple[str, str, str | bytes]  # method, path ("@key": a fixture id), body (str: sent as UTF-8)
NDJ = "/_bulk"
MSEARCH_SEEDS: list[str | bytes] = [
    "null\n{}\n", '{"index":1.5}\n{}\n', b"{}\n\xdd\n", "[]\n{}\n", '{"index":{"a":1}}\n{}\n', '{"index":[1.5]}\n{}\n',
    "{}\n" + DEEP_ARRAY + "\n", '{}\n{"size":' + BIG_INT + '}\n']
SEEDS: dict[str, list[Seed]] = {
    "a lone surrogate stored by _bulk (item 3)": [
        ("POST", NDJ, _nd('{"index":{"_index":"fz-victim","_id":"sur"}}', '{"title":"\\ud800"}')),
        ("GET", "/fz-victim/_doc/sur", ""), ("GET", "/_search", ""), ("POST", "/fz-victim/_search", "{}"),
        ("POST", "/_mget", '{"docs":[{"_index":"fz-victim","_id":"sur"}]}')],
    "bad values in _bulk documents (items 11, 12)": [
        ("POST", NDJ, _nd('{"index":{"_index":"fz-victim","_id":"inf"}}', '{"vec":[1e39,0,0,0]}')),
        ("POST", NDJ, _nd('{"index":{"_index":"fz-victim","_id":"ok1"}}', '{"title":"fine"}',
                          '{"index":{"_index":"fz-victim","_id":"bad"}}', '{"n":"not a number"}',
                          '{"index":{"_index":"fz-victim","_id":"ok2"}}', '{"title":"fine too"}')),
        ("POST", NDJ, _nd('{"index":{"_index":"fz-victim","_id":"big"}}', '{"n":' + BIG_INT + '}')),
        ("POST", NDJ, _nd('{"index":{"_index":"fz-victim","_id":"deep"}}', '{"x":' + DEEP_ARRAY + '}')),
        ("POST", NDJ, _nd('{"index":{"_index":"fz-victim","_id":"huge"}}', '{"n":1e309}')),
        ("POST", NDJ, b"\xff\xfe{}\n"),
        ("POST", "/fz-victim/_doc/inf2", '{"vec":[1e39,0,0,0]}'), ("GET", "/fz-victim/_search", "")],
    "bad search bodies (item 12)": [
        ("POST", "/sentinel-idx/_search", body) for body in [
            '{"size":"50%"}', '{"_source":[1,"a"]}', '{"_source":{"excludes":[{}]}}', '{"_source":{"includes":[1]}}',
            '{"query":{"knn":{"vec":{"vector":[1e39,0,0,0],"k":3}}}}', '{"from":-1}', '{"size":1e309}',
            '{"query":{"knn":{"vec":{"vector":[1,2,3,4],"k":10001}}}}', '{"query":{"match":{"title":"\\ud800"}}}',
            '{"query":' + '{"bool":{"must":' * 600 + '{"match_all":{}}' + '}}' * 600 + '}']],
    "bad _msearch and _mget lines (item 12)": [
        *[("POST", "/_msearch", body) for body in MSEARCH_SEEDS],
        ("POST", "/_mget", '{"docs":[{"_index":{"a":1},"_id":"s1"}]}'),
        ("POST", "/_mget", '{"docs":[{"_index":"sentinel-idx","_id":{"a":1}}]}')],
    "bad _update bodies (item 12)": [("POST", "/fz-victim/_update/s1", body) for body in
                                     ['{"doc":5}', '{"doc":[1]}', '{"doc":{"vec":[1e39,0,0,0]}}']],
    "bad mappings and index settings at creation (item 12)": [("PUT", "/fz-seed-index", body) for body in [
        '{"mappings":"x"}', '{"mappings":0.5}', '{"mappings":{"properties":"x"}}',
        '{"settings":{"number_of_replicas":"x"}}', '{"settings":{"index.knn.algo_param.ef_search":"x"}}']],
    "bad index settings persisted (item 4)": [
        ("PUT", "/fz-seed-settings", '{"settings":{"index.knn":true},"mappings":{"properties":{"vec":{'
                                     '"type":"knn_vector","dimension":2}}}}'),
        ("PUT", "/fz-seed-settings/_settings", '{"index":{"number_of_replicas":"x"}}'),
        ("GET", "/_cat/indices", ""), ("GET", "/_cluster/health", ""), ("GET", "/_search", ""),
        ("PUT", "/fz-seed-settings/_settings", '{"index":{"knn.algo_param.ef_search":"x"}}'),
        ("POST", "/fz-seed-settings/_doc/1?refresh=true", '{"vec":[1,2]}'),
        ("POST", "/fz-seed-settings/_search", '{"query":{"knn":{"vec":{"vector":[1,2],"k":1}}}}'),
        ("DELETE", "/fz-seed-settings", "")],
    "bad predict inputs (items 1, 12)": [
        ("POST", "/_plugins/_ml/_predict/text_embedding/@sentinel_model", body) for body in [
            '{"text_docs":["\\ud800"]}', '{"text_docs":["' + "word " * 20_000 + '"]}', '{"text_docs":' + DEEP_ARRAY
            + '}', '{"text_docs":[' + ",".join(['"a"'] * 1000) + ']}', '{"text_docs":[1, "a"]}',
            '{"text_docs":"a"}', '{"text_docs":["a"],"target_response_positions":[' + BIG_INT + ']}']],
    "registration inputs (items 6, 10)": [
        ("POST", "/_plugins/_ml/models/_register", '{"name":"fz-etc","version":"1","function_name":"TEXT_EMBEDDING",'
         '"model_format":"TORCH_SCRIPT","model_content_hash_value":"' + "0" * 64 + '","url":"file:///etc/passwd",'
         '"model_config":{"model_type":"bert","embedding_dimension":384,"framework_type":"sentence_transformers"}}'),
        ("POST", "/_plugins/_ml/models/_register_meta", '{"name":"fz-m","version":"1","model_format":"TORCH_SCRIPT",'
         '"model_content_hash_value":"' + "0" * 64 + '","model_content_size_in_bytes":10,"total_chunks":' + BIG_INT
         + ',"model_config":{"model_type":"bert","embedding_dimension":384,'
         '"framework_type":"sentence_transformers"}}')],
}
