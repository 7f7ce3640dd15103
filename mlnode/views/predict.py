"""``POST _predict/{algorithm}/{model_id}`` and ``POST models/{model_id}/_predict``.

Truncation is reported additively: texts longer than the model's max length are embedded from their first
``max_length`` tokens (as ML Commons does), and the response carries ``X-Neuralpipe-Truncated: <indices>`` plus
``X-Neuralpipe-Max-Length`` so a client can tell; the JSON body stays exactly ML Commons'. Texts are bounded before
they are tokenized (``mlnode.predict_body.limit_texts``): too many texts, or a too long text for a model that does not
truncate, is a 400 naming the limit.
"""

from __future__ import annotations

import time

from aiohttp import web

from mlnode import keys
from mlnode.predict_body import TextLimits, check_algorithm, limit_texts, parse_predict, shape_results
from mlnode.views.common import client_alive, json_response, model_or_404, read_json
from opensearch_contract.errors import IllegalArgument, OpenSearchError

NOT_DEPLOYED = "Model not ready yet. Please deploy the model first."
TRUNCATED_HEADER = "X-Neuralpipe-Truncated"
MAX_LENGTH_HEADER = "X-Neuralpipe-Max-Length"


async def predict(request: web.Request) -> web.Response:
    algorithm = request.match_info.get("algorithm")
    if algorithm is not None:
        check_algorithm(algorithm)
    model_id = request.match_info["model_id"]
    return await _predict(request, model_id)


async def _predict(request: web.Request, model_id: str) -> web.Response:
    started = time.perf_counter()
    app = request.app
    metrics = app[keys.METRICS]
    doc = model_or_404(request, model_id)
    if doc.get("is_enabled") is False:
        metrics.failures.labels(model_id, "disabled").inc()
        raise OpenSearchError("Model is disabled.", status=403, error_type="status_exception")
    worker = app[keys.DEPLOYMENTS].get(model_id)
    if worker is None:
        metrics.failures.labels(model_id, "not_deployed").inc()
        raise IllegalArgument(NOT_DEPLOYED)
    metrics.requests.labels(model_id).inc()
    function_name = str(doc.get("algorithm") or worker.runtime.function_name).upper()
    settings = app[keys.SETTINGS]
    limits = TextLimits(max_texts=settings.max_predict_texts, max_length=int(worker.runtime.max_length),
                        chars_per_token=settings.max_chars_per_token, truncates=worker.truncates)
    try:
        body = await read_json(request)
        req = parse_predict(function_name, body, doc.get("model_config"))
        cut = limit_texts(req, limits, model_id)
    except OpenSearchError:
        metrics.failures.labels(model_id, "bad_request").inc()
        raise
    headers: dict[str, str] = {}
    if req.texts is not None:
        outcome = await worker.infer(req.texts, req.parameters, client_alive(request))
        results = outcome.results
        truncated = sorted(set(outcome.truncated) | set(cut))
        if truncated:
            headers[TRUNCATED_HEADER] = ",".join(str(i) for i in truncated)
            headers[MAX_LENGTH_HEADER] = str(outcome.max_length)
    else:
        results = await worker.predict(req.body, client_alive(request))
    response = json_response(shape_results(results, req), headers=headers)
    elapsed = time.perf_counter() - started
    window = int(settings.get("monitoring_request_count"))
    worker.predict_stats.window = worker.inference_stats.window = window
    worker.predict_stats.add(elapsed * 1000.0)
    metrics.request_seconds.labels(model_id).observe(elapsed)
    return response
