"""ML Commons' model access control: who may see, use and change model groups and the models in them.

It applies when the node authenticates its callers (``neuralpipe serve --users-file`` or ``--auth-opensearch``: the
security middleware puts the ``User`` on the request) and ``plugins.ml_commons.model_access_control_enabled`` is true,
as ML Commons applies it when the security plugin is on and that setting is true (``ModelAccessControlHelper``).
Otherwise every group is public and access-control parameters answer 400, exactly as before.

A group is ``public`` (everyone), ``private`` (its owner) or ``restricted`` (users sharing one of its
``backend_roles``); an admin (the ``all_access`` role) may do anything; a group written without an owner (registered
while access control was off) stays public. A model's access is its group's. Messages and statuses are ML Commons'.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from mlnode import keys
from opensearch_contract.errors import IllegalArgument, OpenSearchError, ParsingError
from opensearch_contract.security import User, request_user

MODES = ("public", "private", "restricted")
ACCESS_CONTROL_DISABLED = (
    "You cannot specify model access control parameters because the Security plugin or model access control is disabled"
    " on your cluster."
)
NO_MODEL_PRIVILEGE = "User doesn't have privilege to perform this operation on this model"
NO_GROUP_PRIVILEGE = "User doesn't have privilege to perform this operation on this model group"
NO_REGISTER_PERMISSION = "You don't have permissions to perform this operation on this model."
ROLES_ONLY_RESTRICTED = "You can specify backend roles only for a model group with the restricted access mode."
BOTH_ROLE_OPTIONS = "You cannot specify backend roles and add all backend roles at the same time."


def _forbidden(reason: str) -> OpenSearchError:
    return OpenSearchError(reason, status=403, error_type="status_exception")


def active_user(request: web.Request) -> User | None:
    """The caller when model access control applies to this request; None when it does not."""
    user = request_user(request)
    if user is None or not request.app[keys.SETTINGS].get("model_access_control_enabled"):
        return None
    return user


def can_access(user: User | None, group: dict[str, Any]) -> bool:
    """ModelAccessControlHelper.checkModelGroupPermission, with its admin and "no owner: public" shortcuts."""
    if user is None or user.is_admin or not group.get("owner"):
        return True
    access = group.get("access", "public")
    if access == "private":
        return _is_owner(user, group)
    if access == "restricted":
        return bool(set(user.backend_roles) & set(group.get("backend_roles") or ()))
    return True


def _is_owner(user: User, group: dict[str, Any]) -> bool:
    owner = group.get("owner")
    return isinstance(owner, dict) and owner.get("name") == user.name


def _group_of(request: web.Request, model: dict[str, Any]) -> dict[str, Any]:
    group_id = model.get("model_group_id")
    return (request.app[keys.STORE].get("model_groups", group_id) if isinstance(group_id, str) else None) or {}


def check_model(request: web.Request, model: dict[str, Any]) -> None:
    """Get, predict, deploy, undeploy, update, delete of one model: 403 unless its group is accessible."""
    if not can_access(active_user(request), _group_of(request, model)):
        raise _forbidden(NO_MODEL_PRIVILEGE)


def check_models(request: web.Request, model_ids: list[str]) -> None:
    """Undeploy of several models: 403 if any of them is not the caller's to use."""
    store = request.app[keys.STORE]
    for model_id in model_ids:
        model = store.get("models", model_id)
        if model is not None:
            check_model(request, model)


def check_group(request: web.Request, group: dict[str, Any]) -> None:
    """Get of one model group."""
    if not can_access(active_user(request), group):
        raise _forbidden(NO_GROUP_PRIVILEGE)


def check_register_into(request: web.Request, group_id: str, group: dict[str, Any], *, by_name: str | None) -> None:
    """A model registering into ``group`` (given by id, or found by the model's name when ``by_name``)."""
    if can_access(active_user(request), group):
        return
    if by_name is not None:
        raise IllegalArgument(f"The name {{{by_name}}} you provided is unavailable because it is used by another model "
                              f"group with id {{{group_id}}} to which you do not have access. Please provide a "
                              "different name.")
    raise IllegalArgument(NO_REGISTER_PERMISSION)


def search_filter(request: web.Request, collection: str, body: dict[str, Any]) -> dict[str, Any]:
    """A ``_search`` body over models or model groups, narrowed to what the caller may see."""
    user = active_user(request)
    if user is None or user.is_admin or collection not in ("models", "model_groups"):
        return body
    store = request.app[keys.STORE]
    visible = {gid for gid, group in store.all("model_groups") if can_access(user, group)}
    if collection == "model_groups":
        ids = sorted(visible)
    else:
        ids = sorted(mid for mid, model in store.all("models")
                     if not isinstance(model.get("model_group_id"), str) or model["model_group_id"] in visible)
    allowed: dict[str, Any] = {"ids": {"values": ids}}
    query = body.get("query")
    narrowed = {"bool": {"filter": [allowed]}} if query is None else {"bool": {"must": [query], "filter": [allowed]}}
    return {**body, "query": narrowed}


def _backend_roles(body: dict[str, Any]) -> list[str] | None:
    roles = body.get("backend_roles")
    if roles is not None and (not isinstance(roles, list) or not all(isinstance(r, str) for r in roles)):
        raise ParsingError(f"[backend_roles] must be an array of strings, got [{roles}]")
    return roles


def _mode(body: dict[str, Any]) -> str | None:
    mode = body.get("access_mode")
    if mode is None:
        return None
    if not isinstance(mode, str) or mode.lower() not in MODES:
        raise IllegalArgument(f"[access_mode] must be one of [{', '.join(MODES)}], got [{mode}]")
    return mode.lower()


def new_group_access(request: web.Request, body: dict[str, Any]) -> dict[str, Any]:
    """The access fields of a model group being registered: ML Commons' MLModelGroupManager.createModelGroup."""
    user = active_user(request)
    roles, add_all = _backend_roles(body), body.get("add_all_backend_roles")
    if user is None:
        if body.get("access_mode") is not None or add_all is not None or roles:
            raise IllegalArgument(ACCESS_CONTROL_DISABLED)
        return {"access": "public"}
    mode = _mode(body)
    add_all = add_all is True
    if mode is None:
        if roles and add_all:
            raise IllegalArgument(BOTH_ROLE_OPTIONS)
        mode = "restricted" if add_all or roles else "private"
    if mode in ("public", "private") and (roles or add_all):
        raise IllegalArgument(ROLES_ONLY_RESTRICTED)
    if mode == "restricted":
        if user.is_admin and add_all:
            raise IllegalArgument("Admin users cannot add all backend roles to a model group.")
        if not user.is_admin and not user.backend_roles:
            raise IllegalArgument("You must have at least one backend role to register a restricted model group.")
        if not roles and not add_all:
            raise IllegalArgument("You must specify one or more backend roles or add all backend roles to register a "
                                  "restricted model group.")
        if roles and add_all:
            raise IllegalArgument(BOTH_ROLE_OPTIONS)
        if not user.is_admin and not add_all and not set(roles or ()) <= set(user.backend_roles):
            raise IllegalArgument("You don't have the backend roles specified.")
    fields: dict[str, Any] = {"access": mode, "owner": user.owner_doc()}
    if mode == "restricted":
        fields["backend_roles"] = list(user.backend_roles) if add_all else list(roles or ())
    return fields


def group_update_access(request: web.Request, group: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    """Check an update of ``group`` and return the access fields it changes (TransportUpdateModelGroupAction)."""
    user = active_user(request)
    roles, add_all = _backend_roles(body), body.get("add_all_backend_roles")
    if user is None:
        if body.get("access_mode") is not None or add_all is not None or roles:
            raise IllegalArgument(ACCESS_CONTROL_DISABLED)
        return {}
    mode = _mode(body)
    touches_access = mode is not None or add_all is not None or roles is not None
    if user.is_admin or not group.get("owner"):
        pass
    elif touches_access and not _is_owner(user, group):
        raise IllegalArgument("Only owner or admin can update access control data.")
    elif not _is_owner(user, group) and not can_access(user, group):
        raise IllegalArgument("You don't have permission to update this model group.")
    elif _is_owner(user, group) and not can_access(user, group):
        raise IllegalArgument("You don't have the specified backend role to update this model group. For more "
                              "information, contact your administrator.")
    if not touches_access:
        return {}
    explicit_false = add_all is False
    add_all = add_all is True
    if mode in ("public", "private"):
        if roles or add_all:
            raise IllegalArgument(ROLES_ONLY_RESTRICTED)
        return {"access": mode, "backend_roles": []}
    if user.is_admin and add_all:
        raise IllegalArgument("Admin users cannot add all backend roles to a model group.")
    if add_all and not user.backend_roles:
        raise IllegalArgument("You don't have any backend roles.")
    if not roles and explicit_false:
        raise IllegalArgument("You have to specify backend roles when add all backend roles is set to false.")
    if roles and add_all:
        raise IllegalArgument(BOTH_ROLE_OPTIONS)
    if mode == "restricted" and not roles and not add_all:
        raise IllegalArgument("You must specify one or more backend roles or add all backend roles to register a "
                              "restricted model group.")
    if not user.is_admin and roles and not set(roles) <= set(user.backend_roles):
        raise IllegalArgument("You don't have the backend roles specified.")
    if not roles and not add_all:  # nothing to change
        return {}
    return {"access": "restricted", "backend_roles": list(user.backend_roles) if add_all else list(roles or ())}


def check_group_delete(request: web.Request, group: dict[str, Any]) -> None:
    """DeleteModelGroupTransportAction: only who may access the group deletes it (ML Commons answers 400)."""
    if not can_access(active_user(request), group):
        raise IllegalArgument("User doesn't have privilege to delete this model group")
