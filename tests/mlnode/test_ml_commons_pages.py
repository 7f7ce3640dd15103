"""Requests from OpenSearch's ML Commons pages sent verbatim through opensearch-py, answers compared field by field with
the pages' examples or ML Commons' source (issue 18). The node serves fake runtimes: nothing here runs inference."""

from __future__ import annotations

import pytest
from opensearchpy import OpenSearch
from opensearchpy.exceptions import RequestError

from mlnode.settings import MLSettings
from tests.fixtures.mlnode import NodeThread, fake_backends

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
            "ml_commons": {"only_run_on_ml_node": "false", "model_access_control_enabled": "true", "native_memory_threshold": "99"}
        }
    }
}
# both pages, "Step 1: Register a model group"
GROUP_BODY = {"name": "local_model_group", "description": "A model group for local models"}


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    root = tmp_path_factory.mktemp("pages")
    node = NodeThread(MLSettings.load(data_dir=root / "data"), backends=fake_backends(root)).start()
    client = OpenSearch(hosts=[node.url], timeout=60)
    yield client
    client.close()
    node.stop()


def _error(call, *args, **kwargs) -> dict:
    with pytest.raises(RequestError) as err:
        call(*args, **kwargs)
    assert err.value.status_code == 400
    return err.value.info


# ---- _cluster/settings ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("body", [CUSTOM_PAGE_SETTINGS, PRETRAINED_PAGE_SETTINGS], ids=["custom-page", "pretrained-page"])
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


# ---- model groups with access control off -----------------------------------------------------------------------------


def test_model_group_from_the_pages(client):
    created = client.plugins.ml.register_model_group(body=GROUP_BODY)
    assert sorted(created) == ["model_group_id", "status"] and created["status"] == "CREATED"
    group = client.plugins.ml.get_model_group(model_group_id=created["model_group_id"])
    assert (group["name"], group["description"], group["access"]) == (GROUP_BODY["name"], GROUP_BODY["description"], "public")
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
