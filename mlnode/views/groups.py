"""Model groups: POST _register, GET {id}, GET|POST _search, DELETE {id} (only when empty)."""

from __future__ import annotations

from aiohttp import web

from mlnode import keys
from mlnode.errors import Conflict, IllegalArgument, NotFound
from mlnode.store import new_id, now_ms
from mlnode.views.common import json_response, read_json, search_handler

ACCESS_MODES = ("public", "private", "restricted")


async def create_group(request: web.Request, name: str, description: str | None = None, access: str = "public") -> str:
    store = request.app[keys.STORE]
    for group_id, group in store.all("model_groups"):
        if group.get("name") == name:
            raise IllegalArgument(f"The name you provided is already being used by a model group with ID: {group_id}.")
    group_id = new_id()
    now = now_ms()
    doc = {"name": name, "latest_version": 0, "access": access, "created_time": now, "last_updated_time": now}
    if description is not None:
        doc["description"] = description
    await store.put("model_groups", group_id, doc)
    return group_id


async def register(request: web.Request) -> web.Response:
    body = await read_json(request)
    name = body.get("name")
    if not isinstance(name, str) or not name.strip():
        raise IllegalArgument(
            "Validation Failed: 1: Model group name is required and cannot be null or blank;",
            error_type="action_request_validation_exception",
        )
    access = body.get("access_mode", "public")
    if access not in ACCESS_MODES:
        raise IllegalArgument(f"Invalid access mode [{access}]; valid: {', '.join(ACCESS_MODES)}")
    description = body.get("description")
    group_id = await create_group(request, name.strip(), description if isinstance(description, str) else None, access)
    return json_response({"model_group_id": group_id, "status": "CREATED"})


async def get(request: web.Request) -> web.Response:
    group_id = request.match_info["model_group_id"]
    doc = request.app[keys.STORE].get("model_groups", group_id)
    if doc is None:
        raise NotFound(f"Failed to find model group with the provided model group id: {group_id}")
    return json_response(doc)


search = search_handler("model_groups")


async def delete(request: web.Request) -> web.Response:
    store = request.app[keys.STORE]
    group_id = request.match_info["model_group_id"]
    if store.get("model_groups", group_id) is None:
        raise NotFound("Failed to find model group")
    if any(doc.get("model_group_id") == group_id for _, doc in store.all("models")):
        raise Conflict("Cannot delete the model group when it has associated model versions")
    await store.delete("model_groups", group_id)
    return json_response(store.index_response("model_groups", group_id, "deleted"))


async def update(request: web.Request) -> web.Response:
    store = request.app[keys.STORE]
    group_id = request.match_info["model_group_id"]
    if store.get("model_groups", group_id) is None:
        raise NotFound("Failed to find model group")
    body = await read_json(request)
    changes: dict = {}
    if "name" in body:
        name = body["name"]
        if not isinstance(name, str) or not name.strip():
            raise IllegalArgument("Validation Failed: 1: Model group name is required and cannot be null or blank;",
                                  error_type="action_request_validation_exception")
        for other_id, group in store.all("model_groups"):
            if other_id != group_id and group.get("name") == name.strip():
                raise IllegalArgument(
                    f"The name you provided is already being used by another model with ID: {other_id}. Please provide a different name"
                )
        changes["name"] = name.strip()
    if "description" in body:
        changes["description"] = body["description"]
    if "access_mode" in body:
        if body["access_mode"] not in ACCESS_MODES:
            raise IllegalArgument(f"Invalid access mode [{body['access_mode']}]; valid: {', '.join(ACCESS_MODES)}")
        changes["access"] = body["access_mode"]
    await store.update("model_groups", group_id, **changes, last_updated_time=now_ms())
    return json_response({"status": "Updated"})
