"""The model store survives restarts: documents, files, cluster settings; unfinished work is cleaned up."""

from __future__ import annotations

import json

import pytest

from mlnode import keys
from mlnode.settings import MLSettings
from mlnode.store import Store, new_id
from opensearch_contract.errors import ParsingError
from tests.fixtures.mlnode import FakeRuntime, api_client, api_fake_model, fake_backends, file_url_test_folders

pytestmark = [pytest.mark.integration]
ML = "/_plugins/_ml"


def _settings(tmp_path):
    return MLSettings.load(
        data_dir=tmp_path / "data", allow_registering_model_via_url=True, native_memory_threshold=100,
        file_url_folders=file_url_test_folders(),
    )


async def test_restart_keeps_everything_and_redeploys(tmp_path):
    async with api_client(_settings(tmp_path), fake_backends(tmp_path)) as client:
        deployed = await api_fake_model(client, tmp_path, name="deployed")
        registered = await api_fake_model(client, tmp_path, name="registered", deploy=False)
        await client.put("/_cluster/settings", json={"persistent": {"plugins.ml_commons.max_model_on_node": 4}})
        await client.put("/_cluster/settings", json={"transient": {"plugins.ml_commons.monitoring_request_count": 7}})
        before = (await (await client.post(f"{ML}/models/_search", json={"size": 10})).json())["hits"]["hits"]
        tasks_before = (await (await client.get(f"{ML}/tasks/_search")).json())["hits"]["total"]["value"]
    runtimes: list[FakeRuntime] = []
    async with api_client(_settings(tmp_path), fake_backends(tmp_path, runtimes)) as client:
        assert client.app[keys.DEPLOYMENTS].ids() == [deployed]  # redeployed before the node answered
        assert len(runtimes) == 1
        after = (await (await client.post(f"{ML}/models/_search", json={"size": 10})).json())["hits"]["hits"]
        assert {h["_id"]: h["_source"]["model_state"] for h in after} == {
            deployed: "DEPLOYED",
            registered: "REGISTERED",
        }
        assert {h["_id"]: h["_source"]["name"] for h in after} == {h["_id"]: h["_source"]["name"] for h in before}
        assert (await (await client.get(f"{ML}/tasks/_search")).json())["hits"]["total"]["value"] == tasks_before
        settings = await (await client.get("/_cluster/settings?flat_settings=true")).json()
        assert settings["persistent"] == {"plugins.ml_commons.max_model_on_node": "4"}
        assert settings["transient"] == {}  # transient settings do not survive a restart, as on a cluster
        assert client.app[keys.SETTINGS].get("max_model_on_node") == 4
        resp = await client.post(f"{ML}/_predict/text_embedding/{deployed}", json={"text_docs": ["after restart"]})
        assert resp.status == 200


async def test_restart_fails_unfinished_tasks_and_drops_half_registered_models(tmp_path):
    data = tmp_path / "data"
    store = Store(data)
    store.load()
    await store.put("models", "half", {"name": "half", "model_state": "REGISTERING", "model_format": "ONNX"})
    await store.put(
        "models", "chunks", {"name": "chunks", "model_state": "REGISTERING", "model_format": "ONNX", "total_chunks": 3}
    )
    await store.put("tasks", "t1", {"task_type": "REGISTER_MODEL", "state": "RUNNING", "model_id": "half"})
    (store.model_dir("half")).mkdir(parents=True)
    (store.tmp_dir / "leftover").mkdir()
    async with api_client(_settings(tmp_path), fake_backends(tmp_path)) as client:
        await _error_404(client, "half")
        chunked = await (await client.get(f"{ML}/models/chunks")).json()
        assert chunked["model_state"] == "REGISTERING"  # a chunked upload can be resumed
        task = await (await client.get(f"{ML}/tasks/t1")).json()
        assert task["state"] == "FAILED" and "restarted" in task["error"]
    assert not (data / "models" / "half").exists()
    assert list((data / "tmp").iterdir()) == []


async def _error_404(client, model_id):
    resp = await client.get(f"{ML}/models/{model_id}")
    assert resp.status == 404


async def test_failed_redeploy_marks_deploy_failed(tmp_path):
    async with api_client(_settings(tmp_path), fake_backends(tmp_path)) as client:
        model_id = await api_fake_model(client, tmp_path)
    backends = fake_backends(tmp_path)

    def broken(model_dir, doc):
        raise ValueError("weights unreadable")

    backends.load_runtime = broken
    async with api_client(_settings(tmp_path), backends) as client:
        doc = await (await client.get(f"{ML}/models/{model_id}")).json()
        assert doc["model_state"] == "DEPLOY_FAILED"


async def test_documents_are_whole_json_files(tmp_path):
    store = Store(tmp_path)
    store.load()
    await store.put("model_groups", "g", {"name": "g", "latest_version": 0})
    await store.update("model_groups", "g", latest_version=2)
    files = list((tmp_path / "meta" / "model_groups").iterdir())
    assert [f.name for f in files] == ["g.json"]  # no temp files left behind
    assert json.loads(files[0].read_text()) == {"name": "g", "latest_version": 2}
    assert store.version("model_groups", "g") == 2
    assert await store.delete("model_groups", "g") and not await store.delete("model_groups", "g")


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"match_all": {}}, ["a", "b", "c"]),
        ({"term": {"model_state": "DEPLOYED"}}, ["a"]),
        ({"term": {"name.keyword": {"value": "bert-small"}}}, ["b"]),
        ({"terms": {"_id": ["a", "c"]}}, ["a", "c"]),
        ({"match": {"name": "minilm"}}, ["a"]),
        (
            {
                "bool": {
                    "must": [{"term": {"algorithm": "TEXT_EMBEDDING"}}],
                    "must_not": [{"term": {"model_state": "DEPLOYED"}}],
                }
            },
            ["b"],
        ),
        (
            {"bool": {"should": [{"term": {"model_state": "DEPLOYED"}}, {"term": {"algorithm": "SPARSE_ENCODING"}}]}},
            ["a", "c"],
        ),
        ({"exists": {"field": "model_config.embedding_dimension"}}, ["a", "b"]),
        ({"range": {"created_time": {"gte": 2}}}, ["b", "c"]),
        ({"ids": {"values": ["b"]}}, ["b"]),
    ],
)
async def test_search_query_subset(tmp_path, query, expected):
    store = Store(tmp_path)
    store.load()
    await store.put(
        "models",
        "a",
        {
            "name": "all-MiniLM-L6-v2",
            "algorithm": "TEXT_EMBEDDING",
            "model_state": "DEPLOYED",
            "created_time": 1,
            "model_config": {"embedding_dimension": 384},
        },
    )
    await store.put(
        "models",
        "b",
        {
            "name": "bert-small",
            "algorithm": "TEXT_EMBEDDING",
            "model_state": "REGISTERED",
            "created_time": 2,
            "model_config": {"embedding_dimension": 768},
        },
    )
    await store.put(
        "models",
        "c",
        {"name": "splade", "algorithm": "SPARSE_ENCODING", "model_state": "REGISTERED", "created_time": 3},
    )
    result = store.search("models", {"query": query, "sort": [{"created_time": {"order": "asc"}}]})
    assert [h["_id"] for h in result["hits"]["hits"]] == expected
    assert result["hits"]["total"] == {"value": len(expected), "relation": "eq"}
    assert all(h["_index"] == ".plugins-ml-model" for h in result["hits"]["hits"])


async def test_search_paging_source_filter_and_bad_queries(tmp_path):
    store = Store(tmp_path)
    store.load()
    for i in range(5):
        await store.put("tasks", f"t{i}", {"state": "COMPLETED", "create_time": i, "task_type": "DEPLOY_MODEL"})
    page = store.search("tasks", {"from": 1, "size": 2, "sort": [{"create_time": "desc"}], "_source": ["state"]})
    assert [h["_id"] for h in page["hits"]["hits"]] == ["t3", "t2"]
    assert page["hits"]["hits"][0]["_source"] == {"state": "COMPLETED"} and page["hits"]["total"]["value"] == 5
    with pytest.raises(ParsingError, match=r"unknown query \[fuzzy\]"):
        store.search("tasks", {"query": {"fuzzy": {"state": "x"}}})


@pytest.mark.unit
def test_new_ids_never_start_with_a_dash() -> None:
    ids = [new_id() for _ in range(5000)]
    assert all(len(i) == 20 and not i.startswith("-") for i in ids)
    assert len(set(ids)) == len(ids)
