"""Helpers shared by the views: JSON bodies, typed app state, ML Commons lookups."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from mlnode import access, keys
from mlnode.errors import NotFound
from opensearch_contract.body import encode, parse_object
from opensearch_contract.errors import ParsingError


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(body, status=status, headers=headers, dumps=encode)


async def read_json(request: web.Request, *, required: bool = True) -> dict[str, Any]:
    return parse_object(await request.read(), required=required)


def search_handler(collection: str) -> Callable[[web.Request], Awaitable[web.Response]]:
    """The ``_search`` view of one store collection (models, model_groups, tasks)."""

    async def search(request: web.Request) -> web.Response:
        body = access.search_filter(request, collection, await read_json(request, required=False))
        return json_response(request.app[keys.STORE].search(collection, body))

    return search


def model_or_404(request: web.Request, model_id: str) -> dict[str, Any]:
    doc = request.app[keys.STORE].get("models", model_id)
    if doc is None:
        raise NotFound(f"Failed to find model with the provided model id: {model_id}")
    access.check_model(request, doc)  # ML Commons' model access control (403 when the caller may not use it)
    return doc


def bool_param(request: web.Request, name: str, default: bool = False) -> bool:
    value = request.query.get(name)
    if value is None:
        return default
    if value == "" or value.lower() == "true":
        return True
    if value.lower() == "false":
        return False
    raise ParsingError(f"Failed to parse value [{value}] as only [true] or [false] are allowed.")


def client_alive(request: web.Request):
    """A callable telling whether the client of ``request`` is still connected."""

    def alive() -> bool:
        transport = request.transport
        return transport is not None and not transport.is_closing()

    return alive
