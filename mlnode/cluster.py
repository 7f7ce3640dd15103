"""Several ML nodes sharing one registry (``mlnode.registry``): deploy, undeploy and restart across nodes.

Deployment follows the desired state in the registry, as ML Commons keeps it in the model document: a model whose
``model_state`` is DEPLOYING, DEPLOYED or PARTIALLY_DEPLOYED is wanted on every node when ``deploy_to_all_nodes``,
else on its ``planning_worker_nodes``. Every node, every ``registry_sync_interval`` seconds:

1. pulls the registry's documents into its cache;
2. deploys what is wanted on it and not deployed (its unpacked copy is read from the registry's chunks when
   missing, hash checked), undeploys what is no longer wanted, drops copies of deleted models;
3. writes its node document (``<prefix>node``): heartbeat, the models it has deployed, the deploys that failed on
   it (with the task they answered);
4. finishes deploy tasks whose worker nodes have all answered (COMPLETED, COMPLETED_WITH_ERROR or FAILED, with
   each failed node's error as ML Commons reports it), sets models' worker node counts and state, and fails the
   tasks of nodes that stopped heartbeating (a registration a crash interrupted ends FAILED and its model is
   removed with its chunks). Every node does this; what they write is computed from the same documents.

``POST _deploy`` answers a DEPLOY_MODEL task whose ``worker_node`` lists the chosen nodes (``node_ids``, or every
live node); ``_undeploy`` takes nodes out of the plan. A node that starts does steps 1-3 before it answers, so it
serves what the registry says is deployed without a new register.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from mlnode import keys
from mlnode.batching import Deployments
from mlnode.registry import RegistryStore, node_id
from mlnode.settings import MLSettings
from mlnode.store import Store, new_id, now_ms
from mlnode.tasks import ACTIVE_TASK_STATES, DEPLOYABLE_STATES, TaskRunner, is_user_error
from mlnode.views import models as model_views
from mlnode.views.common import json_response, model_or_404, read_json
from opensearch_contract.errors import IllegalArgument, OpenSearchError, ParsingError

log = logging.getLogger(__name__)

WANTED_STATES = ("DEPLOYING", "DEPLOYED", "PARTIALLY_DEPLOYED")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def open_store(settings: MLSettings) -> Store:
    """The local data dir's store, or with ``registry`` set the shared registry's; a registry node takes the stable
    random node id kept in its data dir as its node name (ML Commons reports node ids in profile, stats, tasks)."""
    if not settings.registry:
        return Store(settings.data_dir)
    settings.node_name = settings.registry_node_id or node_id(settings.data_dir)
    return RegistryStore(settings.data_dir, settings.registry, prefix=settings.registry_index_prefix,
                         verify_certs=settings.registry_verify_certs, ca_certs=settings.registry_ca_certs)


def wanted_on(doc: dict[str, Any], node: str) -> bool:
    if doc.get("model_state") not in WANTED_STATES:
        return False
    return bool(doc.get("deploy_to_all_nodes")) or node in (doc.get("planning_worker_nodes") or [])


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OpenSearchError):
        return exc.reason
    if is_user_error(exc) or isinstance(exc, KeyError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


class Cluster:
    def __init__(self, *, store: RegistryStore, settings: MLSettings, deployments: Deployments,
                 runner: TaskRunner) -> None:
        self.store = store
        self.settings = settings
        self.deployments = deployments
        self.runner = runner
        self.node = settings.node_name
        self.interval = settings.registry_sync_interval
        self.timeout_ms = int(settings.registry_node_timeout * 1000)
        self.failed: dict[str, dict[str, str]] = {}  # model id -> {"attempt": task id or "redeploy", "error"}
        self._previous: dict[str, str] = {}  # deploy tasks created here -> the model's state before
        self.nodes: dict[str, dict[str, Any]] = {}
        self.started = now_ms()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        # this node's profile and stats as the others show them (set by the app: mlnode.views.node.snapshot)
        self.snapshot: Callable[[], dict[str, Any]] = dict

    # ---- lifecycle ----------------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Before the node answers: fail what this node left unfinished, deploy what is wanted here, start syncing."""
        await self._fail_tasks_of({self.node}, "The ML node restarted before the task finished")
        await self.sync_once()
        self._tasks = [asyncio.create_task(self._loop(), name="mlnode-registry-sync"),
                       asyncio.create_task(self._heartbeats(), name="mlnode-registry-heartbeat")]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        try:
            await asyncio.to_thread(self.store.put_node, self.node, {**self._node_doc(), "stopped": True})
        except Exception as exc:  # the registry may be gone first; its heartbeat then ages out
            log.warning("could not tell the registry this node stops: %s", exc)
        await asyncio.to_thread(self.store.close)

    def wake(self) -> None:
        self._wake.set()

    async def _loop(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self.interval)
            except TimeoutError:
                pass
            self._wake.clear()
            try:
                await self.sync_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the registry unreachable a moment: deployed models keep serving
                log.warning("registry sync failed: %s", _reason(exc))

    async def _heartbeats(self) -> None:
        """The node document on its own beat: a sync that deploys a big model must not make the node look gone."""
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.heartbeat()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("registry heartbeat failed: %s", _reason(exc))

    async def heartbeat(self) -> None:
        await asyncio.to_thread(self.store.put_node, self.node, self._node_doc())
        self.nodes = await asyncio.to_thread(self.store.nodes)

    async def sync_once(self) -> None:
        self.store.apply(await asyncio.to_thread(self.store.pull))
        await self._reconcile()
        await self.heartbeat()
        await self._coordinate()

    def _node_doc(self) -> dict[str, Any]:
        return {"node_id": self.node, "heartbeat": now_ms(), "started": self.started,
                "deployed": sorted(self.deployments.ids()), "failed": self.failed, "snapshot": self.snapshot()}

    def peer_snapshots(self) -> dict[str, dict[str, Any]]:
        """The other live nodes' profile and stats as of their last heartbeat (``profile`` / ``stats`` on any node
        answer for every node, as ML Commons' do)."""
        live = set(self.live_nodes())
        return {node: doc.get("snapshot") or {} for node, doc in self.nodes.items()
                if node in live and node != self.node}

    def live_nodes(self) -> list[str]:
        now = now_ms()
        return sorted(n for n, doc in self.nodes.items()
                      if not doc.get("stopped") and now - int(doc.get("heartbeat", 0)) <= self.timeout_ms)

    # ---- this node ----------------------------------------------------------------------------------------------

    def _active_deploy_task(self, model_id: str) -> str | None:
        for task_id, task in self.store.all("tasks"):
            if (task.get("task_type") == "DEPLOY_MODEL" and task.get("model_id") == model_id
                    and task.get("state") in ACTIVE_TASK_STATES and self.node in (task.get("worker_node") or [])):
                return task_id
        return None

    async def _reconcile(self) -> None:
        models = dict(self.store.all("models"))
        for model_id, doc in models.items():
            if not wanted_on(doc, self.node):
                if self.deployments.get(model_id) is not None:
                    log.info("undeploying model %s: the registry no longer wants it here", model_id)
                    await self.deployments.remove(model_id)
                continue
            if self.deployments.get(model_id) is not None:
                continue
            attempt = self._active_deploy_task(model_id) or "redeploy"
            if self.failed.get(model_id, {}).get("attempt") == attempt:
                continue
            try:
                await self._deploy_here(model_id, doc)
                self.failed.pop(model_id, None)
            except Exception as exc:
                log.error("deploying model %s on this node failed: %s", model_id, _reason(exc))
                self.failed[model_id] = {"attempt": attempt, "error": _reason(exc)}
        for model_id in self.deployments.ids():
            if model_id not in models:
                await self.deployments.remove(model_id)
        for model_id in await asyncio.to_thread(self.store.local_copies):
            if model_id not in models:
                await asyncio.to_thread(self.store.forget_local, model_id)

    async def _deploy_here(self, model_id: str, doc: dict[str, Any]) -> None:
        # the runner's per-model lock: a register with ?deploy=true deploys through the runner on this node
        lock = self.runner._deploy_locks.setdefault(model_id, asyncio.Lock())
        async with lock:
            if self.deployments.get(model_id) is not None:
                return
            self.runner.check_deploy_limits(model_id)
            path = await asyncio.to_thread(self.store.ensure_local, model_id, doc, self.settings.max_zip_bytes)
            runtime_doc = {**doc, "function_name": doc.get("algorithm"), "model_id": model_id}
            runtime = await asyncio.to_thread(self.runner.backends.load_runtime, path, runtime_doc)
            self.deployments.add(model_id, runtime)
            log.info("deployed model %s on this node", model_id)

    # ---- every node: tasks and model states --------------------------------------------------------------------

    async def _coordinate(self) -> None:
        live = set(self.live_nodes())
        now = now_ms()
        stale = {n for n, doc in self.nodes.items() if n not in live and n != self.node}
        for task_id, task in self.store.all("tasks"):
            if task.get("state") not in ACTIVE_TASK_STATES:
                continue
            workers = list(task.get("worker_node") or [])
            if task.get("task_type") == "DEPLOY_MODEL" and task.get("model_id"):
                await self._finish_deploy_task(task_id, task, workers, live, now)
            elif workers and all(w in stale for w in workers):
                await self._fail_task(task_id, task, f"The ML node {workers} running the task stopped")
        for model_id, doc in self.store.all("models"):
            if doc.get("model_state") in WANTED_STATES and self._active_deploy_task_any(model_id) is None:
                await self._settle_model(model_id, doc, live)

    def _active_deploy_task_any(self, model_id: str) -> str | None:
        for task_id, task in self.store.all("tasks"):
            if (task.get("task_type") == "DEPLOY_MODEL" and task.get("model_id") == model_id
                    and task.get("state") in ACTIVE_TASK_STATES):
                return task_id
        return None

    async def _finish_deploy_task(self, task_id: str, task: dict[str, Any], workers: list[str], live: set[str],
                                  now: int) -> None:
        model_id = str(task["model_id"])
        done: list[str] = []
        errors: dict[str, str] = {}
        for worker in workers:
            node_doc = self.nodes.get(worker)
            failure = (node_doc or {}).get("failed", {}).get(model_id, {})
            if node_doc is not None and model_id in node_doc.get("deployed", []):
                done.append(worker)
            elif failure.get("attempt") == task_id:
                errors[worker] = failure.get("error", "deploy failed")
            elif worker not in live and (node_doc is not None or now - int(task.get("create_time", now)) >
                                         self.timeout_ms):
                errors[worker] = "The ML node left before it deployed the model"
        if len(done) + len(errors) < len(workers):
            return
        mine = task_id in self._previous
        if not mine and now - int(task.get("last_update_time", now)) <= self.timeout_ms:
            return  # the node that created it finishes it; the others only if it is gone
        previous = self._previous.pop(task_id, "DEPLOY_FAILED")
        if self.store.get("models", model_id) is None:
            state = "FAILED"
            errors = errors or {self.node: f"Model [{model_id}] was deleted while it was being deployed"}
        else:
            state = "COMPLETED" if not errors else ("COMPLETED_WITH_ERROR" if done else "FAILED")
        fields: dict[str, Any] = {"state": state, "last_update_time": now_ms()}
        if errors:
            # one worker: its message, as a single ML node reports it; several: ML Commons' {node id: error} map
            fields["error"] = next(iter(errors.values())) if len(workers) == 1 else json.dumps(errors)
        doc = self.store.get("models", model_id)
        if doc is not None and not done and doc.get("model_state") in WANTED_STATES:
            # nothing serves it: back to the state it had (a single ML node does the same), else DEPLOY_FAILED
            await self.store.update("models", model_id, model_state=previous, current_worker_node_count=0,
                                    planning_worker_nodes=[], planning_worker_node_count=0,
                                    last_updated_time=now_ms())
        elif doc is not None and doc.get("model_state") in WANTED_STATES:
            await self._settle_model(model_id, doc, live)  # DEPLOYED when the task says COMPLETED, not a beat later
        await self.store.update("tasks", task_id, **fields)

    async def _settle_model(self, model_id: str, doc: dict[str, Any], live: set[str]) -> None:
        planned = sorted(live) if doc.get("deploy_to_all_nodes") else list(doc.get("planning_worker_nodes") or [])
        serving = sorted(n for n in live if model_id in self.nodes.get(n, {}).get("deployed", []))
        if not serving:
            failed = [n for n in planned if n in live and model_id in self.nodes.get(n, {}).get("failed", {})]
            if planned and len(failed) == len([n for n in planned if n in live]) and failed:
                # every live node it is planned on failed to deploy it (e.g. at restart): DEPLOY_FAILED, as ML Commons
                await self.store.update("models", model_id, model_state="DEPLOY_FAILED", current_worker_node_count=0,
                                        last_updated_time=now_ms())
            return  # else every node that had it is gone: keep the wish, a node that comes back deploys it again
        state = "DEPLOYED" if set(planned) <= set(serving) else "PARTIALLY_DEPLOYED"
        fields = {"model_state": state, "planning_worker_nodes": planned, "planning_worker_node_count": len(planned),
                  "current_worker_node_count": len(serving)}
        if any(doc.get(k) != v for k, v in fields.items()):
            changed = {**fields, "last_updated_time": now_ms()}
            if doc.get("model_state") != "DEPLOYED" and state == "DEPLOYED":
                changed["last_deployed_time"] = changed["last_updated_time"]
            await self.store.update("models", model_id, **changed)

    async def _fail_tasks_of(self, nodes: set[str], message: str) -> None:
        for task_id, task in self.store.all("tasks"):
            workers = task.get("worker_node") or []
            if task.get("state") in ACTIVE_TASK_STATES and workers and set(workers) <= nodes:
                await self._fail_task(task_id, task, message)

    async def _fail_task(self, task_id: str, task: dict[str, Any], message: str) -> None:
        """Fail a task its node can no longer finish; a registration's half-made model goes with it."""
        model_id = task.get("model_id")
        if task.get("task_type") == "REGISTER_MODEL" and model_id:
            doc = self.store.get("models", model_id)
            if doc is not None and doc.get("model_state") == "REGISTERING":
                await self.store.delete("models", model_id)
                await asyncio.to_thread(self.store.remove_model_files, model_id)
        try:
            await self.store.update("tasks", task_id, state="FAILED", error=message, last_update_time=now_ms())
        except KeyError:
            pass

    # ---- REST: deploy and undeploy across nodes -----------------------------------------------------------------

    async def deploy(self, model_id: str, node_ids: list[str] | None) -> str:
        doc = self.store.get("models", model_id) or {}
        self.nodes = await asyncio.to_thread(self.store.nodes)
        live = self.live_nodes()
        if node_ids is not None:
            unknown = [n for n in node_ids if n not in live]
            if unknown:
                raise IllegalArgument(f"Unknown or stopped ML node ids {unknown}; the registry's live ML nodes: "
                                      f"{live}")
        targets = sorted(set(node_ids)) if node_ids else live
        if not targets:
            raise IllegalArgument("No eligible node found to execute this request. It's best practice to provision "
                                  "ML nodes to serve your models.")
        self.runner.check_task_limit("DEPLOY_MODEL")
        task_id = new_id()
        previous = str(doc.get("model_state", "REGISTERED"))
        self._previous[task_id] = "REGISTERED" if previous == "DEPLOYING" else previous
        now = now_ms()
        await self.store.put("tasks", task_id, {
            "task_type": "DEPLOY_MODEL", "function_name": doc.get("algorithm"), "model_id": model_id,
            "state": "CREATED", "worker_node": targets, "create_time": now, "last_update_time": now,
            "is_async": True})
        if node_ids and doc.get("model_state") in WANTED_STATES and not doc.get("deploy_to_all_nodes"):
            targets = sorted(set(targets) | set(doc.get("planning_worker_nodes") or []))
        await self.store.update("models", model_id, model_state="DEPLOYING", planning_worker_nodes=targets,
                                planning_worker_node_count=len(targets), deploy_to_all_nodes=node_ids is None,
                                last_updated_time=now)
        self.wake()
        return task_id

    async def undeploy(self, model_ids: list[str], node_ids: list[str] | None) -> dict[str, Any]:
        self.nodes = await asyncio.to_thread(self.store.nodes)
        live = self.live_nodes()
        out: dict[str, Any] = {}
        for model_id in model_ids:
            doc = await self.store.refresh_doc("models", model_id)
            if doc is None:
                continue
            serving = {n for n in live if n != self.node and model_id in self.nodes.get(n, {}).get("deployed", [])}
            if self.deployments.get(model_id) is not None:
                serving.add(self.node)
            holders = sorted(n for n in serving if node_ids is None or n in node_ids)
            if doc.get("model_state") not in WANTED_STATES and not holders:
                continue
            planned = live if doc.get("deploy_to_all_nodes") else list(doc.get("planning_worker_nodes") or [])
            remaining = [n for n in planned if node_ids is not None and n not in node_ids]
            now = now_ms()
            if remaining:
                await self.store.update("models", model_id, planning_worker_nodes=remaining,
                                        planning_worker_node_count=len(remaining), deploy_to_all_nodes=False,
                                        last_updated_time=now)
            else:
                await self.store.update("models", model_id, model_state="UNDEPLOYED", planning_worker_nodes=[],
                                        planning_worker_node_count=0, current_worker_node_count=0,
                                        deploy_to_all_nodes=False, last_undeployed_time=now, last_updated_time=now)
            for node in holders or [self.node]:
                out.setdefault(node, {"stats": {}})["stats"][model_id] = "UNDEPLOYED"
            if self.node in (holders or [self.node]):
                await self.deployments.remove(model_id)
                self.failed.pop(model_id, None)
        await self.heartbeat()  # what this node serves now, at once
        self.wake()
        return out


# ---- views -------------------------------------------------------------------------------------------------------


def _node_ids(body: dict[str, Any]) -> list[str] | None:
    value = body.get("node_ids")
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(n, str) for n in value):
        raise ParsingError("[node_ids] must be an array of strings")
    return value


async def deploy_view(request: web.Request) -> web.Response:
    model_id = request.match_info["model_id"]
    doc = model_or_404(request, model_id)
    node_ids = _node_ids(await read_json(request, required=False))
    state = doc.get("model_state")
    if state not in DEPLOYABLE_STATES and state != "DEPLOYING":
        raise IllegalArgument(
            f"Model [{model_id}] can't be deployed in state [{state}]; wait for its registration to complete"
        )
    task_id = await request.app[keys.CLUSTER].deploy(model_id, node_ids)
    return json_response({"task_id": task_id, "task_type": "DEPLOY_MODEL", "status": "CREATED"})


async def undeploy_view(request: web.Request) -> web.Response:
    model_id = request.match_info["model_id"]
    model_or_404(request, model_id)
    node_ids = _node_ids(await read_json(request, required=False))
    return json_response(await request.app[keys.CLUSTER].undeploy([model_id], node_ids))


async def undeploy_many_view(request: web.Request) -> web.Response:
    body = await read_json(request, required=False)
    node_ids = _node_ids(body)
    model_ids = body.get("model_ids")
    if model_ids is None:
        model_ids = [m for m, doc in request.app[keys.STORE].all("models") if doc.get("model_state") in WANTED_STATES]
    elif not isinstance(model_ids, list) or not all(isinstance(m, str) for m in model_ids):
        raise ParsingError("[model_ids] must be an array of strings")
    return json_response(await request.app[keys.CLUSTER].undeploy(model_ids, node_ids))


_REPLACED: dict[Handler, Handler] = {
    model_views.deploy: deploy_view,
    model_views.undeploy: undeploy_view,
    model_views.undeploy_many: undeploy_many_view,
}
_ID_KINDS = {"model_id": "models", "task_id": "tasks", "model_group_id": "model_groups"}


def _fresh(handler: Handler) -> Handler:
    """Read the addressed document from the registry first, so a request that reaches another node than the one
    that wrote it a moment ago sees the write (a predict only on a miss: its model rarely changes)."""

    async def view(request: web.Request) -> web.StreamResponse:
        store = request.app[keys.STORE]
        for name, kind in _ID_KINDS.items():
            doc_id = request.match_info.get(name)
            if doc_id is None:
                continue
            if "_predict" not in request.path or store.get(kind, doc_id) is None:
                await store.refresh_doc(kind, doc_id)
        return await handler(request)

    return view


def registry_routes(routes: list[web.RouteDef]) -> list[web.RouteDef]:
    """ML Commons' routes for a node of a shared registry: deploy and undeploy act on every node, and requests
    addressed to one document read it from the registry first."""
    return [web.RouteDef(r.method, r.path, _fresh(_REPLACED.get(r.handler, r.handler)), r.kwargs) for r in routes]
