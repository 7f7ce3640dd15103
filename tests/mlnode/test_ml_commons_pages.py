"""Requests from OpenSearch's ML Commons pages sent verbatim through opensearch-py, answers compared field by field with
the pages' examples or ML Commons' source (issue 18). The node serves fake runtimes: nothing here runs inference."""

from __future__ import annotations

import pytest
from opensearchpy import OpenSearch
from opensearchpy.exceptions import RequestError

from mlnode.settings import MLSettings
from tests.fixtures.mlnode import NodeThread, fake_backends, file_url_test_folders

pytestmark = [pytest.mark.integration]

# ML Commons' MLModelGroupManager / TransportUpdateModelGroupAction, when security or model access control is off
ACCESS_CONTROL_DISABLED = (
    "You cannot specify model access control parameters because the Security plugin or model access control is disabled"
    " on your cluster."
)

# opensearch-custom-local-models.md, "Prerequisites"
CUSTOM_PAGE_SETTINGS = {
    "persistent": {
        "plugins": {
            "ml_commons": {
                "allow_registering_model_via_url": "true",
                "only_run_on_ml_node": "false",
                "model_access_control_enabled": "true",
                "native_memory_threshold": "99",
            }
        }
    }
}
# opensearch-pretrained-models.md, "Cluster settings"
PRETRAINED_PAGE_SETTINGS = {
    "persistent": {
        "plugins": {
            "ml_commons": {
                "only_run_on_ml_node": "false",
                "model_access_control_enabled": "true",
                "native_memory_threshold": "99",
            }
        }
    }
}
# both pages, "Step 1: Register a model group"
GROUP_BODY = {"name": "local_model_group", "description": "A model group for local models"}


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    root = tmp_path_factory.mktemp("pages")
    settings = MLSettings.load(data_dir=root / "data", file_url_folders=file_url_test_folders())
    node = NodeThread(settings, backends=fake_backends(root)).start()
    client = OpenSearch(hosts=[node.url], timeout=60)
    yield client
    client.close()
    node.stop()


def _error(call, *args, **kwargs) -> dict:
    with pytest.raises(RequestError) as err:
        call(*args, **kwargs)
    assert err.value.status_code == 400
    return err.value.info


# ---- _cluster/settings ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body", [CUSTOM_PAGE_SETTINGS, PRETRAINED_PAGE_SETTINGS], ids=["custom-page", "pretrained-page"]
)
def test_cluster_settings_from_the_pages_answer_strings(client, body):
    """OpenSearch keeps and prints setting values as strings: the acknowledgement echoes the body as sent."""
    try:
        assert client.cluster.put_settings(body=body) == {"acknowledged": True, **body, "transient": {}}
        got = client.cluster.get_settings()
        assert got == {"persistent": body["persistent"], "transient": {}}
        flat = client.cluster.get_settings(flat_settings=True, include_defaults=True)
        sent = {f"plugins.ml_commons.{k}": v for k, v in body["persistent"]["plugins"]["ml_commons"].items()}
        assert flat["persistent"] == sent
        # defaults: every other setting at its default, none of the ones set, all as strings
        assert not set(sent) & set(flat["defaults"])
        assert flat["defaults"]["plugins.ml_commons.max_model_on_node"] == "10"
        assert flat["defaults"]["plugins.ml_commons.allow_registering_model_via_local_file"] == "false"
        assert all(isinstance(v, str) for v in flat["defaults"].values())
    finally:
        names = body["persistent"]["plugins"]["ml_commons"]
        client.cluster.put_settings(body={"persistent": {f"plugins.ml_commons.{k}": None for k in names}})


def test_include_defaults_shows_defaults_not_current_values(client):
    client.cluster.put_settings(body={"transient": {"plugins.ml_commons.max_model_on_node": "4"}})
    try:
        got = client.cluster.get_settings(flat_settings=True, include_defaults=True)
        assert got["transient"] == {"plugins.ml_commons.max_model_on_node": "4"}
        assert "plugins.ml_commons.max_model_on_node" not in got["defaults"]
    finally:
        client.cluster.put_settings(body={"transient": {"plugins.ml_commons.max_model_on_node": None}})
    got = client.cluster.get_settings(flat_settings=True, include_defaults=True)
    assert got["defaults"]["plugins.ml_commons.max_model_on_node"] == "10" and got["transient"] == {}


# ---- model groups with access control off --------------------------------------------------------------------------


def test_model_group_from_the_pages(client):
    created = client.plugins.ml.register_model_group(body=GROUP_BODY)
    assert sorted(created) == ["model_group_id", "status"] and created["status"] == "CREATED"
    group = client.plugins.ml.get_model_group(model_group_id=created["model_group_id"])
    assert (group["name"], group["description"], group["access"]) == (
        GROUP_BODY["name"],
        GROUP_BODY["description"],
        "public",
    )
    assert "owner" not in group and "backend_roles" not in group  # as ML Commons writes a group with security off


@pytest.mark.parametrize(
    "extra",
    [
        {"access_mode": "public"},  # the register-model-group page's example
        {"access_mode": "restricted", "backend_roles": ["IT"]},
        {"backend_roles": ["IT"]},
        {"add_all_backend_roles": True},
        {"add_all_backend_roles": False},  # any value: ML Commons checks the field is present
    ],
)
def test_access_control_parameters_are_refused_without_security(client, extra):
    body = {"name": f"acl-{'-'.join(map(str, extra.values()))}", "description": "access control off", **extra}
    info = _error(client.plugins.ml.register_model_group, body=body)
    assert info["error"]["type"] == "illegal_argument_exception"
    assert info["error"]["reason"] == ACCESS_CONTROL_DISABLED
    assert info["error"]["root_cause"] == [{"type": "illegal_argument_exception", "reason": ACCESS_CONTROL_DISABLED}]
    names = [h["_source"]["name"] for h in client.plugins.ml.search_model_group(body={"size": 100})["hits"]["hits"]]
    assert body["name"] not in names  # nothing was created
    group_id = client.plugins.ml.register_model_group(body={"name": body["name"]})["model_group_id"]
    info = _error(client.plugins.ml.update_model_group, model_group_id=group_id, body=extra)
    assert info["error"]["reason"] == ACCESS_CONTROL_DISABLED
    assert client.plugins.ml.get_model_group(model_group_id=group_id)["access"] == "public"


def test_empty_backend_roles_are_not_access_control(client):
    """ML Commons only refuses a non-empty backend_roles."""
    created = client.plugins.ml.register_model_group(body={"name": "no-roles", "backend_roles": []})
    assert created["status"] == "CREATED"
    updated = client.plugins.ml.update_model_group(model_group_id=created["model_group_id"], body={"backend_roles": []})
    assert updated == {"status": "Updated"}


# ---- _search over the system indices -------------------------------------------------------------------------------

# the search-model-group page's "search for model groups of a user" request, verbatim
OWNER_SEARCH = {
    "query": {
        "bool": {
            "must": [
                {
                    "nested": {
                        "query": {"term": {"owner.name.keyword": {"value": "user1", "boost": 1}}},
                        "path": "owner",
                        "ignore_unmapped": False,
                        "score_mode": "none",
                        "boost": 1,
                    }
                }
            ]
        }
    }
}
SHARDS = {"total": 1, "successful": 1, "skipped": 0, "failed": 0}
GROUPS = {  # name -> description
    "alpha-embed": "dense text embedding models",
    "beta-embed": "more dense embedding models",
    "gamma-sparse": "sparse encoding models",
    "delta-rerank": "cross encoders",
}


@pytest.fixture(scope="module")
def groups(tmp_path_factory):
    """A fresh node holding GROUPS only; yields (client, {name: id})."""
    root = tmp_path_factory.mktemp("search")
    settings = MLSettings.load(data_dir=root / "data", file_url_folders=file_url_test_folders())
    node = NodeThread(settings, backends=fake_backends(root)).start()
    client = OpenSearch(hosts=[node.url], timeout=60)
    ids = {
        name: client.plugins.ml.register_model_group(body={"name": name, "description": text})["model_group_id"]
        for name, text in GROUPS.items()
    }
    yield client, ids
    client.close()
    node.stop()


def _names(response: dict) -> list[str]:
    return [hit["_source"]["name"] for hit in response["hits"]["hits"]]


def test_owner_search_of_the_page_answers_no_hits_without_security(groups):
    client, _ = groups
    got = client.plugins.ml.search_model_group(body=OWNER_SEARCH)
    assert (got["timed_out"], got["_shards"]) == (False, SHARDS)
    assert got["hits"] == {"total": {"value": 0, "relation": "eq"}, "max_score": None, "hits": []}


def test_match_all_of_the_page_answers_its_hit_shape(groups):
    client, ids = groups
    got = client.plugins.ml.search_model_group(body={"query": {"match_all": {}}, "size": 1000})
    assert got["hits"]["total"] == {"value": len(GROUPS), "relation": "eq"} and got["hits"]["max_score"] == 1.0
    hit = next(h for h in got["hits"]["hits"] if h["_id"] == ids["alpha-embed"])
    assert sorted(hit) == ["_id", "_index", "_primary_term", "_score", "_seq_no", "_source", "_version"]
    assert (hit["_index"], hit["_version"], hit["_primary_term"], hit["_score"]) == (
        ".plugins-ml-model-group",
        1,
        1,
        1.0,
    )
    source = hit["_source"]
    assert sorted(source) == ["access", "created_time", "description", "last_updated_time", "latest_version", "name"]
    assert (source["name"], source["description"], source["access"], source["latest_version"]) == (
        "alpha-embed",
        GROUPS["alpha-embed"],
        "public",
        0,
    )


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"match_all": {}}, set(GROUPS)),
        ({"term": {"name.keyword": "beta-embed"}}, {"beta-embed"}),
        ({"term": {"name.keyword": {"value": "BETA-EMBED", "case_insensitive": True}}}, {"beta-embed"}),
        ({"terms": {"name.keyword": ["alpha-embed", "delta-rerank", "nope"]}}, {"alpha-embed", "delta-rerank"}),
        ({"match": {"description": "dense models"}}, {"alpha-embed", "beta-embed", "gamma-sparse"}),
        ({"match": {"description": {"query": "dense models", "operator": "and"}}}, {"alpha-embed", "beta-embed"}),
        ({"match_phrase": {"description": "Dense  embedding"}}, {"beta-embed"}),
        ({"prefix": {"name.keyword": "gamma"}}, {"gamma-sparse"}),
        ({"wildcard": {"name.keyword": {"value": "*-embed"}}}, {"alpha-embed", "beta-embed"}),
        ({"exists": {"field": "description"}}, set(GROUPS)),
        ({"exists": {"field": "owner"}}, set()),
        ({"range": {"latest_version": {"gte": 0, "lt": 1}}}, set(GROUPS)),
        ({"range": {"name.keyword": {"gt": "beta-embed"}}}, {"gamma-sparse", "delta-rerank"}),
        (
            {
                "bool": {
                    "must": [{"match": {"description": "models"}}],
                    "must_not": [{"term": {"name.keyword": "alpha-embed"}}],
                }
            },
            {"beta-embed", "gamma-sparse"},
        ),
        (
            {"bool": {"filter": {"prefix": {"name.keyword": "a"}}, "should": [{"term": {"name.keyword": "x"}}]}},
            {"alpha-embed"},
        ),
        (
            {
                "bool": {
                    "should": [
                        {"match": {"description": "dense"}},
                        {"match": {"description": "embedding"}},
                        {"match": {"description": "models"}},
                    ],
                    "minimum_should_match": 2,
                }
            },
            {"alpha-embed", "beta-embed"},
        ),
        (
            {
                "bool": {
                    "should": [{"match": {"description": "dense"}}, {"match": {"description": "cross"}}],
                    "minimum_should_match": "50%",
                }
            },
            {"alpha-embed", "beta-embed", "delta-rerank"},
        ),
        ({"bool": {"must_not": {"match": {"description": "dense"}}}}, {"gamma-sparse", "delta-rerank"}),
    ],
)
def test_query_forms(groups, query, expected):
    client, ids = groups
    got = client.plugins.ml.search_model_group(body={"query": query, "size": 100})
    assert set(_names(got)) == expected and got["hits"]["total"]["value"] == len(expected)
    by_ids = client.plugins.ml.search_model_group(body={"query": {"ids": {"values": [ids[n] for n in expected]}}})
    assert set(_names(by_ids)) == expected


@pytest.mark.parametrize(
    ("body", "error_type", "reason"),
    [
        ({"query": {"fuzzy": {"name": "alpha"}}}, "parsing_exception", "unknown query [fuzzy]"),
        (
            {"query": {"term": {"name": "a", "description": "b"}}},
            "parsing_exception",
            "[term] query takes exactly one field",
        ),
        (
            {"query": {"nested": {"path": "user", "query": {"match_all": {}}}}},
            "query_shard_exception",
            "failed to create query: [nested] failed to find nested object under path [user]",
        ),
        ({"query": {"bool": {"must": [], "maybe": []}}}, "parsing_exception", "[bool] query does not support [maybe]"),
        ({"search_after": ["a"]}, "illegal_argument_exception", "Sort must contain at least one field."),
        (
            {"sort": ["name.keyword"], "search_after": ["a", 1]},
            "illegal_argument_exception",
            "search_after has 2 value(s) but sort has 1.",
        ),
        ({"sort": [{"name.keyword": "up"}]}, "illegal_argument_exception", "Unknown SortOrder [up]"),
        ({"size": -1}, "illegal_argument_exception", "[size] parameter cannot be negative, found [-1]"),
    ],
)
def test_search_errors_in_opensearch_shape(groups, body, error_type, reason):
    client, _ = groups
    info = _error(client.plugins.ml.search_model_group, body=body)
    assert info["status"] == 400 and info["error"]["type"] == error_type
    assert info["error"]["reason"].startswith(reason)


def test_nested_on_an_unmapped_path_may_be_ignored(groups):
    client, _ = groups
    body = {"query": {"nested": {"path": "user", "query": {"match_all": {}}, "ignore_unmapped": True}}}
    assert client.plugins.ml.search_model_group(body=body)["hits"]["total"]["value"] == 0


def test_models_and_tasks_searches_take_their_nested_user_path(groups):
    client, _ = groups
    nested_user = {"query": {"nested": {"path": "user", "query": {"term": {"user.name": "admin"}}}}}
    assert client.plugins.ml.search_models(body=nested_user)["hits"]["total"]["value"] == 0
    tasks = client.transport.perform_request("POST", "/_plugins/_ml/tasks/_search", body=nested_user)
    assert tasks["hits"]["total"]["value"] == 0
    info = _error(client.plugins.ml.search_models, body=OWNER_SEARCH)  # models have no nested owner in ML Commons
    assert info["error"]["type"] == "query_shard_exception"


def test_sorted_search_has_sort_values_no_scores_and_pages_with_search_after(groups):
    client, _ = groups
    body = {"sort": [{"name.keyword": {"order": "desc"}}], "size": 100}
    full = client.plugins.ml.search_model_group(body=body)
    assert _names(full) == sorted(GROUPS, reverse=True)
    assert full["hits"]["max_score"] is None
    assert [(h["_score"], h["sort"]) for h in full["hits"]["hits"]] == [
        (None, [n]) for n in sorted(GROUPS, reverse=True)
    ]
    pages, after = [], None
    while True:
        page = {"sort": body["sort"], "size": 3, **({"search_after": after} if after else {})}
        hits = client.plugins.ml.search_model_group(body=page)["hits"]["hits"]
        if not hits:
            break
        pages.append([h["_source"]["name"] for h in hits])
        after = hits[-1]["sort"]
    assert pages == [sorted(GROUPS, reverse=True)[:3], sorted(GROUPS, reverse=True)[3:]]


def test_seq_no_and_version_follow_each_write(groups):
    client, ids = groups

    def meta() -> dict[str, tuple[int, int]]:
        hits = client.plugins.ml.search_model_group(body={"size": 100})["hits"]["hits"]
        return {h["_source"]["name"]: (h["_seq_no"], h["_version"]) for h in hits}

    before = meta()
    assert sorted(seq for seq, _ in before.values()) == list(range(len(GROUPS)))  # registered one after the other
    client.plugins.ml.update_model_group(model_group_id=ids["alpha-embed"], body={"description": "updated"})
    after = meta()
    assert after["alpha-embed"] == (len(GROUPS), 2)
    assert {n: v for n, v in after.items() if n != "alpha-embed"} == {
        n: v for n, v in before.items() if n != "alpha-embed"
    }
    client.plugins.ml.update_model_group(model_group_id=ids["alpha-embed"], body={"description": GROUPS["alpha-embed"]})
