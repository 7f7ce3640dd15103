"""What every request must pass on both nodes, security on or off: a JSON content type for a body and (bound to
loopback) a loopback Host; and TLS with ``--tls-cert`` / ``--tls-key``. The real ``NodeServer`` on loopback."""

from __future__ import annotations

import asyncio
import dataclasses
import http.client
import json
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opensearchpy import OpenSearch
from opensearchpy.exceptions import ConnectionError as OSConnectionError

from mlnode.settings import MLSettings
from neuralpipe.local import ml_settings
from neuralpipe.node import NodeServer, NodeSpec, NodeStartError, layout
from neuralpipe.security import SecurityOptions
from tests.fixtures.mlnode import deploy, file_url_test_folders, register_file_model
from tests.security.nodes import PASSWORDS, ServedNode, make_certs, write_users_file

pytestmark = pytest.mark.integration


def _settings(root: Path) -> MLSettings:
    """The embedded node's ML settings, allowing the packaged test zips' folders for file:// registration."""
    return dataclasses.replace(ml_settings(layout(root)[0]),
                               file_url_folders=tuple(Path(p) for p in file_url_test_folders()))


@pytest.fixture(scope="module")
def open_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedNode]:
    """Both roles, no authentication: what the embedded node and a plain ``neuralpipe serve`` run."""
    root = tmp_path_factory.mktemp("open")
    node = ServedNode(NodeSpec(("ml", "data"), root, ml_settings(layout(root)[0]))).start()
    yield node
    node.stop()


def _send(url: str, method: str, path: str, body: bytes | None, headers: dict[str, str],
          context: ssl.SSLContext | None = None) -> tuple[int, Any]:
    host, port = url.split("://")[1].rsplit(":", 1)
    conn: http.client.HTTPConnection = (http.client.HTTPSConnection(host, int(port), context=context, timeout=30)
                                        if context else http.client.HTTPConnection(host, int(port), timeout=30))
    try:
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        raw = resp.read()
        return resp.status, json.loads(raw) if raw.startswith(b"{") else raw
    finally:
        conn.close()


@pytest.mark.parametrize(("path", "content_type"), [
    ("/_plugins/_ml/model_groups/_register", "text/plain"),
    ("/notes/_doc/1", "application/x-www-form-urlencoded"),
    ("/notes/_doc/1", "multipart/form-data; boundary=x"),
    ("/_bulk", "text/plain;charset=UTF-8"),
])
def test_a_body_that_is_not_json_is_refused_with_406_and_changes_nothing(open_node: ServedNode, path: str,
                                                                         content_type: str) -> None:
    """What a web page can send cross-site without a CORS pre-flight: refused, as OpenSearch refuses it."""
    body = (b'{"index": {"_index": "notes", "_id": "1"}}\n{"text": "x"}\n' if path == "/_bulk"
            else json.dumps({"name": "from-a-web-page", "text": "x"}).encode())
    method = "PUT" if "_doc" in path else "POST"
    status, answer = _send(open_node.url, method, path, body, {"Content-Type": content_type})
    assert (status, answer) == (406, {"error": f"Content-Type header [{content_type}] is not supported",
                                      "status": 406})
    client = OpenSearch(hosts=[open_node.url])
    assert client.plugins.ml.search_model_group(body={"query": {"match_all": {}}})["hits"]["total"]["value"] == 0
    assert not client.indices.exists(index="notes")


def test_a_body_without_content_type_is_refused(open_node: ServedNode) -> None:
    status, answer = _send(open_node.url, "POST", "/_plugins/_ml/model_groups/_register", b'{"name": "g"}', {})
    assert (status, answer) == (406, {"error": "Content-Type header is missing", "status": 406})


def test_json_and_ndjson_bodies_are_accepted(open_node: ServedNode) -> None:
    ndjson = b'{"index": {"_index": "accepted", "_id": "1"}}\n{"text": "kept"}\n'
    status, answer = _send(open_node.url, "POST", "/_bulk?refresh=true", ndjson,
                           {"Content-Type": "application/x-ndjson"})
    assert status == 200 and answer["errors"] is False
    status, answer = _send(open_node.url, "POST", "/accepted/_search", b'{"query": {"match": {"text": "kept"}}}',
                           {"Content-Type": "application/json; charset=UTF-8"})
    assert status == 200 and [h["_id"] for h in answer["hits"]["hits"]] == ["1"]


@pytest.mark.parametrize("host", ["evil.example", "evil.example:9200", "192.168.1.20:9200", "127.0.0.1.nip.io"])
def test_a_foreign_host_header_is_refused_on_a_loopback_node(open_node: ServedNode, host: str) -> None:
    """DNS rebinding: a page at evil.example re-points its name to 127.0.0.1; its requests still say Host:
    evil.example."""
    status, answer = _send(open_node.url, "GET", "/", None, {"Host": host})
    assert status == 400
    assert answer["error"]["type"] == "illegal_argument_exception"
    assert answer["error"]["reason"] == (f"host [{host}] is not allowed on this node; allowed: [127.0.0.1, ::1, "
                                         "localhost] (see --allowed-hosts)")
    status, _ = _send(open_node.url, "PUT", "/rebound", b"{}", {"Host": host, "Content-Type": "application/json"})
    assert status == 400 and not OpenSearch(hosts=[open_node.url]).indices.exists(index="rebound")


@pytest.mark.parametrize("host", ["localhost", "localhost:9200", "127.0.0.1", "[::1]:9200", "LOCALHOST"])
def test_loopback_host_names_are_accepted(open_node: ServedNode, host: str) -> None:
    status, answer = _send(open_node.url, "GET", "/", None, {"Host": host})
    assert status == 200 and "version" in answer


def test_allowed_hosts_adds_names(tmp_path: Path) -> None:
    node = ServedNode(NodeSpec(("data",), tmp_path, security=SecurityOptions(allowed_hosts=("search.internal",)))
                      ).start()
    try:
        assert _send(node.url, "GET", "/", None, {"Host": "search.internal:9200"})[0] == 200
        assert _send(node.url, "GET", "/", None, {"Host": "localhost"})[0] == 200
        assert _send(node.url, "GET", "/", None, {"Host": "other.internal"})[0] == 400
    finally:
        node.stop()


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def tls_node(tmp_path_factory: pytest.TempPathFactory, certs: dict[str, Path]) -> Iterator[ServedNode]:
    """Both roles behind TLS and basic auth."""
    root = tmp_path_factory.mktemp("tls")
    security = SecurityOptions(tls_cert=certs["cert"], tls_key=certs["key"],
                               users_file=write_users_file(root / "users.yml"))
    node = ServedNode(NodeSpec(("ml", "data"), root, _settings(root), security=security)).start()
    yield node
    node.stop()


def test_tls_with_the_real_client_and_a_ca(tls_node: ServedNode, certs: dict[str, Path]) -> None:
    assert tls_node.url.startswith("https://127.0.0.1:")
    client = OpenSearch(hosts=[tls_node.url], use_ssl=True, ca_certs=str(certs["ca"]),
                        http_auth=("alice", PASSWORDS["alice"]))
    client.index(index="secured", id="1", body={"text": "over tls"}, refresh=True)
    assert client.get(index="secured", id="1")["_source"] == {"text": "over tls"}
    # a client that does not trust the CA does not get through
    with pytest.raises(OSConnectionError):
        OpenSearch(hosts=[tls_node.url], use_ssl=True, http_auth=("alice", PASSWORDS["alice"])).info()


def test_plain_http_to_a_tls_port_fails(tls_node: ServedNode) -> None:
    plain = tls_node.url.replace("https://", "http://")
    with pytest.raises((ConnectionError, http.client.HTTPException)):
        _send(plain, "GET", "/", None, {"Authorization": "Basic YWxpY2U6eA=="})
    with pytest.raises(OSConnectionError):
        OpenSearch(hosts=[plain], http_auth=("alice", PASSWORDS["alice"]), max_retries=0).info()


def test_the_data_role_reaches_its_own_ml_role_behind_tls_and_auth(tls_node: ServedNode, certs: dict[str, Path],
                                                                   model_zips: Any) -> None:
    """Server-side pipelines call the node's own ML role (with the node's internal credentials, on loopback)."""
    client = OpenSearch(hosts=[tls_node.url], use_ssl=True, ca_certs=str(certs["ca"]),
                        http_auth=("alice", PASSWORDS["alice"]), timeout=120)
    model_id = register_file_model(client, model_zips["tokenizer"])
    deploy(client, model_id)
    client.ingest.put_pipeline(id="sparse", body={"processors": [
        {"sparse_encoding": {"model_id": model_id, "field_map": {"text": "text_sparse"}}}]})
    client.index(index="encoded", id="1", body={"text": "neural search"}, pipeline="sparse", refresh=True)
    assert set(client.get(index="encoded", id="1")["_source"]["text_sparse"]) == {"neural", "search"}


def test_tls_options_are_checked_before_the_node_starts(tmp_path: Path, certs: dict[str, Path]) -> None:
    with pytest.raises(ValueError, match="--tls-cert and --tls-key go together"):
        SecurityOptions(tls_cert=certs["cert"])
    server = NodeServer(NodeSpec(("data",), tmp_path, security=SecurityOptions(tls_cert=certs["cert"],
                                                                               tls_key=certs["ca"])))
    with pytest.raises(NodeStartError, match="cannot load --tls-cert"):
        asyncio.run(server.start())
