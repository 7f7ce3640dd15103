"""Node-level routes: GET / (once ready), health, _cluster/settings, profile, stats, Prometheus /metrics."""

from __future__ import annotations

import os
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from mlnode import keys
from mlnode.runtimes.backends import thread_plan
from mlnode.settings import PREFIX
from mlnode.views.common import bool_param, json_response, read_json
from opensearch_contract.errors import IllegalArgument, ParsingError
from opensearch_contract.settings import flatten_settings, nest_settings, setting_string

VERSION = "0.1.0"


async def root(request: web.Request) -> web.Response:
    settings = request.app[keys.SETTINGS]
    return json_response(
        {
            "name": settings.node_name,
            "cluster_name": "neuralpipe",
            "version": {"distribution": "neuralpipe-mlnode", "number": VERSION},
            "roles": ["ml"],
            "tagline": "ML Commons-compatible local model serving",
        }
    )


async def health(request: web.Request) -> web.Response:
    deployments = request.app[keys.DEPLOYMENTS]
    settings = request.app[keys.SETTINGS]
    plan = thread_plan()
    return json_response(
        {
            "status": "green",
            "deployed_models": len(deployments),
            "node": settings.node_name,
            "worker_threads": settings.worker_threads,
            "intra_op_threads": plan.shared,  # a call's threads beside other calls
            "intra_op_threads_alone": plan.alone,  # a call's threads when no other call runs or waits
        }
    )


async def metrics(request: web.Request) -> web.Response:
    body = request.app[keys.METRICS].render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


# ---- _cluster/settings ---------------------------------------------------------------------------------------------


def _render(values: dict[str, Any], flat_settings: bool) -> dict[str, Any]:
    """Short-name values as OpenSearch prints settings: full names, string values, nested unless ``flat_settings``."""
    flat = {PREFIX + name: setting_string(value) for name, value in sorted(values.items())}
    return flat if flat_settings else nest_settings(flat)


async def get_cluster_settings(request: web.Request) -> web.Response:
    """``defaults`` (with ``include_defaults``) holds, as OpenSearch's ClusterSettings.diff does, every setting not set
    in ``persistent`` or ``transient``, at its node-level value: the config file's, else the built-in default."""
    state = request.app[keys.READY]
    flat = bool_param(request, "flat_settings")
    persistent = request.app[keys.STORE].cluster_settings.get("persistent", {})
    transient = state.get("transient", {})
    body: dict[str, Any] = {"persistent": _render(persistent, flat), "transient": _render(transient, flat)}
    if bool_param(request, "include_defaults"):
        node_level = state.get("config", {})
        body["defaults"] = _render(
            {k: v for k, v in node_level.items() if k not in persistent and k not in transient}, flat
        )
    return json_response(body)


async def put_cluster_settings(request: web.Request) -> web.Response:
    """Accepts OpenSearch's body; only ``plugins.ml_commons.*`` settings mean something on this node.

    Every value is validated before any is applied; ``null`` resets a setting. Persistent values are stored in the
    data dir and survive a restart, transient ones do not (as on a cluster)."""
    settings = request.app[keys.SETTINGS]
    store = request.app[keys.STORE]
    state = request.app[keys.READY]
    body = await read_json(request)
    changes: dict[str, dict[str, Any]] = {}  # scope -> short name -> value (None = reset)
    for scope in ("persistent", "transient"):
        section = body.get(scope) or {}
        if not isinstance(section, dict):
            raise ParsingError(f"[{scope}] must be an object")
        changes[scope] = {}
        for key, value in flatten_settings(section).items():
            if not key.startswith(PREFIX):
                raise IllegalArgument(
                    f"{scope} setting [{key}], not recognized by this ML node (only {PREFIX}* settings)"
                )
            name = key.removeprefix(PREFIX)
            changes[scope][name] = None if value is None else settings.coerce(name, value, scope=scope)
    persistent = dict(store.cluster_settings.get("persistent", {}))
    transient = state.setdefault("transient", {})
    for target, scope in ((persistent, "persistent"), (transient, "transient")):
        for name, value in changes[scope].items():
            if value is None:
                target.pop(name, None)
            else:
                target[name] = value
    await store.put_cluster_settings({"persistent": persistent})
    settings.apply({**settings.defaults, **state.get("config", {}), **persistent, **transient})
    applied = {scope: {k: v for k, v in values.items() if v is not None} for scope, values in changes.items()}
    return json_response({"acknowledged": True, **{scope: _render(values, False) for scope, values in applied.items()}})


# ---- profile and stats ---------------------------------------------------------------------------------------------


def _model_profile(app: web.Application, model_id: str, doc: dict[str, Any]) -> dict[str, Any]:
    node = app[keys.SETTINGS].node_name
    worker = app[keys.DEPLOYMENTS].get(model_id)
    entry: dict[str, Any] = {"model_state": doc.get("model_state")}
    if worker is not None:
        entry["predictor"] = f"{type(worker.runtime).__name__}@{id(worker.runtime):x}"
        entry["target_worker_nodes"] = [node]
        entry["worker_nodes"] = [node]
        entry["model_inference_stats"] = worker.inference_stats.to_dict()
        entry["predict_request_stats"] = worker.predict_stats.to_dict()
        entry["batch_stats"] = worker.batch_stats()  # neuralpipe extra: cross-request batching
    return entry


async def profile(request: web.Request) -> web.Response:
    store = request.app[keys.STORE]
    node = request.app[keys.SETTINGS].node_name
    kind = request.match_info.get("kind")
    ids_param = request.match_info.get("ids")
    wanted = set(ids_param.split(",")) if ids_param else None
    body = await read_json(
        request, required=False
    )  # optional: model_ids, task_ids, return_all_tasks, return_all_models
    for field in ("model_ids", "task_ids"):
        if isinstance(body.get(field), list):
            wanted = (wanted or set()) | {str(i) for i in body[field]}
    node_body: dict[str, Any] = {}
    if kind in (None, "models"):
        models = {}
        for model_id, doc in store.all("models"):
            if wanted is not None and model_id not in wanted:
                continue
            if (
                wanted is None
                and not body.get("return_all_models")
                and request.app[keys.DEPLOYMENTS].get(model_id) is None
            ):
                continue
            models[model_id] = _model_profile(request.app, model_id, doc)
        if models:
            node_body["models"] = models
    if kind in (None, "tasks"):
        tasks = {}
        for task_id, doc in store.all("tasks"):
            if wanted is not None and task_id not in wanted:
                continue
            if wanted is None and not body.get("return_all_tasks") and doc.get("state") not in ("CREATED", "RUNNING"):
                continue
            tasks[task_id] = doc
        if tasks:
            node_body["tasks"] = tasks
    nodes = {node: node_body} if node_body else {}
    if kind in (None, "models"):  # the other ML nodes of a shared registry, as of their last heartbeat
        for peer, snap in _peers(request).items():
            peer_models = {m: p for m, p in (snap.get("profile") or {}).items() if wanted is None or m in wanted}
            if peer_models:
                nodes[peer] = {"models": peer_models}
    return json_response({"nodes": nodes} if nodes else {})


def _peers(request: web.Request) -> dict[str, dict[str, Any]]:
    cluster = request.app.get(keys.CLUSTER)
    return cluster.peer_snapshots() if cluster is not None else {}


def snapshot(app: web.Application) -> dict[str, Any]:
    """This node's profile of its deployed models and its stats, which its heartbeat carries to the other nodes of a
    shared registry."""
    store, deployments = app[keys.STORE], app[keys.DEPLOYMENTS]
    profile = {m: _model_profile(app, m, store.get("models", m) or {}) for m in deployments.ids()}
    return {"profile": profile, "stats": _node_stats(app)}


def _node_stats(app: web.Application) -> dict[str, Any]:
    store = app[keys.STORE]
    deployments = app[keys.DEPLOYMENTS]
    requests = sum(w.predict_stats.count for w in (deployments.get(m) for m in deployments.ids()) if w)
    failures = 0
    for metric in app[keys.METRICS].failures.collect():
        failures += int(sum(s.value for s in metric.samples if s.name.endswith("_total")))
    models: dict[str, Any] = {}
    algorithms: dict[str, Any] = {}
    for model_id in deployments.ids():
        worker = deployments.get(model_id)
        if worker is None:
            continue
        models[model_id] = {"predict": {"ml_action_request_count": worker.predict_stats.count}}
        algo = str(worker.runtime.function_name).lower()
        algorithms.setdefault(algo, {"predict": {"ml_action_request_count": 0}})
        algorithms[algo]["predict"]["ml_action_request_count"] += worker.predict_stats.count
    node_stats = {
        "ml_executing_task_count": sum(1 for _, t in store.all("tasks") if t.get("state") in ("CREATED", "RUNNING")),
        "ml_request_count": requests,
        "ml_failure_count": failures,
        "ml_deployed_model_count": len(deployments),
        "ml_circuit_breaker_trigger_count": app[keys.TASKS].circuit_breaker_trips,
        "ml_jvm_heap_usage": 0,
        "algorithms": algorithms,
        "models": models,
    }
    return node_stats


async def stats(request: web.Request) -> web.Response:
    app = request.app
    store = app[keys.STORE]
    node = app[keys.SETTINGS].node_name
    node_stats = _node_stats(app)
    all_nodes = {node: node_stats, **{peer: snap.get("stats") or {} for peer, snap in _peers(request).items()}}
    asked = request.match_info.get("node_id")
    if asked and asked != "_all":  # GET {node_id}/stats: those nodes only (_local: this one)
        names_asked = {node if n == "_local" else n for n in asked.split(",")}
        all_nodes = {n: one for n, one in all_nodes.items() if n in names_asked}
    body: dict[str, Any] = {
        "nodes": all_nodes,
        "ml_model_index_status": "green",
        "ml_task_index_status": "green",
        "ml_model_count": len(store.all("models")),
        "ml_connector_count": 0,
        "ml_config_index_status": "green",
        "ml_process_id": os.getpid(),
    }
    stat = request.match_info.get("stat")
    if stat:
        names = set(stat.split(","))
        body = {k: v for k, v in body.items() if k in names or k == "nodes"}
        body["nodes"] = {n: {k: v for k, v in one.items() if k in names} for n, one in all_nodes.items()}
    return json_response(body)
