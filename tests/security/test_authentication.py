"""Authentication on both nodes, as ``neuralpipe serve --users-file`` / ``--auth-opensearch`` runs them: the real
``NodeServer`` on loopback, the real opensearch-py client.

No OpenSearch security plugin can run here, so delegation is tested against one of our own data nodes authenticating
from a users file: it serves ``_plugins/_security/authinfo`` in the plugin's shape, and the ML node asks it exactly as
it would ask a cluster.
"""

from __future__ import annotations

import base64
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from opensearchpy import OpenSearch
from opensearchpy.exceptions import AuthenticationException, AuthorizationException

from neuralpipe.local import embedded_node, ml_settings
from neuralpipe.node import NodeSpec, layout
from neuralpipe.security import SecurityOptions
from opensearch_contract.security import User
from tests.security.nodes import API_KEY, BACKEND_ROLES, PASSWORDS, ServedNode, write_users_file

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def users_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_users_file(tmp_path_factory.mktemp("users") / "users.yml")


def _node(root: Path, roles: tuple[str, ...], security: SecurityOptions) -> ServedNode:
    settings = ml_settings(layout(root)[0]) if "ml" in roles else None
    return ServedNode(NodeSpec(roles, root, settings, security=security)).start()


@pytest.fixture(scope="module")
def data_node(tmp_path_factory: pytest.TempPathFactory, users_file: Path) -> Iterator[ServedNode]:
    node = _node(tmp_path_factory.mktemp("data"), ("data",), SecurityOptions(users_file=users_file))
    yield node
    node.stop()


@pytest.fixture(scope="module")
def ml_node(tmp_path_factory: pytest.TempPathFactory, users_file: Path) -> Iterator[ServedNode]:
    node = _node(tmp_path_factory.mktemp("ml"), ("ml",), SecurityOptions(users_file=users_file))
    yield node
    node.stop()


def _raw_get(url: str, authorization: str | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers={"Authorization": authorization} if authorization else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize("which", ["data_node", "ml_node"])
def test_no_credentials_is_the_security_plugins_401(which: str, request: pytest.FixtureRequest) -> None:
    node: ServedNode = request.getfixturevalue(which)
    for path in ("/", "/_plugins/_ml/models/_search", "/_search"):
        status, headers, body = _raw_get(node.url + path)
        assert (status, body) == (401, b"Unauthorized"), path
        assert headers["WWW-Authenticate"] == 'Basic realm="OpenSearch Security"'
    with pytest.raises(AuthenticationException) as info:
        OpenSearch(hosts=[node.url]).info()
    assert info.value.status_code == 401


@pytest.mark.parametrize("which", ["data_node", "ml_node"])
def test_basic_auth_and_api_key_let_in_and_a_wrong_password_does_not(which: str, request: pytest.FixtureRequest
                                                                      ) -> None:
    node: ServedNode = request.getfixturevalue(which)
    alice = OpenSearch(hosts=[node.url], http_auth=("alice", PASSWORDS["alice"]))
    assert "version" in alice.info()
    job = OpenSearch(hosts=[node.url], headers={"Authorization": f"ApiKey {API_KEY}"})
    assert "version" in job.info()
    for auth in (("alice", "wrong-password"), ("mallory", PASSWORDS["alice"])):
        with pytest.raises(AuthenticationException):
            OpenSearch(hosts=[node.url], http_auth=auth).info()
    with pytest.raises(AuthenticationException):
        OpenSearch(hosts=[node.url], headers={"Authorization": "ApiKey not-the-key"}).info()
    # the node says who the caller is, in the security plugin's authinfo shape
    info = alice.transport.perform_request("GET", "/_plugins/_security/authinfo")
    assert (info["user_name"], info["backend_roles"]) == ("alice", BACKEND_ROLES["alice"])
    assert info["user"] == "User [name=alice, backend_roles=[team-a], requestedTenant=null]"
    assert job.transport.perform_request("GET", "/_plugins/_security/authinfo")["backend_roles"] == ["team-b"]


def test_data_node_writes_need_credentials_and_keep_working_with_them(data_node: ServedNode) -> None:
    alice = OpenSearch(hosts=[data_node.url], http_auth=("alice", PASSWORDS["alice"]))
    with pytest.raises(AuthenticationException):
        OpenSearch(hosts=[data_node.url]).index(index="notes", id="1", body={"text": "anonymous"})
    alice.index(index="notes", id="1", body={"text": "written by alice"}, refresh=True)
    assert alice.get(index="notes", id="1")["_source"] == {"text": "written by alice"}
    assert alice.count(index="notes")["count"] == 1


def test_only_an_admin_changes_cluster_settings(ml_node: ServedNode) -> None:
    body = {"persistent": {"plugins.ml_commons.model_access_control_enabled": False}}
    with pytest.raises(AuthorizationException) as info:
        OpenSearch(hosts=[ml_node.url], http_auth=("alice", PASSWORDS["alice"])).cluster.put_settings(body=body)
    error = info.value.info["error"]
    assert error["type"] == "security_exception"
    assert error["reason"] == ("no permissions for [cluster:admin/settings/update] and "
                               "User [name=alice, backend_roles=[team-a], requestedTenant=null]")
    admin = OpenSearch(hosts=[ml_node.url], http_auth=("admin", PASSWORDS["admin"]))
    assert admin.cluster.put_settings(body=body)["acknowledged"] is True


def test_health_answers_without_credentials_for_liveness_probes(ml_node: ServedNode) -> None:
    status, _, body = _raw_get(ml_node.url + "/health")
    assert status == 200 and b'"status":' in body


def test_ml_node_delegates_to_the_cluster_caches_and_passes_backend_roles(tmp_path: Path, data_node: ServedNode
                                                                         ) -> None:
    root = tmp_path / "ml"
    settings = ml_settings(layout(root)[0])
    settings.ml_commons["model_access_control_enabled"] = True
    node = ServedNode(NodeSpec(("ml",), root, settings, security=SecurityOptions(auth_opensearch=data_node.url))
                      ).start()
    try:
        authenticator = node.server.guard.authenticator
        carol = OpenSearch(hosts=[node.url], http_auth=("carol", PASSWORDS["carol"]))
        for _ in range(5):
            assert "version" in carol.info()
        assert authenticator.calls == 1  # one authinfo call for five requests with the same credentials
        # the backend roles the cluster knows drive model access control on the ML node
        group = carol.plugins.ml.register_model_group(body={"name": "carols", "add_all_backend_roles": True})
        doc = carol.plugins.ml.get_model_group(model_group_id=group["model_group_id"])
        assert (doc["access"], doc["backend_roles"], doc["owner"]["name"]) == ("restricted", ["team-a", "team-c"],
                                                                               "carol")
        assert authenticator.calls == 1
        bad = OpenSearch(hosts=[node.url], http_auth=("carol", "not-her-password"))
        for _ in range(3):
            with pytest.raises(AuthenticationException):
                bad.info()
        assert authenticator.calls == 2  # a refusal is cached too (briefly)
        status, headers, _ = _raw_get(node.url + "/", _basic("carol", "not-her-password"))
        assert status == 401 and headers["WWW-Authenticate"] == 'Basic realm="OpenSearch Security"'
        alice = OpenSearch(hosts=[node.url], http_auth=("alice", PASSWORDS["alice"]))
        assert alice.plugins.ml.get_model_group(model_group_id=group["model_group_id"])["name"] == "carols"
        assert authenticator.calls == 3
    finally:
        node.stop()


def test_an_embedded_node_can_require_an_api_key(tmp_path: Path) -> None:
    key = "embedded-0123456789abcdef0123456789abcdef"
    server = embedded_node(tmp_path, ("data",),
                           security=SecurityOptions(api_keys=((key, User("embedding-app", ("apps",))),)))
    node = ServedNode(server.spec).start()
    try:
        with pytest.raises(AuthenticationException):
            OpenSearch(hosts=[node.url]).info()
        app = OpenSearch(hosts=[node.url], headers={"Authorization": f"ApiKey {key}"})
        assert app.transport.perform_request("GET", "/_plugins/_security/authinfo")["user_name"] == "embedding-app"
    finally:
        node.stop()


def test_a_cluster_that_cannot_be_reached_lets_nobody_in_and_is_asked_again(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nothing listens on: bound, then closed
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    node = ServedNode(NodeSpec(("data",), tmp_path, security=SecurityOptions(auth_opensearch=dead))).start()
    try:
        alice = OpenSearch(hosts=[node.url], http_auth=("alice", PASSWORDS["alice"]))
        for _ in range(2):
            with pytest.raises(AuthenticationException):
                alice.info()
        assert node.server.guard.authenticator.calls == 2  # a failure to ask is not an answer: not cached
    finally:
        node.stop()
