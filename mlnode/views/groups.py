"""Model groups: POST _register, GET {id}, GET|POST _search, PUT {id}, DELETE {id} (only when empty).

Access control (``access_mode``, ``backend_roles``, ``add_all_backend_roles``, the owner) is ``mlnode.access``'s: with
the node authenticating its callers and ``model_access_control_enabled`` on, as ML Commons with the security plugin;
otherwise those parameters answer ML Commons' 400 and every group is public.
"""

from __future__ import annotations

from aiohttp import web

from mlnode import access, keys
from mlnode.errors import Conflict, GroupNameTaken, NotFound
from mlnode.store import new_id, now_ms
from mlnode.views.common import json_response, read_json, search_handler
from opensearch_contract.errors import IllegalArgument

NAME_REQUIRED = "Validation Failed: 1: Model group name is required and cannot be null or blank;"


def _valid_name(body: dict) -> str:
    name = body.get("name")
    if not isinstance(name, str) or not name.strip():
        raise IllegalArgument(NAME_REQUIRED, error_type="action_request_validation_exception")
    return name.strip()


def _check_unique_name(request: web.Request, name: str) -> None:
    for group_id, group in request.app[keys.STORE].all("model_groups"):
        if group.get("name") == name:
            raise GroupNameTaken(group_id)


async def create_group(request: web.Request, name: str, description: str | None = None,
                       access_fields: dict | None = None) -> str:
    """A model group as ML Commons writes one: with access control off ``access`` public and no owner; on, the
    caller owns it (private unless ``access_fields`` say otherwise)."""
    _check_unique_name(request, name)
    group_id = new_id()
    now = now_ms()
    fields = access_fields if access_fields is not None else access.new_group_access(request, {})
    doc = {"name": name, "latest_version": 0, **fields, "created_time": now, "last_updated_time": now}
    if description is not None:
        doc["description"] = description
    await request.app[keys.STORE].put("model_groups", group_id, doc)
    return group_id


async def register(request: web.Request) -> web.Response:
    body = await read_json(request)
    name = _valid_name(body)
    _check_unique_name(request, name)  # ML Commons looks the name up before it validates access control
    fields = access.new_group_access(request, body)
    description = body.get("description")
    group_id = await create_group(request, name, description if isinstance(description, str) else None, fields)
    return json_response({"model_group_id": group_id, "status": "CREATED"})


async def get(request: web.Request) -> web.Response:
    group_id = request.match_info["model_group_id"]
    doc = request.app[keys.STORE].get("model_groups", group_id)
    if doc is None:
        raise NotFound(f"Failed to find model group with the provided model group id: {group_id}")
    access.check_group(request, doc)
    return json_response(doc)


search = search_handler("model_groups")


async def delete(request: web.Request) -> web.Response:
    store = request.app[keys.STORE]
    group_id = request.match_info["model_group_id"]
    group = store.get("model_groups", group_id)
    if group is None:
        raise NotFound("Failed to find model group")
    access.check_group_delete(request, group)
    if any(doc.get("model_group_id") == group_id for _, doc in store.all("models")):
        raise Conflict("Cannot delete the model group when it has associated model versions")
    await store.delete("model_groups", group_id)
    return json_response(store.index_response("model_groups", group_id, "deleted"))


async def update(request: web.Request) -> web.Response:
    store = request.app[keys.STORE]
    group_id = request.match_info["model_group_id"]
    group = store.get("model_groups", group_id)
    if group is None:
        raise NotFound("Failed to find model group")
    body = await read_json(request)
    changes: dict = access.group_update_access(request, group, body)
    if "name" in body:
        name = _valid_name(body)
        for other_id, group in store.all("model_groups"):
            if other_id != group_id and group.get("name") == name:
                raise IllegalArgument(
                    f"The name you provided is already being used by another model with ID: {other_id}."
                    " Please provide a different name"
                )
        changes["name"] = name
    if "description" in body:
        changes["description"] = body["description"]
    await store.update("model_groups", group_id, **changes, last_updated_time=now_ms())
    return json_response({"status": "Updated"})
