"""Typed application keys of the data node."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from .metrics import DataNodeMetrics
    from .service import DataNodeService

DATANODE: web.AppKey[DataNodeService] = web.AppKey("datanode", "DataNodeService")  # type: ignore[arg-type]
METRICS: web.AppKey[DataNodeMetrics] = web.AppKey("datanode_metrics", "DataNodeMetrics")  # type: ignore[arg-type]
