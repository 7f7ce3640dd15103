"""The ML node's routes: ML Commons' REST paths under /_plugins/_ml, plus node-level routes.

Fixed paths (``_search``, ``_register``...) are registered before ``{id}`` paths so they win the match.
Old ML Commons names that opensearch-py(-ml) still call (``_upload``, ``_load``, ``_unload``, ``meta``, ``chunk``)
route to the same views.
"""

from __future__ import annotations

from aiohttp import web

from mlnode.views import groups, models, node, predict, tasks

ML = "/_plugins/_ml"


def ml_routes() -> list[web.RouteDef]:
    return [
        # model groups
        web.post(f"{ML}/model_groups/_register", groups.register),
        web.get(f"{ML}/model_groups/_search", groups.search),
        web.post(f"{ML}/model_groups/_search", groups.search),
        web.get(f"{ML}/model_groups/{{model_group_id}}", groups.get),
        web.put(f"{ML}/model_groups/{{model_group_id}}", groups.update),
        web.delete(f"{ML}/model_groups/{{model_group_id}}", groups.delete),
        # models
        web.post(f"{ML}/models/_register", models.register),
        web.post(f"{ML}/models/_upload", models.register),
        web.post(f"{ML}/models/_register_meta", models.register_meta),
        web.post(f"{ML}/models/meta", models.register_meta),
        web.get(f"{ML}/models/_search", models.search),
        web.post(f"{ML}/models/_search", models.search),
        web.post(f"{ML}/models/_undeploy", models.undeploy_many),
        web.post(f"{ML}/models/_unload", models.undeploy_many),
        web.post(f"{ML}/models/{{model_id}}/upload_chunk/{{chunk_number}}", models.upload_chunk),
        web.post(f"{ML}/models/{{model_id}}/chunk/{{chunk_number}}", models.upload_chunk),
        web.post(f"{ML}/models/{{model_id}}/_deploy", models.deploy),
        web.post(f"{ML}/models/{{model_id}}/_load", models.deploy),
        web.post(f"{ML}/models/{{model_id}}/_undeploy", models.undeploy),
        web.post(f"{ML}/models/{{model_id}}/_unload", models.undeploy),
        web.post(f"{ML}/models/{{model_id}}/_predict", predict.predict),
        web.get(f"{ML}/models/{{model_id}}", models.get),
        web.put(f"{ML}/models/{{model_id}}", models.update),
        web.delete(f"{ML}/models/{{model_id}}", models.delete),
        # predict
        web.post(f"{ML}/_predict/{{algorithm}}/{{model_id}}", predict.predict),
        # tasks
        web.get(f"{ML}/tasks/_search", tasks.search),
        web.post(f"{ML}/tasks/_search", tasks.search),
        web.get(f"{ML}/tasks/{{task_id}}", tasks.get),
        web.delete(f"{ML}/tasks/{{task_id}}", tasks.delete),
        # profile and stats
        web.get(f"{ML}/profile", node.profile),
        web.get(f"{ML}/profile/{{kind:models|tasks}}", node.profile),
        web.get(f"{ML}/profile/{{kind:models|tasks}}/{{ids}}", node.profile),
        web.get(f"{ML}/stats", node.stats),
        web.get(f"{ML}/stats/", node.stats),
        web.get(f"{ML}/stats/{{stat}}", node.stats),
        web.get(f"{ML}/{{node_id}}/stats", node.stats),
        web.get(f"{ML}/{{node_id}}/stats/", node.stats),
        web.get(f"{ML}/{{node_id}}/stats/{{stat}}", node.stats),
        # OpenSearch cluster settings: only plugins.ml_commons.* mean something here
        web.get("/_cluster/settings", node.get_cluster_settings),
        web.put("/_cluster/settings", node.put_cluster_settings),
        # neuralpipe extras
        web.get(f"{ML}/health", node.health),
        web.get(f"{ML}/metrics", node.metrics),
    ]


def root_routes() -> list[web.RouteDef]:
    """Routes a node answers once per process; left out when another role (the data node) answers them."""
    return [
        web.get("/", node.root),
        web.get("/health", node.health),
        web.get("/metrics", node.metrics),
    ]
