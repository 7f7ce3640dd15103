"""Issue 11, "must show": property-based requests over every route of both nodes, on loopback, against a real
``neuralpipe serve --roles ml,data`` with a real model (all-MiniLM-L6-v2, int8 ONNX) deployed and a real index.

Issue 11's own reported inputs go first (``test_issue_11_inputs``, with the reads that showed their damage). Then per
route, hypothesis generates (derandomized, so CI draws the same requests every run): the route's valid body
with one value mutated (wrong types, 1e309, 5,000-digit integers, NaN, lone surrogates as JSON escapes, 1,500 levels
of nesting, empty and 100,000-character strings, unknown keys), malformed JSON / NDJSON bytes, wrong methods, odd path
parameters (``..``, ``%00``, unicode, 5,000 characters) and odd query strings. Each answer must be below 500 and
every error body in OpenSearch's shape (``error.type``, ``error.reason``, ``status`` = the HTTP status); bulk items
and msearch responses must not hold a 5xx either. The last test checks that the sentinel model predicts the same
vectors bit for bit and the sentinel index answers the same hits, scores and documents, and prints the number of
requests sent. Bad answers are collected (no shrinking: every request costs a round trip) and reported per route with
the request and, for a 500, the code site from the node's log. ``FUZZ_REPORT=<file>`` also writes them as JSON lines.

Bounded: ``EXAMPLES`` requests and ``FUZZ_SECONDS`` of generating and sending, spread over the routes by weight (on
this shared 2-core machine the module takes 70-90 s with its three node startups; a route whose time runs out stops
early, so under heavy load a run may send a few requests fewer). Every error body in OpenSearch's shape means the
object form, or the short string form OpenSearch's RestController itself answers for 400 "no handler found", 405
and 406. ``FUZZ_PROTOCOL_ERRORS_SHAPED=1`` also checks the shape of errors aiohttp's HTTP parser answers before any
handler runs (plain text today).
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from datanode.app import create_app as create_data_app
from mlnode.app import create_app as create_ml_app
from mlnode.settings import MLSettings
from neuralpipe.node import NodeSpec, build_app
from tests.fuzz import strategies as fs
from tests.fuzz.node import INDEX_BODY, ML, ROOT, SENTINEL_DOCS, VICTIM_INDEX, Answer, Client, FuzzNode
from tests.fuzz.routes import NAMED, ROUTES, SEEDS, SINGLE_ROLE_ROUTES, Route

# hypothesis warns when it renders an example of 100 kB (our long strings) for a report it never prints
pytestmark = [pytest.mark.integration, pytest.mark.slow,
              pytest.mark.filterwarnings("ignore:Generating overly large repr:hypothesis.errors.HypothesisWarning")]

MIN_PER_ROUTE = 4  # requests every route gets, whatever the time budget
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "1100"))  # requests over all routes, split by each route's budget
FUZZ_SECONDS = float(os.environ.get("FUZZ_SECONDS", "50"))  # generating and sending, over all routes, split alike
REQUEST_TIMEOUT = 30.0
WRONG_METHODS = ["GET", "PUT", "POST", "DELETE", "HEAD", "PATCH", "OPTIONS", "TRACE"]
MAX_REQUEST_LINE = 8000  # aiohttp's parser refuses longer request lines itself (see test_protocol_errors)
NDJSON = {"Content-Type": "application/x-ndjson"}
JSON = {"Content-Type": "application/json"}
TOTAL_WEIGHT = sum(r.budget for r in ROUTES)

BAD: dict[str, list[dict[str, Any]]] = {}  # route label -> bad answers
SENT: dict[str, int] = {}  # route label -> requests sent
STATUSES: dict[str, dict[int, int]] = {}  # route label -> status -> answers (0: no answer)


def _examples(route: Route) -> int:
    return max(8, EXAMPLES * route.budget // TOTAL_WEIGHT)


def _seconds(route: Route) -> float:
    return max(0.4, FUZZ_SECONDS * route.budget / TOTAL_WEIGHT)


class RouteDone(Exception):
    """Ends a route's hypothesis run once its quota of requests is sent or its time is up."""


def substitute(value: Any, ids: dict[str, str]) -> Any:
    """Templates name fixture ids as "@key" (also inside comma lists)."""
    if isinstance(value, str):
        return re.sub(r"@(\w+)", lambda m: ids.get(m.group(1), m.group(0)), value)
    if isinstance(value, list):
        return [substitute(v, ids) for v in value]
    if isinstance(value, dict):
        return {k: substitute(v, ids) for k, v in value.items()}
    return value


# ---- what a good answer looks like ---------------------------------------------------------------------------------


def problems(method: str, path: str, answer: Answer) -> list[str]:
    """Why an answer is bad: a 5xx, an error body not in OpenSearch's shape, a 5xx inside a bulk / msearch answer."""
    found = []
    if answer.status >= 500:
        found.append(f"status {answer.status}")
    if method == "HEAD":
        return found
    body: Any = None
    if answer.status >= 400 or answer.headers.get("content-type", "").startswith("application/json"):
        try:
            body = json.loads(answer.body) if answer.body else None
        except ValueError:
            body = None
    if answer.status >= 400:
        if not _error_shaped(body, answer.status) and not _opensearch_not_found(path, answer.status, body):
            found.append(f"error body not in OpenSearch's shape: {answer.body[:160]!r}")
    elif isinstance(body, dict):
        nested = [item.get(next(iter(item)), {}).get("status", 0) for item in body.get("items", [])
                  if isinstance(item, dict) and item]
        nested += [r.get("status", 0) for r in body.get("responses", []) if isinstance(r, dict)]
        if any(isinstance(s, int) and s >= 500 for s in nested):
            found.append(f"a 5xx inside a {answer.status} answer: {answer.body[:300]!r}")
    return found


def _error_shaped(body: Any, status: int) -> bool:
    """``{"error": {"type", "reason", ...}, "status"}``, or the short form OpenSearch's RestController answers before
    any handler: ``{"error": "Incorrect HTTP method for uri [...] ...", "status": 405}``, an unsupported content type
    (406), ``{"error": "no handler found for uri [...] and method [...]", "status": 400}``."""
    if not isinstance(body, dict) or body.get("status") != status:
        return False
    error = body.get("error")
    if isinstance(error, str):
        return status in (405, 406) and bool(error) or status == 400 and error.startswith(
            ("no handler found for uri", "invalid uri has been requested"))
    return isinstance(error, dict) and isinstance(error.get("type"), str) and isinstance(error.get("reason"), str)


def _opensearch_not_found(path: str, status: int, body: Any) -> bool:
    """404 bodies OpenSearch answers without an error object: a missing document (``found: false``), a delete of a
    missing document or model group (``result: not_found``), a missing ingest pipeline (``{}``)."""
    if status != 404 or not isinstance(body, dict):
        return False
    return body.get("found") is False or body.get("result") == "not_found" or (
        body == {} and path.startswith("/_ingest/pipeline"))


# ---- sending and recording -----------------------------------------------------------------------------------------


class Recorder:
    """Sends generated requests for one route, keeps the bad answers with the node's traceback for a 500."""

    def __init__(self, fuzz_node: FuzzNode, route: Route) -> None:
        self.node = fuzz_node.node
        self.client: Client = fuzz_node.node.client(REQUEST_TIMEOUT)
        self.route = route
        self.started = time.monotonic()
        self.bad = BAD.setdefault(route.label, [])
        self.sent = 0
        self.last_status = 0
        self.quota = _examples(route)
        self.seconds = _seconds(route)
        self.seen: set[int] = set()

    def done(self) -> bool:
        """The route's quota sent, or its time share spent once a few requests went (a loaded machine may spend a
        short share before hypothesis draws the first one)."""
        timed_out = self.sent >= MIN_PER_ROUTE and time.monotonic() - self.started > self.seconds
        return self.sent >= self.quota or timed_out

    def is_new(self, request: tuple[str, str, bytes | None, dict[str, str]]) -> bool:
        """Hypothesis explores by mutating earlier examples, so it draws some requests twice: send each once."""
        key = hash((request[0], request[1], request[2]))
        if key in self.seen:
            return False
        self.seen.add(key)
        return True

    def send(self, method: str, path: str, body: bytes | None, headers: dict[str, str]) -> None:
        log_at = self.node.log_size()
        self.sent += 1
        try:
            answer = self.client.request(method, path, body, headers)
        except (TimeoutError, OSError) as exc:  # socket.timeout is a TimeoutError
            self.client.close()
            self._keep(method, path, body, headers, 0, f"no answer: {exc!r}", log_at)
            self.last_status = 0
            return
        self.last_status = answer.status
        found = problems(method, path, answer)
        if found:
            self._keep(method, path, body, headers, answer.status, "; ".join(found), log_at, answer.body)

    def _keep(self, method: str, path: str, body: bytes | None, headers: dict[str, str], status: int, why: str,
              log_at: int, answer: bytes = b"") -> None:
        time.sleep(0.05)  # let the node finish writing the traceback
        self.bad.append({
            "route": self.route.label, "method": method, "path": path[:300] + ("..." if len(path) > 300 else ""),
            "path_len": len(path), "headers": headers, "body": (body or b"")[:400].decode("utf-8", "replace"),
            "body_len": len(body or b""), "status": status, "why": why,
            "answer": answer[:300].decode("utf-8", "replace"),
            "site": code_site(self.node.log_text(log_at)),
        })

    def close(self) -> None:
        SENT[self.route.label] = SENT.get(self.route.label, 0) + self.sent
        self.client.close()
        if os.environ.get("FUZZ_REPORT"):
            with open(os.environ["FUZZ_REPORT"], "a", encoding="utf-8") as report:
                for item in self.bad:
                    report.write(json.dumps(item) + "\n")


def code_site(log: str) -> str:
    """The last frame in the project's code and the exception of the last traceback in a log excerpt."""
    if "Traceback" not in log:
        lines = [line for line in log.splitlines() if " ERROR " in line]
        return lines[-1][:300] if lines else ""
    block = log[log.rindex("Traceback"):]
    frames = re.findall(r'File "([^"]+)", line (\d+), in (\S+)', block)
    ours = [f for f in frames if "site-packages" not in f[0] and str(ROOT) in f[0] or "/neuralpipe/" in f[0]
            and "site-packages" not in f[0]]
    frame = (ours or frames or [("?", "?", "?")])[-1]
    exc_lines = [line for line in block.splitlines() if re.match(r"^[A-Za-z_.]+(Error|Exception|Exit)\b", line)]
    where = f"{Path(frame[0]).relative_to(ROOT) if frame[0].startswith(str(ROOT)) else frame[0]}:{frame[1]} " \
            f"({frame[2]})"
    return f"{where}: {(exc_lines[-1] if exc_lines else '')[:200]}"


# ---- generating requests -------------------------------------------------------------------------------------------


def path_params(route: Route) -> list[str]:
    return re.findall(r"{(\w+)}", route.path)


@st.composite
def request_for(draw: st.DrawFn, route: Route, ids: dict[str, str]) -> tuple[str, str, bytes | None, dict[str, str]]:
    wrong_method = draw(st.sampled_from([False] * 5 + [True]))
    method = draw(st.sampled_from([m for m in WRONG_METHODS if m != route.method])) if wrong_method else route.method
    changes = route.changes or wrong_method  # another method on the same path may reach a route that changes things
    path = route.path
    for name in path_params(route):
        readonly_names, changing_names = NAMED[name]
        named = [substitute(n, ids) for n in (changing_names if changes else readonly_names)]
        if name in ("algorithm", "chunk_number", "kind", "stat", "node_id"):
            named = [substitute(n, ids) for n in readonly_names]
        path = path.replace("{" + name + "}", draw(fs.segment(named, destructive=changes)), 1)
    query = draw(fs.query_string())
    path += query if len(path) + len(query) < MAX_REQUEST_LINE else ""
    headers = dict(JSON)
    body: bytes | None
    form = draw(st.sampled_from(["valid-shape"] * 6 + ["malformed", "fragment", "none"]))
    if route.ndjson:
        headers = dict(NDJSON)
        pairs = [(substitute(h, ids), substitute(b, ids)) for h, b in route.ndjson]
        body = draw(fs.ndjson(pairs))
        if form == "malformed":
            body = draw(fs.malformed_bytes(body.decode("utf-8", "surrogatepass")))
        elif form == "fragment":
            body = draw(fs.json_fragment).encode("utf-8", "surrogatepass")
    elif route.raw:
        body = draw(st.one_of(st.binary(max_size=256), st.just(b""), st.just(b"PK\x03\x04" + b"\0" * 100)))
    else:
        templates = [substitute(t, ids) for t in route.bodies] or [{}]
        template = draw(st.sampled_from(templates))
        if form == "none" or (not route.bodies and form == "valid-shape"):
            body = None
        elif form == "fragment":
            body = draw(fs.json_fragment).encode("utf-8", "surrogatepass")
        else:
            text = draw(fs.mutated_json(template))
            body = text.encode("utf-8", "surrogatepass")
            if form == "malformed":
                body = draw(fs.malformed_bytes(text))
    if route.path == f"{ML}/models/_undeploy" or route.path == f"{ML}/models/_unload":
        # no body, or one without model_ids, undeploys every model (ML Commons' meaning): not a fuzz case here
        body = _keep_model_ids(body, ids)
    return method, path, body, headers


def _keep_model_ids(body: bytes | None, ids: dict[str, str]) -> bytes:
    if not (body or b"").strip():  # an empty or blank body means every model
        return json.dumps({"model_ids": [ids["victim_model"]]}).encode()
    try:
        parsed = json.loads(body or b"")
    except (ValueError, RecursionError):
        return body or b"{"  # the node cannot parse it either
    if isinstance(parsed, dict) and parsed.get("model_ids") is not None:
        return body or b""
    return json.dumps({"model_ids": [ids["victim_model"]], "fz": parsed if not isinstance(parsed, dict) else 1},
                      allow_nan=True).encode()


def run_route(fuzz_node: FuzzNode, route: Route) -> Recorder:
    recorder = Recorder(fuzz_node, route)

    @settings(max_examples=2 * _examples(route), deadline=None, derandomize=True, database=None,
              phases=[Phase.generate], suppress_health_check=list(HealthCheck), print_blob=False)
    @given(request=request_for(route, fuzz_node.ids))
    def fuzz(request: tuple[str, str, bytes | None, dict[str, str]]) -> None:
        if recorder.done():
            raise RouteDone  # stops generating: hypothesis replays this example once, which raises again
        if not recorder.is_new(request):
            return
        recorder.send(*request)
        STATUSES.setdefault(route.label, {}).setdefault(recorder.last_status, 0)
        STATUSES[route.label][recorder.last_status] += 1

    try:
        fuzz()
    except RouteDone:
        pass
    finally:
        recorder.close()
    return recorder


def describe(bad: list[dict[str, Any]]) -> str:
    by_site: dict[str, dict[str, Any]] = {}
    for item in bad:  # one example per (why, site), the shortest request
        key = f"{item['why'][:60]} @ {item['site']}"
        if key not in by_site or item["body_len"] + item["path_len"] < by_site[key]["body_len"] + by_site[key][
                "path_len"]:
            by_site[key] = item
    return "\n".join(f"- {item['method']} {item['path'][:160]} body[{item['body_len']}]={item['body'][:160]!r} -> "
                     f"{item['status']} {item['why'][:200]} | {item['site']}" for item in by_site.values())


# ---- the tests -----------------------------------------------------------------------------------------------------


def test_every_route_is_fuzzed(tmp_path: Path) -> None:
    """The table covers every (method, path) the combined node and a lone ML node answer (HEAD comes with GET)."""
    spec = NodeSpec(("ml", "data"), tmp_path, MLSettings.load(data_dir=tmp_path / "ml"))
    served: set[str] = set()

    def walk(app: Any) -> None:
        for route in app.router.routes():
            info = route.resource.get_info() if route.resource is not None else {}
            if "app" in info:
                walk(info["app"])
            elif route.method != "HEAD":
                served.add(f"{route.method} {info.get('formatter') or info.get('path')}")

    walk(build_app(spec, own_url="http://127.0.0.1:9"))
    walk(create_data_app(tmp_path / "data"))
    fuzzed = {r.label for r in ROUTES if r.method != "HEAD"}
    assert served - fuzzed == set(), "routes without a fuzz entry"
    assert fuzzed - served == set(), "fuzz entries for routes that do not exist"
    served.clear()
    walk(create_ml_app(MLSettings.load(data_dir=tmp_path / "ml-only")))
    assert served - fuzzed == set(), "ML node routes without a fuzz entry"
    for role, routes in SINGLE_ROLE_ROUTES.items():
        assert {r.label for r in routes} - {"HEAD /"} <= fuzzed, role


@pytest.mark.parametrize("case", list(SEEDS))
def test_issue_11_inputs(fuzz_node: FuzzNode, case: str) -> None:
    """The inputs issue 11 reports, and the reads that showed their damage: no 5xx, errors in OpenSearch's shape."""
    ensure_victim(fuzz_node.client)
    recorder = Recorder(fuzz_node, Route("SEED", case, True))
    try:
        for method, path, body in SEEDS[case]:
            headers = NDJSON if path.endswith(("/_bulk", "/_msearch")) else JSON
            raw = body if isinstance(body, bytes) else body.encode("utf-8")
            recorder.send(method, substitute(path, fuzz_node.ids), raw or None, headers if raw else {})
    finally:
        recorder.close()
    assert fuzz_node.node.alive()
    assert not recorder.bad, f"{len(recorder.bad)} of {recorder.sent} answers bad ({case}):\n{describe(recorder.bad)}"


def ensure_victim(client: Client) -> None:
    """(Re)create the victim index the generated requests may have deleted."""
    if client.request("HEAD", f"/{VICTIM_INDEX}", None, {}).status == 200:
        return
    client.json("PUT", f"/{VICTIM_INDEX}", INDEX_BODY)
    lines = []
    for doc_id, doc in SENTINEL_DOCS.items():
        lines += [json.dumps({"index": {"_index": VICTIM_INDEX, "_id": doc_id}}), json.dumps(doc)]
    client.request("POST", "/_bulk?refresh=true", ("\n".join(lines) + "\n").encode(), NDJSON)


@pytest.mark.parametrize("route", ROUTES, ids=[r.label for r in ROUTES])
def test_route_never_answers_5xx_or_unshaped_errors(fuzz_node: FuzzNode, route: Route) -> None:
    ensure_victim(fuzz_node.client)
    recorder = run_route(fuzz_node, route)
    assert fuzz_node.node.alive(), f"the node died during {route.label}:\n{fuzz_node.node.log_text()[-3000:]}"
    assert recorder.sent > 0
    assert not recorder.bad, f"{len(recorder.bad)} of {recorder.sent} answers bad on {route.label}:\n" \
                             f"{describe(recorder.bad)}"


@pytest.mark.parametrize("single_role_node", list(SINGLE_ROLE_ROUTES), indirect=True)
def test_single_role_node_routes(single_role_node: FuzzNode) -> None:
    """``--roles ml`` and ``--roles data`` alone: their own ``/``, ``/health``, ``/metrics`` handlers."""
    bad: list[dict[str, Any]] = []
    for route in SINGLE_ROLE_ROUTES[single_role_node.node.roles]:
        bad += run_route(single_role_node, route).bad
        assert single_role_node.node.alive()
    assert not bad, f"{len(bad)} answers bad (--roles {single_role_node.node.roles}):\n{describe(bad)}"


# Requests the HTTP parser refuses before any handler runs: aiohttp answers 400 in plain text (fuzz-findings F7).
# Lead: set True (or FUZZ_PROTOCOL_ERRORS_SHAPED=1) once the node answers them in OpenSearch's shape.
PROTOCOL_ERRORS_SHAPED = os.environ.get("FUZZ_PROTOCOL_ERRORS_SHAPED") == "1"


def test_protocol_errors(fuzz_node: FuzzNode) -> None:
    """An unknown method token, a request line or a path over 8,190 bytes: a 4xx, never a 5xx or a dead node."""
    cases = [("FZ", "/fz-victim"), ("GET", "/_search?search_pipeline=" + "9" * 9000), ("GET", "/" + "x" * 9000),
             ("BREW", f"{ML}/models/_search")]
    client = fuzz_node.node.client(REQUEST_TIMEOUT)
    try:
        for method, path in cases:
            answer = client.request(method, path, None, {})
            SENT["protocol"] = SENT.get("protocol", 0) + 1
            assert 400 <= answer.status < 500, (method, path[:60], answer.status)
            if PROTOCOL_ERRORS_SHAPED:
                assert _error_shaped(json.loads(answer.body), answer.status), answer.body[:200]
    finally:
        client.close()
    assert fuzz_node.node.alive()


# Both nodes require a JSON Content-Type on a body, as OpenSearch does (406).
@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x"])
def test_body_without_json_content_type_is_refused(fuzz_node: FuzzNode, content_type: str | None) -> None:
    """A body sent without a JSON content type (what a browser form can send cross-site) gets 406 and changes
    nothing: the index is not created, the document not written, the pipeline not stored."""
    headers = {} if content_type is None else {"Content-Type": content_type}
    requests = [("PUT", "/fz-ct-index", b'{"settings": {"number_of_shards": 1}}'),
                ("PUT", "/fz-victim/_doc/ct1", b'{"title": "form"}'),
                ("PUT", "/_ingest/pipeline/fz-ct", b'{"processors": []}'),
                ("POST", "/_bulk", b'{"index": {"_index": "fz-victim", "_id": "ct2"}}\n{"a": 1}\n'),
                ("POST", f"{ML}/model_groups/_register", b'{"name": "fz-ct-group"}'),
                ("POST", f"{ML}/_predict/text_embedding/{fuzz_node.ids['sentinel_model']}", b'{"text_docs": ["a"]}')]
    client = fuzz_node.node.client(REQUEST_TIMEOUT)
    try:
        for method, path, body in requests:
            answer = client.request(method, path, body, headers)
            assert answer.status == 406, (method, path, answer.status, answer.body[:200])
            assert json.loads(answer.body)["status"] == 406
        assert client.request("HEAD", "/fz-ct-index", None, {}).status == 404
        assert client.request("GET", "/fz-victim/_doc/ct1", None, {}).status == 404
        assert client.request("GET", "/fz-victim/_doc/ct2", None, {}).status == 404
        assert client.request("GET", "/_ingest/pipeline/fz-ct", None, {}).status == 404
    finally:
        client.close()


def test_sentinels_intact_after_the_fuzz(fuzz_node: FuzzNode, capsys: pytest.CaptureFixture[str]) -> None:
    """Runs last in this module: the sentinel model's vectors, the sentinel index's hits, scores and documents are
    what they were before the generated requests."""
    client = fuzz_node.client
    client.json("PUT", "/_cluster/settings", {"persistent": {"plugins.ml_commons.monitoring_request_count": None},
                                              "transient": {"plugins.ml_commons.ml_task_timeout_in_seconds": None,
                                                            "plugins.ml_commons.max_register_model_tasks_per_node":
                                                                None}})
    changes = fuzz_node.sentinels.changes(client)
    total = sum(SENT.values())
    seeds = sum(n for label, n in SENT.items() if label.startswith("SEED "))
    with capsys.disabled():
        print(f"\nfuzz: {total} requests sent ({total - seeds} generated over {len(SENT) - len(SEEDS)} routes, "
              f"{seeds} issue-11 inputs); {sum(len(v) for v in BAD.values())} bad answers on "
              f"{sum(1 for v in BAD.values() if v)} routes")
    if os.environ.get("FUZZ_REPORT"):
        with open(os.environ["FUZZ_REPORT"] + ".statuses.json", "w", encoding="utf-8") as out:
            json.dump(STATUSES, out, indent=1, sort_keys=True)
    assert total > 0
    assert changes == [], "the sentinels changed:\n" + "\n".join(changes)
