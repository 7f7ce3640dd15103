"""Models: _register (pretrained name or url, ?deploy=true), chunked upload (_register_meta + upload_chunk, and the
older meta + chunk routes), get, _search, delete, _deploy, _undeploy (one model or many)."""

from __future__ import annotations

import asyncio
import os
import shutil
from typing import Any

from aiohttp import web

from mlnode import access, keys, urlgate
from mlnode.errors import GroupNameTaken, MLResourceNotFound, NotFound
from mlnode.store import new_id, now_ms
from mlnode.tasks import (
    DEPLOYABLE_STATES,
    FUNCTION_NAMES,
    MODEL_FORMATS,
    disk_full,
    is_disk_full,
    is_user_error,
    zip_limits,
)
from mlnode.urlgate import UNTRUSTED_URL
from mlnode.views.common import bool_param, json_response, model_or_404, read_json, search_handler
from mlnode.views.groups import create_group
from opensearch_contract.errors import IllegalArgument, ParsingError

URL_DISABLED = (
    "To upload custom model user needs to enable allow_registering_model_via_url settings. "
    "Otherwise please use OpenSearch pre-trained models."
)
LOCAL_FILE_DISABLED = (
    "To upload custom model from local file, user needs to enable allow_registering_model_via_local_file settings. "
    "Otherwise please use opensearch pre-trained models"
)
# ML Commons' chunk size (ModelHelper.CHUNK_SIZE, "10MB"): the most bytes one upload_chunk may carry, and with
# max_zip_bytes what bounds total_chunks
CHUNK_LIMIT = 10_000_000


# ---- body validation -----------------------------------------------------------------------------------------------


def _required_str(body: dict[str, Any], key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value.strip():
        raise IllegalArgument(f"[{key}] is required and must be a non-empty string")
    return value.strip()


def _model_format(body: dict[str, Any]) -> str:
    value = body.get("model_format")
    if not isinstance(value, str) or value.upper() not in MODEL_FORMATS:
        raise IllegalArgument(f"Invalid model_format [{value}]; valid values: {', '.join(MODEL_FORMATS)}")
    return value.upper()


def _function_name(body: dict[str, Any]) -> str:
    value = body.get("function_name", "TEXT_EMBEDDING")
    if not isinstance(value, str) or value.upper() not in FUNCTION_NAMES:
        raise IllegalArgument(f"Invalid function_name [{value}]; local models here serve: {', '.join(FUNCTION_NAMES)}")
    return value.upper()


def _model_config(body: dict[str, Any], function_name: str) -> dict[str, Any] | None:
    config = body.get("model_config")
    if config is None:
        if function_name == "TEXT_EMBEDDING":
            raise IllegalArgument("[model_config] is required for TEXT_EMBEDDING models")
        return None
    if not isinstance(config, dict):
        raise ParsingError("[model_config] must be an object")
    return config


def _reject_remote(body: dict[str, Any]) -> None:
    if "connector" in body or "connector_id" in body or str(body.get("function_name", "")).lower() == "remote":
        raise IllegalArgument("Remote models (connectors) are not served by this ML node; it serves local models only")


async def _resolve_group(request: web.Request, body: dict[str, Any], name: str) -> tuple[str, int, bool]:
    """The model group id, the model_version the new model gets in it, and whether the group was auto-created
    (like ML Commons: a model registered without a group joins the group named after it, created if missing)."""
    store = request.app[keys.STORE]
    group_id = body.get("model_group_id")
    created = False
    if group_id is None:
        # like ML Commons: reuse the group named after the model, or create it
        group_id = next((gid for gid, group in store.all("model_groups") if group.get("name") == name), None)
        if group_id is None:
            description = body.get("description") if isinstance(body.get("description"), str) else None
            try:
                group_id = await create_group(request, name, description)
                created = True
            except GroupNameTaken as exc:  # another ML node of the registry created it a moment ago: join it
                group_id = exc.group_id
                await store.refresh_doc("model_groups", group_id)
    elif not isinstance(group_id, str) or store.get("model_groups", group_id) is None:
        raise MLResourceNotFound(f"Failed to find model group with ID: {group_id}")
    group = store.get("model_groups", group_id) or {}
    access.check_register_into(request, group_id, group, by_name=None if created or "model_group_id" in body else name)
    taken = [
        int(doc.get("model_version", 0)) for _, doc in store.all("models") if doc.get("model_group_id") == group_id
    ]
    return group_id, max([int(group.get("latest_version", 0)), *taken]) + 1, created


async def _new_model_doc(
    request: web.Request, body: dict[str, Any], *, name: str, function_name: str | None, model_format: str
) -> tuple[dict[str, Any], str | None]:
    """The document of a model about to register, in its group (see ``_resolve_group``), and the id of a group
    created for it (None when it joined an existing one), so a failed registration can remove that group."""
    group_id, version, created = await _resolve_group(request, body, name)
    now = now_ms()
    doc: dict[str, Any] = {
        "name": name,
        "model_group_id": group_id,
        "model_version": str(version),
        "model_format": model_format,
        "model_state": "REGISTERING",
        "created_time": now,
        "last_updated_time": now,
    }
    if function_name:
        doc["algorithm"] = function_name
    for key in (
        "description",
        "model_config",
        "model_content_hash_value",
        "model_content_size_in_bytes",
        "is_enabled",
        "rate_limiter",
        "interface",
        "deploy_setting",
    ):
        if body.get(key) is not None:
            doc[key] = body[key]
    return doc, group_id if created else None


# ---- register ------------------------------------------------------------------------------------------------------


async def register(request: web.Request) -> web.Response:
    app = request.app
    settings = app[keys.SETTINGS]
    body = await read_json(request)
    deploy = bool_param(request, "deploy")
    _reject_remote(body)
    if not settings.get("local_model.enabled"):
        raise IllegalArgument(
            "Local Model is currently disabled. To enable it, update the setting"
            ' "plugins.ml_commons.local_model.enabled" to true.'
        )
    name = _required_str(body, "name")
    model_format = _model_format(body)
    if "url" in body:
        url = body.get("url")
        if not settings.get("allow_registering_model_via_url"):
            raise IllegalArgument(URL_DISABLED)
        if not isinstance(url, str):
            raise IllegalArgument(UNTRUSTED_URL)
        # checked normalised (dot segments, escapes, authority); the task fetches exactly this URL and checks
        # every redirect hop again
        body = {**body, "url": urlgate.check(url, settings.get("trusted_url_regex"))}
        function_name = _function_name(body)
        _model_config(body, function_name)
        if not isinstance(body.get("model_content_hash_value"), str):
            raise IllegalArgument("[model_content_hash_value] is required to register a model from a url")
        source = "url"
    else:
        version = body.get("version")
        if not isinstance(version, (str, int, float)) or str(version).strip() == "":
            raise IllegalArgument("[version] is required to register a pretrained model")
        body = {**body, "version": str(version)}
        catalog = await asyncio.to_thread(app[keys.TASKS].backends.catalog, settings)
        known = list(catalog.names())
        if name not in known:
            raise IllegalArgument(
                f"Unknown pretrained model [{name}]; this ML node can serve: {', '.join(sorted(known))}. "
                "To register another model, give its url (allow_registering_model_via_url) or upload it in chunks "
                "(allow_registering_model_via_local_file)."
            )
        entry = await asyncio.to_thread(
            catalog.entry, name, body["version"], model_format
        )  # UnknownPretrainedModel: 400
        # known now, so the task and the model show it while registering (the packaged config.json confirms it)
        function_name = entry.function_name
        source = "pretrained"
    app[keys.TASKS].check_task_limit("REGISTER_MODEL")
    doc, created_group = await _new_model_doc(
        request, body, name=name, function_name=function_name, model_format=model_format
    )
    model_id = new_id()
    if source == "pretrained":
        doc.pop("model_content_hash_value", None)
    await app[keys.STORE].put("models", model_id, doc)
    task_id = await app[keys.TASKS].start_registration(
        model_id, body, source=source, deploy=deploy, created_group=created_group
    )
    return json_response({"task_id": task_id, "status": "CREATED", "model_id": model_id})


async def register_meta(request: web.Request) -> web.Response:
    settings = request.app[keys.SETTINGS]
    if not settings.get("allow_registering_model_via_local_file"):
        raise IllegalArgument(LOCAL_FILE_DISABLED)
    raw = await request.read()
    if not raw.strip():
        raise IllegalArgument("Model meta request has empty body")
    body = await read_json(request)
    _reject_remote(body)
    name = _required_str(body, "name")
    model_format = _model_format(body)
    function_name = _function_name(body)
    _model_config(body, function_name)
    if not isinstance(body.get("model_content_hash_value"), str):
        raise IllegalArgument("[model_content_hash_value] is required")
    total = body.get("total_chunks")
    if not isinstance(total, int) or isinstance(total, bool) or total < 1:
        raise IllegalArgument(f"[total_chunks] must be a positive integer, got [{total}]")
    _check_model_size(total, body.get("model_content_size_in_bytes"), settings.max_zip_bytes)
    doc, _ = await _new_model_doc(request, body, name=name, function_name=function_name, model_format=model_format)
    model_id = new_id()
    doc["total_chunks"] = total
    await request.app[keys.STORE].put("models", model_id, doc)
    return json_response({"model_id": model_id, "status": "CREATED"})


def _check_model_size(total_chunks: int, declared_size: Any, max_bytes: int) -> None:
    """total_chunks (of at most CHUNK_LIMIT bytes each) and model_content_size_in_bytes must fit max_zip_bytes, the
    model size limit (ML Commons: "Model file size exceeds the limit of 4GB")."""
    most = -(-max_bytes // CHUNK_LIMIT)
    if total_chunks > most:
        raise IllegalArgument(
            f"Model file size exceeds the limit of {max_bytes} bytes: [total_chunks] is {total_chunks}, "
            f"but chunks hold at most {CHUNK_LIMIT} bytes, so a model has at most {most} chunks"
        )
    if isinstance(declared_size, int) and not isinstance(declared_size, bool) and declared_size > max_bytes:
        raise IllegalArgument(f"Model file size exceeds the limit of {max_bytes} bytes: {declared_size}")


async def _read_limited(request: web.Request, limit: int) -> bytes:
    parts: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(1 << 20):
        size += len(chunk)
        if size > limit:
            raise IllegalArgument("Chunk size exceeds 10MB")
        parts.append(chunk)
    return b"".join(parts)


def _write_bytes(fh: Any, data: bytes) -> None:
    """One write of a chunk or of the assembled zip (a seam: the full-disk test makes it raise ENOSPC)."""
    fh.write(data)


def _write_chunk(path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as fh:
            _write_bytes(fh, data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _assemble(chunk_dir, total: int, target) -> int:
    with open(target, "wb") as out:
        for n in range(total):
            with open(chunk_dir / str(n), "rb") as part:
                for block in iter(lambda: part.read(1 << 20), b""):
                    _write_bytes(out, block)
    return target.stat().st_size


def _missing_chunks(chunk_dir, total: int) -> list[int]:
    return [n for n in range(total) if not (chunk_dir / str(n)).is_file()]


async def upload_chunk(request: web.Request) -> web.Response:
    app = request.app
    settings = app[keys.SETTINGS]
    store = app[keys.STORE]
    if not settings.get("allow_registering_model_via_local_file"):
        raise IllegalArgument(LOCAL_FILE_DISABLED + ".")
    model_id = request.match_info["model_id"]
    doc = store.get("models", model_id)
    if doc is None:
        raise MLResourceNotFound("Failed to find model")
    try:
        number = int(request.match_info["chunk_number"])
    except ValueError:
        raise IllegalArgument(f"Chunk number must be an integer, got [{request.match_info['chunk_number']}]") from None
    total = int(doc.get("total_chunks") or 0)
    if doc.get("model_state") != "REGISTERING" or not total:
        raise IllegalArgument(f"Model [{model_id}] is not waiting for chunks (state {doc.get('model_state')})")
    if number < 0 or total <= number:
        raise IllegalArgument("Chunk number exceeds total chunks")
    data = await _read_limited(request, CHUNK_LIMIT)
    if not data:
        raise IllegalArgument("Chunk size either 0 or null")
    chunk_dir = store.chunks_dir / model_id
    chunk_path = chunk_dir / str(number)
    try:
        await asyncio.to_thread(_write_chunk, chunk_path, data)
    except OSError as exc:
        if is_disk_full(exc):
            raise disk_full() from None
        raise
    if number == total - 1:
        await _complete_upload(request, model_id, doc, chunk_dir, chunk_path, total)
    return json_response({"status": "Uploaded"})


async def _complete_upload(
    request: web.Request, model_id: str, doc: dict[str, Any], chunk_dir, last_chunk, total: int
) -> None:
    """Assemble, check and unpack the uploaded zip. A zip the checks refuse (ML Commons' "model content changed" for
    a wrong hash) ends the upload: its chunks and the model are deleted and the message is the 400's reason. A full
    disk keeps the other chunks (free space, upload the last chunk again) and leaves no model files."""
    app = request.app
    store = app[keys.STORE]
    tasks = app[keys.TASKS]
    missing = await asyncio.to_thread(_missing_chunks, chunk_dir, total)
    if missing:
        await asyncio.to_thread(last_chunk.unlink, True)
        raise IllegalArgument(f"Chunks {missing} of model [{model_id}] are missing; upload them before the last chunk")
    staging = await asyncio.to_thread(store.staging_dir)
    try:
        zip_path = staging / "model.zip"
        try:
            size = await asyncio.to_thread(_assemble, chunk_dir, total, zip_path)
            await asyncio.to_thread(
                tasks.backends.validate_and_extract,
                zip_path,
                staging / "model",
                model_format=doc["model_format"],
                function_name=doc.get("algorithm", "TEXT_EMBEDDING"),
                expected_hash=doc.get("model_content_hash_value"),
                **zip_limits(app[keys.SETTINGS]),
            )
        except Exception as exc:
            if is_disk_full(exc):
                await asyncio.to_thread(last_chunk.unlink, True)
                raise disk_full() from None
            if is_user_error(exc):
                await store.delete("models", model_id)
                await asyncio.to_thread(store.remove_model_files, model_id)
                raise IllegalArgument(str(exc)) from None
            await asyncio.to_thread(last_chunk.unlink, True)
            raise
        await asyncio.to_thread(store.commit_model_dir, staging / "model", model_id)
    finally:
        await asyncio.to_thread(shutil.rmtree, staging, True)
    await tasks.finish_registration(
        model_id, {"model_content_size_in_bytes": doc.get("model_content_size_in_bytes", size)}
    )
    await asyncio.to_thread(shutil.rmtree, chunk_dir, True)


# ---- read / delete -------------------------------------------------------------------------------------------------


async def get(request: web.Request) -> web.Response:
    return json_response(model_or_404(request, request.match_info["model_id"]))


search = search_handler("models")


async def delete(request: web.Request) -> web.Response:
    store = request.app[keys.STORE]
    model_id = request.match_info["model_id"]
    doc = store.get("models", model_id)
    if doc is None:
        raise NotFound("Failed to find model")
    access.check_model(request, doc)
    if doc.get("model_state") in ("DEPLOYED", "DEPLOYING", "PARTIALLY_DEPLOYED") or request.app[keys.DEPLOYMENTS].get(
        model_id
    ):
        raise IllegalArgument(
            "Model cannot be deleted in deploying or deployed state. Try undeploy model first then delete"
        )
    await store.delete("models", model_id)
    await asyncio.to_thread(store.remove_model_files, model_id)
    return json_response(store.index_response("models", model_id, "deleted"))


UPDATABLE = ("name", "description", "is_enabled", "rate_limiter", "model_config", "model_group_id")


async def update(request: web.Request) -> web.Response:
    """PUT models/{id}: name, description, is_enabled, rate_limiter (stored, not enforced), model_config (only while
    not deployed), model_group_id."""
    store = request.app[keys.STORE]
    model_id = request.match_info["model_id"]
    doc = model_or_404(request, model_id)
    body = await read_json(request)
    unknown = sorted(set(body) - set(UPDATABLE))
    if unknown:
        raise IllegalArgument(f"Can't update {unknown} of a local model; updatable fields: {', '.join(UPDATABLE)}")
    if "is_enabled" in body and not isinstance(body["is_enabled"], bool):
        raise ParsingError("[is_enabled] must be a boolean")
    if "model_config" in body:
        if doc.get("model_state") in ("DEPLOYED", "DEPLOYING"):
            raise IllegalArgument("Can't update model_config of a deployed model; undeploy it first")
        if not isinstance(body["model_config"], dict):
            raise ParsingError("[model_config] must be an object")
    if "model_group_id" in body and store.get("model_groups", str(body["model_group_id"])) is None:
        raise MLResourceNotFound(f"Failed to find model group with ID: {body['model_group_id']}")
    await store.update("models", model_id, **body, last_updated_time=now_ms())
    return json_response(store.index_response("models", model_id, "updated"))


# ---- deploy / undeploy ---------------------------------------------------------------------------------------------


def _check_node_ids(request: web.Request, body: dict[str, Any]) -> None:
    node_ids = body.get("node_ids")
    if node_ids is None:
        return
    name = request.app[keys.SETTINGS].node_name
    if not isinstance(node_ids, list) or any(n != name for n in node_ids):
        raise IllegalArgument(f"Unknown node_ids {node_ids}; this ML node is [{name}]")


async def deploy(request: web.Request) -> web.Response:
    app = request.app
    model_id = request.match_info["model_id"]
    doc = model_or_404(request, model_id)
    body = await read_json(request, required=False)
    _check_node_ids(request, body)
    state = doc.get("model_state")
    if state not in DEPLOYABLE_STATES and state != "DEPLOYING":
        raise IllegalArgument(
            f"Model [{model_id}] can't be deployed in state [{state}]; wait for its registration to complete"
        )
    # max_model_on_node and the memory circuit breaker are checked by the task, as ML Commons'
    # MLModelManager.deployModel does on the node: the call answers a task id, the task ends FAILED with the message
    app[keys.TASKS].check_task_limit("DEPLOY_MODEL")
    task_id = await app[keys.TASKS].start_deploy(model_id)
    return json_response({"task_id": task_id, "task_type": "DEPLOY_MODEL", "status": "CREATED"})


async def _undeploy_many(request: web.Request, model_ids: list[str]) -> dict[str, Any]:
    tasks = request.app[keys.TASKS]
    access.check_models(request, model_ids)  # all or none: ML Commons' model access control
    stats: dict[str, str] = {}
    for model_id in model_ids:
        doc = request.app[keys.STORE].get("models", model_id)
        was_deployed = request.app[keys.DEPLOYMENTS].get(model_id) is not None or (
            doc is not None and doc.get("model_state") in ("DEPLOYED", "DEPLOYING", "PARTIALLY_DEPLOYED")
        )
        if was_deployed:
            await tasks.undeploy(model_id)
            stats[model_id] = "UNDEPLOYED"
    return {request.app[keys.SETTINGS].node_name: {"stats": stats}} if stats else {}


async def undeploy(request: web.Request) -> web.Response:
    model_id = request.match_info["model_id"]
    model_or_404(request, model_id)
    body = await read_json(request, required=False)
    _check_node_ids(request, body)
    return json_response(await _undeploy_many(request, [model_id]))


async def undeploy_many(request: web.Request) -> web.Response:
    body = await read_json(request, required=False)
    _check_node_ids(request, body)
    model_ids = body.get("model_ids")
    if model_ids is None:
        model_ids = [
            mid
            for mid, doc in request.app[keys.STORE].all("models")
            if doc.get("model_state") in ("DEPLOYED", "DEPLOYING", "PARTIALLY_DEPLOYED")
        ]
    elif not isinstance(model_ids, list) or not all(isinstance(m, str) for m in model_ids):
        raise ParsingError("[model_ids] must be an array of strings")
    return json_response(await _undeploy_many(request, model_ids))
