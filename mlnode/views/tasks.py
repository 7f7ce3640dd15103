"""Tasks: GET {id}, GET|POST _search, DELETE {id}."""

from __future__ import annotations

from aiohttp import web

from mlnode import keys
from mlnode.errors import NotFound
from mlnode.views.common import json_response, search_handler
from opensearch_contract.errors import IllegalArgument


async def get(request: web.Request) -> web.Response:
    task_id = request.match_info["task_id"]
    doc = request.app[keys.STORE].get("tasks", task_id)
    if doc is None:
        raise NotFound("Failed to find task")
    return json_response(doc)


search = search_handler("tasks")


async def delete(request: web.Request) -> web.Response:
    store = request.app[keys.STORE]
    task_id = request.match_info["task_id"]
    doc = store.get("tasks", task_id)
    if doc is None:
        raise NotFound("Failed to find task")
    if doc.get("state") == "RUNNING" or request.app[keys.TASKS].is_running(task_id):
        raise IllegalArgument("Task cannot be deleted in running state. Try after some time.")
    await store.delete("tasks", task_id)
    return json_response(store.index_response("tasks", task_id, "deleted"))
