"""ML Commons' model-group access control on an ML node that authenticates its callers (``--users-file``) with
``model_access_control_enabled`` on: public, private and restricted groups, with ML Commons' messages.

The users (tests/security/nodes.py): alice [team-a], bob [team-b], carol [team-a, team-c], admin (all_access).
The model is the real SPARSE_TOKENIZE model (tokenizer + IDF) packaged by the test fixtures.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opensearchpy import OpenSearch
from opensearchpy.exceptions import AuthorizationException, RequestError

from neuralpipe.local import ml_settings
from neuralpipe.node import NodeSpec, layout
from neuralpipe.security import SecurityOptions
from tests.fixtures.mlnode import deploy, file_url_test_folders, register_file_model
from tests.security.nodes import PASSWORDS, ServedNode, write_users_file

pytestmark = pytest.mark.integration
NO_MODEL_PRIVILEGE = "User doesn't have privilege to perform this operation on this model"


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedNode]:
    root = tmp_path_factory.mktemp("acl")
    users = write_users_file(root / "users.yml")
    settings = dataclasses.replace(ml_settings(layout(root)[0]),
                                   file_url_folders=tuple(Path(p) for p in file_url_test_folders()))
    settings.ml_commons["model_access_control_enabled"] = True
    served = ServedNode(NodeSpec(("ml",), root, settings, security=SecurityOptions(users_file=users))).start()
    yield served
    served.stop()


def client(node: ServedNode, user: str) -> OpenSearch:
    return OpenSearch(hosts=[node.url], http_auth=(user, PASSWORDS[user]), timeout=120)


def _group_names(c: OpenSearch) -> set[str]:
    hits = c.plugins.ml.search_model_group(body={"query": {"match_all": {}}, "size": 100})["hits"]["hits"]
    return {hit["_source"]["name"] for hit in hits}


def _error(exc: Any) -> tuple[int, str, str]:
    return exc.status_code, exc.info["error"]["type"], exc.info["error"]["reason"]


@pytest.fixture(scope="module")
def private_model(node: ServedNode, model_zips: Any) -> tuple[str, str]:
    """alice's private group with the tokenizer model in it, deployed: (group id, model id)."""
    alice = client(node, "alice")
    group = alice.plugins.ml.register_model_group(body={"name": "alice-private", "access_mode": "private"})
    model_id = register_file_model(alice, model_zips["tokenizer"], group["model_group_id"])
    deploy(alice, model_id)
    return group["model_group_id"], model_id


def test_private_group_is_its_owners_only(node: ServedNode, private_model: tuple[str, str]) -> None:
    group_id, model_id = private_model
    alice, bob, admin = client(node, "alice"), client(node, "bob"), client(node, "admin")
    body = {"text_docs": ["neural search"]}
    out = alice.plugins.ml.predict(algorithm_name="sparse_tokenize", model_id=model_id, body=body)
    tokens = out["inference_results"][0]["output"][0]["dataAsMap"]["response"][0]
    assert set(tokens) == {"neural", "search"}
    assert "alice-private" in _group_names(alice) and "alice-private" not in _group_names(bob)
    models = bob.plugins.ml.search_models(body={"query": {"match_all": {}}})["hits"]
    assert models["total"]["value"] == 0 and models["hits"] == []
    with pytest.raises(AuthorizationException) as info:
        bob.plugins.ml.get_model_group(model_group_id=group_id)
    assert _error(info.value) == (403, "status_exception",
                                  "User doesn't have privilege to perform this operation on this model group")
    for call in (lambda: bob.plugins.ml.get_model(model_id=model_id),
                 lambda: bob.plugins.ml.predict(algorithm_name="sparse_tokenize", model_id=model_id, body=body),
                 lambda: bob.plugins.ml.undeploy_model(model_id=model_id),
                 lambda: bob.plugins.ml.delete_model(model_id=model_id)):
        with pytest.raises(AuthorizationException) as info:
            call()
        assert _error(info.value) == (403, "status_exception", NO_MODEL_PRIVILEGE)
    with pytest.raises(RequestError) as info:
        bob.plugins.ml.delete_model_group(model_group_id=group_id)
    assert _error(info.value)[2] == "User doesn't have privilege to delete this model group"
    # nothing bob tried changed anything: alice's model is still deployed and answers
    assert alice.plugins.ml.get_model(model_id=model_id)["model_state"] == "DEPLOYED"
    assert alice.plugins.ml.predict(algorithm_name="sparse_tokenize", model_id=model_id, body=body) == out
    # an admin (all_access) sees and uses everything
    assert "alice-private" in _group_names(admin)
    assert admin.plugins.ml.predict(algorithm_name="sparse_tokenize", model_id=model_id, body=body) == out


def test_registering_into_someone_elses_private_group_is_refused(node: ServedNode, private_model: tuple[str, str],
                                                                 model_zips: Any) -> None:
    group_id, _ = private_model
    bob = client(node, "bob")
    packaged = model_zips["tokenizer"]
    body = {"name": "bobs-copy", "version": "1.0.0", "function_name": "SPARSE_TOKENIZE", "model_format": "TORCH_SCRIPT",
            "model_content_hash_value": packaged.config["model_content_hash_value"],
            "url": Path(packaged.zip_path).resolve().as_uri(), "model_group_id": group_id}
    with pytest.raises(RequestError) as info:
        bob.plugins.ml.register_model(body=body)
    assert _error(info.value) == (400, "illegal_argument_exception",
                                  "You don't have permissions to perform this operation on this model.")
    assert bob.plugins.ml.search_models(body={"query": {"match_all": {}}})["hits"]["total"]["value"] == 0


def test_restricted_group_is_shared_by_backend_role(node: ServedNode) -> None:
    alice, bob, carol = client(node, "alice"), client(node, "bob"), client(node, "carol")
    group = alice.plugins.ml.register_model_group(
        body={"name": "team-a-models", "access_mode": "restricted", "backend_roles": ["team-a"]})
    gid = group["model_group_id"]
    assert carol.plugins.ml.get_model_group(model_group_id=gid)["backend_roles"] == ["team-a"]
    assert "team-a-models" in _group_names(carol) and "team-a-models" not in _group_names(bob)
    with pytest.raises(AuthorizationException):
        bob.plugins.ml.get_model_group(model_group_id=gid)
    # carol shares the role but does not own the group: she may not change who has access
    with pytest.raises(RequestError) as info:
        carol.plugins.ml.update_model_group(model_group_id=gid, body={"access_mode": "public"})
    assert _error(info.value)[2] == "Only owner or admin can update access control data."
    alice.plugins.ml.update_model_group(model_group_id=gid, body={"access_mode": "public"})
    assert bob.plugins.ml.get_model_group(model_group_id=gid)["access"] == "public"


def test_public_group_is_everyones(node: ServedNode) -> None:
    bob = client(node, "bob")
    group = client(node, "alice").plugins.ml.register_model_group(body={"name": "shared", "access_mode": "public"})
    assert bob.plugins.ml.get_model_group(model_group_id=group["model_group_id"])["name"] == "shared"
    assert "shared" in _group_names(bob)


@pytest.mark.parametrize(("user", "body", "reason"), [
    ("alice", {"name": "g1", "access_mode": "private", "backend_roles": ["team-a"]},
     "You can specify backend roles only for a model group with the restricted access mode."),
    ("alice", {"name": "g2", "access_mode": "restricted"},
     "You must specify one or more backend roles or add all backend roles to register a restricted model group."),
    ("alice", {"name": "g3", "backend_roles": ["team-b"]}, "You don't have the backend roles specified."),
    ("alice", {"name": "g4", "backend_roles": ["team-a"], "add_all_backend_roles": True},
     "You cannot specify backend roles and add all backend roles at the same time."),
    ("admin", {"name": "g5", "add_all_backend_roles": True},
     "Admin users cannot add all backend roles to a model group."),
    ("alice", {"name": "g6", "access_mode": "secret"}, "[access_mode] must be one of [public, private, restricted], "
                                                       "got [secret]"),
])
def test_bad_access_parameters_are_ml_commons_400s(node: ServedNode, user: str, body: dict, reason: str) -> None:
    with pytest.raises(RequestError) as info:
        client(node, user).plugins.ml.register_model_group(body=body)
    assert _error(info.value) == (400, "illegal_argument_exception", reason)
    assert body["name"] not in _group_names(client(node, "admin"))


def test_a_group_registered_without_access_mode_is_private_to_its_owner(node: ServedNode) -> None:
    gid = client(node, "carol").plugins.ml.register_model_group(body={"name": "carols-default"})["model_group_id"]
    doc = client(node, "carol").plugins.ml.get_model_group(model_group_id=gid)
    assert (doc["access"], doc["owner"]["name"]) == ("private", "carol")
    with pytest.raises(AuthorizationException):
        client(node, "alice").plugins.ml.get_model_group(model_group_id=gid)


@pytest.fixture(scope="module")
def combined(tmp_path_factory: pytest.TempPathFactory, model_zips: Any) -> Iterator[tuple[ServedNode, str]]:
    """Both roles in one node, access control on; alice's tokenizer model in her private group and an ingest
    pipeline using it."""
    root = tmp_path_factory.mktemp("acl-combined")
    settings = dataclasses.replace(ml_settings(layout(root)[0]),
                                   file_url_folders=tuple(Path(p) for p in file_url_test_folders()))
    settings.ml_commons["model_access_control_enabled"] = True
    security = SecurityOptions(users_file=write_users_file(root / "users.yml"))
    served = ServedNode(NodeSpec(("ml", "data"), root, settings, security=security)).start()
    alice = client(served, "alice")
    group = alice.plugins.ml.register_model_group(body={"name": "alice-private", "access_mode": "private"})
    model_id = register_file_model(alice, model_zips["tokenizer"], group["model_group_id"])
    deploy(alice, model_id)
    alice.ingest.put_pipeline(id="alice-sparse", body={"processors": [
        {"sparse_encoding": {"model_id": model_id, "field_map": {"text": "text_sparse"}}}]})
    yield served, model_id
    served.stop()


def test_a_pipeline_runs_its_model_as_the_caller(combined: tuple[ServedNode, str]) -> None:
    """The data role's predict calls carry the caller's credentials, so a pipeline is no way around a private
    group: alice's ingest is encoded, bob's through the same pipeline is refused and writes nothing."""
    node, _ = combined
    alice, bob = client(node, "alice"), client(node, "bob")
    alice.index(index="notes", id="1", body={"text": "neural search"}, pipeline="alice-sparse", refresh=True)
    assert set(alice.get(index="notes", id="1")["_source"]["text_sparse"]) == {"neural", "search"}
    with pytest.raises(AuthorizationException) as info:
        bob.index(index="notes", id="2", body={"text": "bob was here"}, pipeline="alice-sparse", refresh=True)
    assert NO_MODEL_PRIVILEGE in str(info.value.info)
    assert alice.count(index="notes")["count"] == 1
