"""The pretrained catalog: offline names packaged once, OpenSearch's artifact layout over loopback HTTP,
unknown names listing what is servable."""

from __future__ import annotations

import json
import shutil
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import mlnode.catalog
from mlnode.catalog import Catalog, CatalogError, UnknownPretrainedModel
from mlnode.offline import splade_dir
from mlnode.packaging import sha256_file
from mlnode.settings import MLSettings
from tests.mlnode.artifacts_site import ArtifactServer

MINILM = "huggingface/sentence-transformers/all-MiniLM-L6-v2"


# The page's artifact links, verbatim: the 2.11 edition's sparse uploads break ML Commons' zip name pattern.
PAGE_LINKS = [
    "amazon/neural-sparse/opensearch-neural-sparse-encoding-v1/1.0.0/torch_script/"
    "opensearch-neural-sparse-encoding-v1-1.0.0-torch_script.zip",
    "amazon/neural-sparse/opensearch-neural-sparse-encoding-doc-v1/1.0.0/torch_script/"
    "opensearch-neural-sparse-encoding-doc-v1-1.0.0-torch_script.zip",
    "amazon/neural-sparse/opensearch-neural-sparse-tokenizer-v1/1.0.0/torch_script/"
    "opensearch-neural-sparse-tokenizer-v1-1.0.0.zip",
    "amazon/neural-sparse/opensearch-neural-sparse-tokenizer-v1/1.0.1/torch_script/"
    "neural-sparse_opensearch-neural-sparse-tokenizer-v1-1.0.1-torch_script.zip",
    "amazon/neural-sparse/opensearch-neural-sparse-encoding-doc-v3-gte/1.0.0/torch_script/"
    "neural-sparse_opensearch-neural-sparse-encoding-doc-v3-gte-1.0.0-torch_script.zip",
    "huggingface/sentence-transformers/msmarco-distilbert-base-tas-b/1.0.3/onnx/"
    "sentence-transformers_msmarco-distilbert-base-tas-b-1.0.3-onnx.zip",
    "huggingface/cross-encoders/ms-marco-MiniLM-L-12-v2/1.0.2/torch_script/"
    "cross-encoders_ms-marco-MiniLM-L-12-v2-1.0.2-torch_script.zip",
]
PAGE = "https://artifacts.opensearch.org/models/ml-models/"


@pytest.mark.unit
def test_default_catalog_knows_every_name_the_page_lists():
    catalog = Catalog.load()
    names = catalog.names()
    assert len(names) == 25
    assert sum(1 for n in names if n.startswith("huggingface/sentence-transformers/")) == 11
    assert sum(1 for n in names if n.startswith("amazon/neural-sparse/")) == 10
    assert sum(1 for n in names if n.startswith("huggingface/cross-encoders/")) == 2
    tas_b = catalog.entries["huggingface/sentence-transformers/msmarco-distilbert-base-tas-b"]
    assert tas_b.versions == ("1.0.1", "1.0.2", "1.0.3") and tas_b.model_formats == ("TORCH_SCRIPT", "ONNX")
    assert catalog.entries["huggingface/sentence-transformers/distiluse-base-multilingual-cased-v1"].model_formats == (
        "TORCH_SCRIPT",
    )
    tokenizer = catalog.entries["amazon/neural-sparse/opensearch-neural-sparse-tokenizer-v1"]
    assert tokenizer.function_name == "SPARSE_TOKENIZE" and tokenizer.versions == ("1.0.0", "1.0.1")
    assert catalog.entries[MINILM].source == {"offline": "all-MiniLM-L6-v2", "artifacts": True}  # offline first


@pytest.mark.unit
@pytest.mark.parametrize("link", PAGE_LINKS)
def test_artifact_urls_are_the_pages_links(link):
    parts = link.split("/")
    name, version, fmt = "/".join(parts[:-3]), parts[-3], parts[-2]
    config_url, zip_url = Catalog.load().artifact_urls(name, version, fmt.upper())
    assert zip_url == PAGE + link
    assert config_url == PAGE + link.rsplit("/", 1)[0] + "/config.json"


@pytest.mark.unit
@pytest.mark.parametrize(
    ("name", "version", "fmt"),
    [
        ("amazon/neural-sparse/opensearch-neural-sparse-encoding-doc-v9", "1.0.0", "TORCH_SCRIPT"),
        (MINILM, "9.9.9", "TORCH_SCRIPT"),
        ("neuralpipe/all-MiniLM-L6-v2-int8", "1.0.0", "TORCH_SCRIPT"),
        ("huggingface/sentence-transformers/distiluse-base-multilingual-cased-v1", "1.0.2", "ONNX"),
    ],
)
def test_unknown_model_lists_servable_names(tmp_path, name, version, fmt):
    with pytest.raises(UnknownPretrainedModel) as info:
        Catalog.load().resolve(name, version, fmt, tmp_path)
    message = str(info.value)
    assert message.startswith("This model is not in the pre-trained model list, please check your parameters.")
    assert f"[{name}] version [{version}] model_format [{fmt}]" in message
    assert f"{MINILM} (versions 1.0.1, 1.0.2; formats TORCH_SCRIPT, ONNX)" in message
    assert info.value.names == Catalog.load().names()
    assert not any(tmp_path.iterdir())


@pytest.mark.unit
def test_artifacts_base_may_be_a_folder_or_a_file_url(tmp_path):
    from_folder = Catalog.load(artifact_base_url=str(tmp_path / "mirror"))
    from_url = Catalog.load(artifact_base_url=(tmp_path / "mirror").as_uri() + "/")
    assert from_folder.artifact_base_url == from_url.artifact_base_url == (tmp_path / "mirror").as_uri()


@pytest.mark.unit
def test_an_ml_node_catalog_downloads_from_its_settings(tmp_path):
    settings = MLSettings.load(data_dir=tmp_path, artifacts_base_url=str(tmp_path / "mirror"), max_zip_bytes=1000)
    catalog = Catalog.for_settings(settings)
    assert (catalog.artifact_base_url, catalog.max_zip_bytes) == ((tmp_path / "mirror").as_uri(), 1000)
    default = Catalog.for_settings(MLSettings.load(data_dir=tmp_path))
    assert default.artifact_base_url == "https://artifacts.opensearch.org/models/ml-models"
    assert default.max_zip_bytes == 4 * 1024**3


@pytest.mark.integration
def test_offline_model_is_packaged_once_and_cached(tmp_path):
    catalog = Catalog.load()
    first = catalog.resolve("neuralpipe/splade-tiny", "1.0.0", "TORCH_SCRIPT", tmp_path)
    assert first.zip_path.parent.parent == tmp_path / "neuralpipe/splade-tiny/1.0.0/torch_script"
    assert first.zip_path.name == "splade-tiny-1.0.0-torch_script.zip"
    assert first.config["function_name"] == "SPARSE_ENCODING"
    assert first.config["model_content_hash_value"] == sha256_file(first.zip_path)
    stamp = first.zip_path.stat().st_mtime_ns
    again = Catalog.load().resolve("neuralpipe/splade-tiny", "1.0.0", "torch_script", tmp_path)
    assert again.zip_path == first.zip_path and again.zip_path.stat().st_mtime_ns == stamp
    assert again.config == first.config


@pytest.mark.integration
def test_zip_packaged_by_other_packaging_code_is_not_reused(tmp_path, monkeypatch):
    first = Catalog.load().resolve("neuralpipe/splade-tiny", "1.0.0", "ONNX", tmp_path)
    monkeypatch.setattr(mlnode.catalog, "packaging_code_hash", lambda: "0" * 64)  # as if mlnode/packaging changed
    other = Catalog.load().resolve("neuralpipe/splade-tiny", "1.0.0", "ONNX", tmp_path)
    assert other.zip_path.parent != first.zip_path.parent and other.zip_path.is_file()  # packaged again
    assert first.zip_path.is_file()  # what the old code packaged stays for whoever still runs it
    monkeypatch.undo()
    assert Catalog.load().resolve("neuralpipe/splade-tiny", "1.0.0", "ONNX", tmp_path).zip_path == first.zip_path


@pytest.mark.integration
@pytest.mark.slow
def test_minilm_pretrained_name_resolves_to_opensearch_layout(tmp_path):
    packaged = Catalog.load().resolve(MINILM, "1.0.2", "ONNX", tmp_path)
    assert packaged.zip_path.name == "sentence-transformers_all-MiniLM-L6-v2-1.0.2-onnx.zip"
    config = json.loads(packaged.config_path.read_text())
    assert config["name"] == MINILM and config["version"] == "1.0.2" and config["model_format"] == "ONNX"
    assert config["model_config"]["embedding_dimension"] == 384
    assert config["model_config"]["model_max_length"] == 256


@pytest.fixture
def artifact_server(tmp_path: Path, model_zips) -> Iterator[ArtifactServer]:
    """OpenSearch's artifact layout on loopback, holding one zip we packaged (the tiny cross-encoder)."""
    model = model_zips["tiny-cross-encoder-onnx"]
    name = "huggingface/cross-encoders/tiny-test-model"
    folder = tmp_path / "site" / "models" / "ml-models" / name / "1.0.1" / "onnx"
    folder.mkdir(parents=True)
    shutil.copy(model.zip_path, folder / "cross-encoders_tiny-test-model-1.0.1-onnx.zip")
    config = {k: v for k, v in model.config.items() if k != "function_name"}  # artifacts carry model_task_type
    (folder / "config.json").write_text(json.dumps({**config, "name": name, "version": "1.0.1"}))
    server = ArtifactServer(tmp_path / "site")
    yield server
    server.close()


def _artifact_catalog(tmp_path: Path, base: str) -> Catalog:
    path = tmp_path / "catalog.yaml"
    path.write_text(
        "models:\n"
        "  - name: huggingface/cross-encoders/tiny-test-model\n"
        "    function_name: TEXT_SIMILARITY\n"
        "    versions: ['1.0.1']\n"
        "    model_formats: [ONNX]\n"
        "    source: {artifacts: true}\n"
    )
    return Catalog.load(path, artifact_base_url=base)


@pytest.mark.integration
def test_artifact_layout_downloads_config_and_zip(tmp_path, artifact_server, model_zips):
    catalog = _artifact_catalog(tmp_path, artifact_server.base)
    packaged = catalog.resolve("huggingface/cross-encoders/tiny-test-model", "1.0.1", "ONNX", tmp_path / "cache")
    prefix = "/models/ml-models/huggingface/cross-encoders/tiny-test-model/1.0.1/onnx/"
    assert packaged.config["function_name"] == "TEXT_SIMILARITY"
    assert packaged.hash == model_zips["tiny-cross-encoder-onnx"].hash == sha256_file(packaged.zip_path)
    assert any(prefix + "config.json" in r for r in artifact_server.requests)
    assert any(prefix + "cross-encoders_tiny-test-model-1.0.1-onnx.zip" in r for r in artifact_server.requests)
    count = len(artifact_server.requests)
    catalog.resolve("huggingface/cross-encoders/tiny-test-model", "1.0.1", "ONNX", tmp_path / "cache")
    assert len(artifact_server.requests) == count  # served from the cache


@pytest.mark.integration
def test_artifact_with_wrong_hash_is_rejected(tmp_path, artifact_server):
    config_path = next((tmp_path / "site").rglob("config.json"))
    config = json.loads(config_path.read_text())
    config_path.write_text(json.dumps({**config, "model_content_hash_value": "0" * 64}))
    catalog = _artifact_catalog(tmp_path, artifact_server.base)
    with pytest.raises(CatalogError, match="model content changed"):
        catalog.resolve("huggingface/cross-encoders/tiny-test-model", "1.0.1", "ONNX", tmp_path / "cache")
    assert not list((tmp_path / "cache").rglob("*.zip"))


@pytest.mark.unit
def test_bad_catalog_file_names_the_entry(tmp_path):
    path = tmp_path / "catalog.yaml"
    path.write_text(
        "models:\n  - name: x/y\n    versions: ['1']\n    model_formats: [PYTORCH]\n"
        "    source: {offline: splade-tiny}\n"
    )
    with pytest.raises(CatalogError, match=r"\[x/y\].*PYTORCH"):
        Catalog.load(path)


@pytest.mark.integration
def test_local_path_entry_with_packaging_options(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("coffee beans\nsearch engine\n")
    path = tmp_path / "catalog.yaml"
    path.write_text(
        "models:\n"
        "  - name: acme/sparse-tokenizer\n"
        "    function_name: SPARSE_TOKENIZE\n"
        "    versions: ['2.0.0']\n"
        "    model_formats: [TORCH_SCRIPT]\n"
        f"    source: {{path: {splade_dir()}}}\n"
        f"    options: {{idf_corpus: {corpus}, max_length: 64}}\n"
    )
    packaged = Catalog.load(path).resolve("acme/sparse-tokenizer", "2.0.0", "TORCH_SCRIPT", tmp_path / "cache")
    assert packaged.zip_path.name == "sparse-tokenizer-2.0.0-torch_script.zip"
    assert packaged.config["function_name"] == "SPARSE_TOKENIZE"
    with zipfile.ZipFile(packaged.zip_path) as archive:
        assert json.loads(archive.read("tokenizer.json"))["truncation"]["max_length"] == 64
        assert json.loads(archive.read("idf.json"))["coffee"] > 0
