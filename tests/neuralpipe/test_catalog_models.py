"""The shipped pipelines run against models registered by their catalog names, as a new user meets them:
``neuralpipe models register NAME --deploy`` on a fresh data dir; an embedded ``ingest`` that registers and
deploys the catalog models its pipeline names when they are missing (saying so on stderr); every shipped ingest
pipeline against a cluster (``--opensearch``: a data node here) with ``--ml-url`` of an ML node (``neuralpipe
serve --roles ml``) holding the models under their catalog names. Real models, real nodes on loopback."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import pytest

from neuralpipe.cli import main
from tests.fixtures.datanode import DataNodeThread, os_client

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
SHIPPED = resources.files("neuralpipe").joinpath("pipelines/ingest")
DENSE = "huggingface/sentence-transformers/all-MiniLM-L6-v2"
SPARSE = "neuralpipe/splade-tiny"
DOCS = [
    ("cat", "Cats are small pets that purr when they are content and sleep most of the day."),
    ("pasta", "Boil the pasta in salted water for ten minutes, then toss it with tomato sauce."),
    ("volcano", "A volcano erupts when molten rock, ash and gases escape from the magma chamber below."),
    ("ocean", "Ocean tides rise and fall twice a day, pulled by the gravity of the moon."),
]


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("catalog-models")
    (root / "docs.jsonl").write_text("".join(json.dumps({"_id": i, "text": t}) + "\n" for i, t in DOCS))
    return root


@pytest.fixture(scope="module")
def registered(work: Path) -> Path:
    """A fresh data dir where the user registered SPLADE-tiny by its catalog name (MiniLM is left missing)."""
    data_dir = work / "data"
    assert main(["models", "register", SPARSE, "--deploy", "--data-dir", str(data_dir)]) == 0
    return data_dir


def test_models_register_by_catalog_name(registered: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["models", "register", SPARSE, "--data-dir", str(registered)]) == 0
    assert capsys.readouterr().out.startswith(f"{SPARSE}: already registered as ")
    assert main(["models", "register", "neuralpipe/no-such-model", "--data-dir", str(registered)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "[neuralpipe/no-such-model] is not in the offline catalog" in err[0]


def test_embedded_ingest_registers_missing_catalog_models_and_search_finds(
        registered: Path, work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    pipeline = str(SHIPPED.joinpath("dense-sparse.yaml"))
    code = main(["ingest", str(work / "docs.jsonl"), "--index", "docs", "--pipeline", pipeline, "--no-progress",
                 "--data-dir", str(registered), "--state-dir", str(work / "state"), "--json"])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert json.loads(out.out)["indexed"] == len(DOCS)
    assert f"model [{DENSE}] is not registered on the ML node: registering and deploying it" in out.err
    assert f"model [{SPARSE}] is not registered" not in out.err  # the user registered it
    assert main(["search", "--index", "docs", "--hybrid", "an animal that purrs", "--size", "2", "--json",
                 "--data-dir", str(registered)]) == 0
    hits = json.loads(capsys.readouterr().out)["hits"]["hits"]
    assert hits[0]["_id"] == "cat"


def test_the_catalog_minilm_backs_a_semantic_field(registered: Path, work: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """A semantic field takes its knn_vector's space type from the model's additional_config, which OpenSearch's
    pretrained configs carry: MiniLM registered by its catalog name must have it, or the mapping is refused."""
    capsys.readouterr()
    assert main(["models", "register", DENSE, "--deploy", "--data-dir", str(registered)]) == 0
    model_id = capsys.readouterr().out.split(" as ")[1].split()[0]
    body = work / "semantic-index.json"
    body.write_text(json.dumps({"mappings": {"properties": {"text": {"type": "semantic", "model_id": model_id}}}}))
    code = main(["ingest", str(work / "docs.jsonl"), "--index", "semantic-docs", "--index-body", str(body),
                 "--no-progress", "--data-dir", str(registered), "--state-dir", str(work / "state-semantic"),
                 "--json"])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert json.loads(out.out)["indexed"] == len(DOCS)
    query = work / "semantic-query.json"
    query.write_text(json.dumps({"query": {"neural": {"text": {"query_text": "an animal that purrs", "k": 2}}},
                                 "_source": {"excludes": ["text_semantic_info"]}}))
    assert main(["search", "--index", "semantic-docs", "--body", str(query), "--json",
                 "--data-dir", str(registered)]) == 0
    hits = json.loads(capsys.readouterr().out)["hits"]["hits"]
    assert hits[0]["_id"] == "cat"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def ml_serve(registered: Path, work: Path) -> Iterator[str]:
    """``neuralpipe serve --roles ml`` on the data dir whose ML node holds both catalog models by name."""
    assert main(["models", "register", DENSE, "--deploy", "--data-dir", str(registered)]) == 0
    port = _free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "neuralpipe", "serve", "--roles", "ml", "--port", str(port),
                             "--data-dir", str(registered)], cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while True:
        try:
            urllib.request.urlopen(url + "/", timeout=5).close()
            break
        except (urllib.error.URLError, ConnectionError):
            assert proc.poll() is None and time.monotonic() < deadline, "serve --roles ml did not come up"
            time.sleep(0.2)
    try:
        yield url
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(60)


@pytest.mark.parametrize("name", sorted(p.name for p in SHIPPED.iterdir() if p.name.endswith(".yaml")))
def test_every_shipped_ingest_pipeline_against_a_cluster(name: str, ml_serve: str, work: Path,
                                                         tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cluster = DataNodeThread(tmp_path / "cluster").start()
    try:
        index = name.removesuffix(".yaml")
        code = main(["ingest", str(work / "docs.jsonl"), "--index", index, "--pipeline", str(SHIPPED.joinpath(name)),
                     "--opensearch", cluster.url, "--ml-url", ml_serve, "--no-progress",
                     "--state-dir", str(tmp_path / "state")])
        assert code == 0, capsys.readouterr().err
        client = os_client(cluster.url)
        assert client.count(index=index)["count"] == len(DOCS)
        source = client.get(index=index, id="volcano")["_source"]
        assert set(source) > {"text"}  # the pipeline wrote its vectors / token weights beside the text
    finally:
        cluster.stop()
