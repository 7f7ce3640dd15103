"""The node's front door, one aiohttp middleware for every role: Host check, authentication, JSON content type.

1. Host: a node bound to a loopback address answers only requests whose Host names loopback (``127.0.0.1``,
   ``localhost``, ``::1``, any port), so a web page that re-binds its own DNS name to 127.0.0.1 cannot reach it
   (DNS rebinding); ``--allowed-hosts`` adds names; a node bound to any other address answers any Host unless
   ``--allowed-hosts`` is given (then those names and loopback's).
   OpenSearch has no such check, so there is no OpenSearch error to copy: refused with 400
   ``illegal_argument_exception`` naming the host and the allowed ones.
2. Authentication (when configured): the security plugin's 401 for missing or bad credentials; the user is stored
   on the request under ``opensearch_contract.security.USER`` for the roles' views (model access control).
3. A request with a body must say it is JSON (``application/json``; ``application/x-ndjson`` for ``_bulk`` and
   ``_msearch``; parameters such as ``charset`` are fine), else OpenSearch's 406 ``Content-Type header [...] is not
   supported`` (or ``Content-Type header is missing``). A browser sends a cross-site form POST only as
   ``text/plain``, form or multipart, so no page can make a request this node accepts without a CORS pre-flight,
   which it never grants. OpenSearch also reads YAML, CBOR and Smile bodies; these nodes parse JSON only, so those
   get the 406 too, as an OpenSearch without them would answer.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from aiohttp import web
from aiohttp.typedefs import Middleware

from opensearch_contract.body import encode
from opensearch_contract.errors import error_body
from opensearch_contract.security import CALLER_AUTHORIZATION, USER, User, no_permissions, unauthorized

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
JSON_TYPES = ("application/json", "application/x-ndjson")
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")
# a liveness probe (docker, a load balancer) answers without credentials; it tells only that the node is up
PUBLIC_ROUTES = {("GET", "/health"), ("HEAD", "/health")}
# node-wide changes only an admin (the all_access role) may make: changing the settings could turn model access
# control off for everyone
ADMIN_ACTIONS = {("PUT", "/_cluster/settings"): "cluster:admin/settings/update"}


class Authenticator(Protocol):
    async def authenticate(self, authorization: str) -> User | None: ...

    async def close(self) -> None: ...


def is_loopback(host: str) -> bool:
    if host.rstrip(".").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def host_name(header: str) -> str:
    """The name part of a Host header: ``[::1]:9200`` -> ``::1``, ``localhost:9200`` -> ``localhost``."""
    header = header.strip()
    if header.startswith("["):
        return header[1:header.find("]")] if "]" in header else header
    if header.count(":") > 1:  # a bare IPv6 address (no port can be told apart)
        return header
    return header.partition(":")[0]


def allowed_host_names(bind_host: str, extra: tuple[str, ...] | None) -> frozenset[str] | None:
    """The Host names a node bound to ``bind_host`` answers; None: any."""
    names = {h.strip().lower() for h in extra or () if h.strip()}
    if "*" in names or (not names and not is_loopback(bind_host)):
        return None
    # loopback names always: no web page can make a browser send them for its own origin
    return frozenset(names | set(LOOPBACK_NAMES))


@dataclass
class Guard:
    """What the middleware enforces on one node."""

    allowed_hosts: frozenset[str] | None
    authenticator: Authenticator | None = None


def content_type_error(request: web.Request) -> web.Response | None:
    if not request.body_exists:
        return None
    values = request.headers.getall("Content-Type", [])
    media = values[0].partition(";")[0].strip().lower() if len(values) == 1 else ""
    if media in JSON_TYPES:
        return None
    if not values:
        reason = "Content-Type header is missing"
    else:
        reason = f"Content-Type header [{', '.join(values)}] is not supported"
    return web.json_response({"error": reason, "status": 406}, status=406, dumps=encode)


def guard_middleware(guard: Guard) -> Middleware:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if guard.allowed_hosts is not None and request.headers.get("Host") is not None:
            name = host_name(request.headers["Host"]).lower()
            if name not in guard.allowed_hosts:
                reason = (f"host [{request.headers['Host']}] is not allowed on this node; allowed: "
                          f"[{', '.join(sorted(guard.allowed_hosts))}] (see --allowed-hosts)")
                return web.json_response(error_body(400, "illegal_argument_exception", reason), status=400,
                                         dumps=encode)
        if guard.authenticator is not None and (request.method, request.path) not in PUBLIC_ROUTES:
            authorization = request.headers.get("Authorization")
            user = await guard.authenticator.authenticate(authorization) if authorization else None
            if user is None:
                await request.release()  # the body is not read: drain it so the connection stays usable
                return unauthorized()
            request[USER] = user
            action = ADMIN_ACTIONS.get((request.method, request.path))
            if action is not None and not user.is_admin:
                await request.release()
                forbidden = no_permissions(action, user)
                return web.json_response(forbidden.to_body(), status=forbidden.status, dumps=encode)
        refused = content_type_error(request)
        if refused is not None:
            return refused
        if request.get(USER) is None:
            return await handler(request)
        token = CALLER_AUTHORIZATION.set(request.headers["Authorization"])
        try:
            return await handler(request)
        finally:
            CALLER_AUTHORIZATION.reset(token)

    return middleware


async def authinfo(request: web.Request) -> web.Response:
    """``GET _plugins/_security/authinfo``: who the caller is, in the security plugin's shape, so another node (an ML
    node delegating its authentication) can ask this one as it would ask a cluster."""
    user = request.get(USER)
    if user is None:  # only registered with authentication on; a public route never reaches here
        return unauthorized()
    return web.json_response(user.authinfo(), dumps=encode)
