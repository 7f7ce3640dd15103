"""Typed application state of the ML node (aiohttp AppKeys), defined in one place."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from mlnode.batching import Deployments
    from mlnode.cluster import Cluster
    from mlnode.metrics import Metrics
    from mlnode.settings import MLSettings
    from mlnode.store import Store
    from mlnode.tasks import TaskRunner

SETTINGS: web.AppKey[MLSettings] = web.AppKey("mlnode_settings")
STORE: web.AppKey[Store] = web.AppKey("mlnode_store")
METRICS: web.AppKey[Metrics] = web.AppKey("mlnode_metrics")
DEPLOYMENTS: web.AppKey[Deployments] = web.AppKey("mlnode_deployments")
TASKS: web.AppKey[TaskRunner] = web.AppKey("mlnode_tasks")
READY: web.AppKey[dict] = web.AppKey("mlnode_ready")
CLUSTER: web.AppKey[Cluster] = web.AppKey("mlnode_cluster")  # set when the node shares a registry
OWNS_ROOT: web.AppKey[bool] = web.AppKey("mlnode_owns_root")  # True when this node answers GET /, /health, /metrics
