"""What the OpenSearch security plugin defines for everyone: the authenticated user and its answers.

The node's security middleware (``neuralpipe.security``) authenticates a request and stores the ``User`` on it under
``USER``; the roles' views (ML Commons' model access control in ``mlnode.access``) read it from there without
importing the middleware. No ``USER`` on a request: security is off on this node.

The security plugin answers a request without valid credentials with 401, the body ``Unauthorized`` (plain text)
and ``WWW-Authenticate: Basic realm="OpenSearch Security"`` (``HTTPBasicAuthenticator.reRequestAuthentication``),
and a forbidden action with 403 ``security_exception`` "no permissions for [action] and User [name=..., ...]"
(``SecurityRestFilter`` / ``SecurityFilter``).
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from opensearch_contract.errors import OpenSearchError

UNAUTHORIZED_BODY = "Unauthorized"
WWW_AUTHENTICATE = 'Basic realm="OpenSearch Security"'
AUTHINFO_PATH = "/_plugins/_security/authinfo"
ADMIN_ROLE = "all_access"  # ML Commons' ModelAccessControlHelper.isAdmin: the user's roles contain all_access


@dataclass(frozen=True)
class User:
    """An authenticated user as the security plugin knows one: name, backend roles (from the authentication
    backend: the users file, LDAP groups, ...) and security roles (mapped from them; ``all_access`` is the admin)."""

    name: str
    backend_roles: tuple[str, ...] = ()
    roles: tuple[str, ...] = ()

    @property
    def is_admin(self) -> bool:
        return ADMIN_ROLE in self.roles

    def describe(self) -> str:
        """The plugin's ``User.toString``, as its 403 messages print the user."""
        return f"User [name={self.name}, backend_roles=[{', '.join(self.backend_roles)}], requestedTenant=null]"

    def authinfo(self) -> dict[str, Any]:
        """The body of ``GET _plugins/_security/authinfo`` for this user (the fields a client reads)."""
        return {"user": self.describe(), "user_name": self.name, "user_requested_tenant": None,
                "backend_roles": list(self.backend_roles), "custom_attribute_names": [], "roles": list(self.roles),
                "tenants": {self.name: True}, "principal": None, "peer_certificates": "0", "sso_logout_url": None}

    @classmethod
    def from_authinfo(cls, body: Any) -> User | None:
        """The user an authinfo body describes; None when the body is not one."""
        if not isinstance(body, dict) or not isinstance(body.get("user_name"), str) or not body["user_name"]:
            return None
        return cls(body["user_name"], _strings(body.get("backend_roles")), _strings(body.get("roles")))

    def owner_doc(self) -> dict[str, Any]:
        """The ``owner`` object ML Commons stores on a model group (the serialized commons ``User``)."""
        return {"name": self.name, "backend_roles": list(self.backend_roles), "roles": list(self.roles),
                "custom_attribute_names": [], "user_requested_tenant": None}


def _strings(value: Any) -> tuple[str, ...]:
    return tuple(v for v in value if isinstance(v, str)) if isinstance(value, list) else ()


USER: web.RequestKey[User] = web.RequestKey("opensearch_security_user")


def request_user(request: web.Request) -> User | None:
    """The authenticated user of ``request``; None when security is off on this node."""
    return request.get(USER)


# The Authorization header of the request a node is serving, so the calls it makes for that request (a data node's
# pipelines calling an ML node) run as the caller, as OpenSearch runs a plugin's inner calls in the caller's context.
CALLER_AUTHORIZATION: ContextVar[str | None] = ContextVar("caller_authorization", default=None)


def forwarded_authorization() -> dict[str, str] | None:
    """Headers that pass the caller's credentials on; None outside an authenticated request."""
    value = CALLER_AUTHORIZATION.get()
    return {"Authorization": value} if value else None


class SecurityException(OpenSearchError):
    status = 403
    error_type = "security_exception"


def no_permissions(action: str, user: User) -> SecurityException:
    return SecurityException(f"no permissions for [{action}] and {user.describe()}")


def unauthorized() -> web.Response:
    """The security plugin's answer to missing or wrong credentials."""
    return web.Response(status=401, text=UNAUTHORIZED_BODY, headers={"WWW-Authenticate": WWW_AUTHENTICATE})
