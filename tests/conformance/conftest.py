"""Session-wide servers of the conformance suite, all real and on loopback:

- ``conformance_ml``: one ML node with the offline models registered as a user registers them, through ML Commons'
  REST API: all-MiniLM-L6-v2 and SPLADE-tiny by their catalog names, and the IDF tokenizer model (not in the
  catalog: its IDF comes from a corpus) from a packaged zip by file:// URL;
- the backends, started on first use: the embedded data node, osmem-server, and a real OpenSearch when
  NEURALPIPE_TEST_OPENSEARCH_URL is set (its indices are deleted at the end);
- ``suite``: the corpus file and the scenario outcomes, computed once per (backend, scenario) so the agreement
  tests compare what the scenario tests checked.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from typing import Any

import pytest
from opensearchpy import OpenSearch
from osmem_server import OsmemServer

from mlnode.settings import MLSettings
from tests.conformance.harness import KNN, Backend, ConformanceML, Suite, real_cluster_from_env, write_corpus
from tests.fixtures.datanode import DataNodeThread
from tests.fixtures.mlnode import (
    MINILM_NAME,
    MINILM_VERSION,
    NodeThread,
    catalog_cache_dir,
    deploy,
    file_url_test_folders,
    register_file_model,
    wait_task,
)

SPLADE_NAME = "neuralpipe/splade-tiny"  # the catalog name (configs/catalog.yaml)
TOKENIZER_NAME = "neuralpipe/splade-tiny-tokenizer"


@pytest.fixture(scope="session")
def conformance_ml(tmp_path_factory: pytest.TempPathFactory, model_zips: Any) -> Iterator[ConformanceML]:
    data_dir = tmp_path_factory.mktemp("conformance-ml")
    settings = MLSettings.load(data_dir=data_dir, cache_dir=str(catalog_cache_dir()),
                               allow_registering_model_via_url=True, file_url_folders=file_url_test_folders(),
                               native_memory_threshold=100)  # a busy shared machine must not refuse the deploys
    node = NodeThread(settings).start()
    client = OpenSearch(hosts=[node.url], timeout=600)
    try:
        ids = {}
        for key, name, version in (("dense", MINILM_NAME, MINILM_VERSION), ("sparse", SPLADE_NAME, "1.0.0")):
            body = {"name": name, "version": version, "model_format": "TORCH_SCRIPT"}
            task = wait_task(client, client.plugins.ml.register_model(body=body)["task_id"], timeout=900)
            assert task["state"] == "COMPLETED", f"registering {name} by its catalog name: {task}"
            ids[key] = task["model_id"]
        assert model_zips["tokenizer"].config["name"] == TOKENIZER_NAME
        ids["tokenizer"] = register_file_model(client, model_zips["tokenizer"])
        for model_id in ids.values():
            deploy(client, model_id)
        yield ConformanceML(url=node.url, model_ids=ids)
    finally:
        client.close()
        node.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


# ---- backends --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def backend_embedded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    node = DataNodeThread(tmp_path_factory.mktemp("conformance-datanode")).start()
    try:
        yield Backend("embedded", node.url)
    finally:
        node.stop()


@pytest.fixture(scope="session")
def backend_osmem() -> Iterator[Backend]:
    server = OsmemServer.start()
    try:
        yield Backend("osmem", server.url, unsupported={
            KNN: "osmem-server has no k-NN plugin (it answers a knn query with unsupported_operation_exception)"})
    finally:
        server.close()


@pytest.fixture(scope="session")
def backend_opensearch() -> Iterator[Backend]:
    backend = real_cluster_from_env()
    assert backend is not None  # the test parameter is skipped without the variable
    yield backend
    with backend.client() as client:  # by name: a cluster may refuse wildcard deletes (destructive_requires_name)
        for index in client.indices.get(index=backend.prefix + "*"):
            client.indices.delete(index=index)


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> Backend:
    return request.getfixturevalue(f"backend_{request.param}")


@pytest.fixture(scope="session")
def suite(conformance_ml: ConformanceML, tmp_path_factory: pytest.TempPathFactory) -> Suite:
    tmp = tmp_path_factory.mktemp("conformance")
    return Suite(ml=conformance_ml, tmp=tmp, corpus=write_corpus(tmp / "corpus.jsonl"))
