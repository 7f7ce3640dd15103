"""Client-side scenarios, run against every backend, and the agreement of their results.

Each scenario runs the CLI as a user does (``neuralpipe ingest|search ... --opensearch URL --ml-url URL --pipeline
pipelines/...``) or opensearch-py directly, asserts what a user checks (document count, mapping types, the top
hit, error type and status), and returns its facts. ``test_backends_agree`` then checks, for every pair of
backends that both serve a scenario, that the facts are the same (harness.Fact).

Backends: the embedded data node and osmem-server always; a real OpenSearch when NEURALPIPE_TEST_OPENSEARCH_URL
is set. A scenario a backend cannot serve (osmem-server: knn) is skipped with the reason.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
import yaml
from opensearchpy.exceptions import NotFoundError, RequestError, TransportError

from tests.conformance.harness import (
    DOCS,
    ENV_URL,
    INGEST_PIPELINES,
    KNN,
    N_DOCS,
    PIPELINES,
    ROOT,
    SEARCH_PIPELINES,
    Backend,
    CliResult,
    ErrorFact,
    Fact,
    LexicalRanking,
    Same,
    Suite,
    mapping_types,
    ranking,
    real_cluster_from_env,
    run_cli,
    write_corpus,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REAL = pytest.param("opensearch", marks=pytest.mark.skipif(
    real_cluster_from_env() is None, reason=f"no real OpenSearch: set {ENV_URL} (make test-opensearch)"))
BACKENDS = ["embedded", "osmem", REAL]
# the embedded data node is the reference every other backend is compared with
PAIRS = [pytest.param(("embedded", "osmem"), id="embedded-vs-osmem"),
         pytest.param(("embedded", "opensearch"), id="embedded-vs-opensearch", marks=REAL.marks)]

DENSE_DIM = 384  # all-MiniLM-L6-v2, the dense model of every shipped pipeline
ALL = N_DOCS + 5  # --size for BM25 scenarios: every matching document, compared as a set

# (backend, scenario) -> a difference from OpenSearch that a fix elsewhere will remove; strict, so the fix shows
KNOWN_DIFFERENCES: dict[tuple[str, str], str] = {}

Scenario = Callable[[Suite, Backend], dict[str, Fact]]
SCENARIOS: dict[str, Scenario] = {}


def scenario(key: str) -> Callable[[Scenario], Scenario]:
    def register(fn: Scenario) -> Scenario:
        SCENARIOS[key] = fn
        return fn
    return register


# ---- helpers ---------------------------------------------------------------------------------------------------


def ingest(suite: Suite, backend: Backend, key: str, index: str, *args: str, corpus: Path | None = None
           ) -> CliResult:
    return run_cli("ingest", str(corpus or suite.corpus), "--index", index, "--ml-url", suite.ml.url,
                   *backend.cli_args(), "--state-dir", str(suite.state_dir(backend, key)), "--no-progress",
                   "--json", *args, env=backend.cli_env())


def search_cli(suite: Suite, backend: Backend, index: str, *args: str, size: int = 10) -> CliResult:
    return run_cli("search", "--index", index, "--ml-url", suite.ml.url, *backend.cli_args(), "--json",
                   "--size", str(size), *args, env=backend.cli_env())


def search(suite: Suite, backend: Backend, index: str, *args: str, size: int = 10) -> dict[str, Any]:
    result = search_cli(suite, backend, index, *args, size=size)
    assert result.returncode == 0, result.stderr
    return result.json()


def body_file(suite: Suite, name: str, body: dict[str, Any]) -> str:
    path = suite.tmp / f"{name}.json"
    path.write_text(json.dumps(body), encoding="utf-8")
    return str(path)


def ids(response: dict[str, Any]) -> list[str]:
    return [hit["_id"] for hit in response["hits"]["hits"]]


def ingested(suite: Suite, backend: Backend, stem: str) -> str:
    """The index filled through pipelines/ingest/<stem>.yaml (its scenario runs first if it has not yet)."""
    suite.outcome(backend, f"pipeline:ingest/{stem}.yaml", lambda: ingest_pipeline_file(suite, backend, stem))
    return backend.index(stem)


def knn_refused(suite: Suite, backend: Backend, index: str, *args: str) -> None:
    """On a backend without k-NN: run the search anyway, check the backend refuses the rewritten knn query (the
    pipeline file was read, its models resolved, the query rewritten and sent), then skip with the reason."""
    if KNN not in backend.unsupported:
        return
    result = search_cli(suite, backend, index, *args)
    assert result.returncode == 1 and "unsupported_operation_exception" in result.stderr, result
    backend.require(KNN)


def expected_types(body: dict[str, Any]) -> dict[str, str]:
    """The field types a user expects from a pipeline: text for sources, knn_vector / rank_features for targets;
    a target computed from chunks is a nested list of objects holding ``knn`` / ``sparse_encoding``."""
    chunks: set[str] = set()
    out: dict[str, str] = {}
    for processor in body["processors"]:
        for ptype, conf in processor.items():
            for src, dst in conf.get("field_map", {}).items():
                out.setdefault(src, "text")
                if ptype == "text_chunking":
                    chunks.add(dst)
                    out[dst] = "text"
                    continue
                leaf, inner = {"text_embedding": (f"knn_vector({DENSE_DIM})", "knn"),
                               "sparse_encoding": ("rank_features", "sparse_encoding")}[ptype]
                if src in chunks:
                    out[dst], out[f"{dst}.{inner}"] = "nested", leaf
                else:
                    out[dst] = leaf
    return out


def check_stored(value: Any, ftype: str) -> None:
    """A stored document holds what the mapping promises: 384 floats, positive token weights, passages."""
    if ftype.startswith("knn_vector"):
        assert isinstance(value, list) and len(value) == DENSE_DIM and all(isinstance(x, float) for x in value)
    elif ftype == "rank_features":
        assert isinstance(value, dict) and value and all(w > 0 for w in value.values())


def error_of(exc: TransportError) -> ErrorFact:
    return ErrorFact(str(exc.error), int(exc.status_code))


# ---- ingest: every shipped ingest pipeline ---------------------------------------------------------------------


def ingest_pipeline_file(suite: Suite, backend: Backend, stem: str) -> dict[str, Fact]:
    path = PIPELINES / "ingest" / f"{stem}.yaml"
    index = backend.index(stem)
    result = ingest(suite, backend, f"ingest-{stem}", index, "--pipeline", str(path))
    assert result.returncode == 0, result.stderr
    summary = result.json()
    assert (summary["indexed"], summary["failed_total"]) == (N_DOCS, 0), summary
    with backend.client() as client:
        count = client.count(index=index)["count"]
        types = mapping_types(client.indices.get_mapping(index=index)[index]["mappings"]["properties"])
        doc = client.get(index=index, id="printing")["_source"]
    assert count == N_DOCS
    expected = expected_types(yaml.safe_load((ROOT / path).read_text()))
    assert {f: types.get(f) for f in expected} == expected
    for name, ftype in expected.items():
        if "." in name:  # a nested list's leaf: the long document has several passages, each with its own value
            outer, leaf = name.split(".")
            assert len(doc[outer]) > 1
            for passage in doc[outer]:
                check_stored(passage[leaf], ftype)
        elif ftype != "nested":
            check_stored(doc[name], ftype)
    return {"count": Same(count), "mapping": Same(types), "stored fields": Same(sorted(doc))}


for _stem in (name.removesuffix(".yaml") for name in INGEST_PIPELINES):
    scenario(f"pipeline:ingest/{_stem}.yaml")(lambda suite, backend, stem=_stem: ingest_pipeline_file(
        suite, backend, stem))


# ---- search: the CLI's four query kinds ------------------------------------------------------------------------


@scenario("search:neural")
def _neural(suite: Suite, backend: Backend) -> dict[str, Fact]:
    backend.require(KNN)
    response = search(suite, backend, ingested(suite, backend, "dense-sparse"), "--neural", "an animal that purrs")
    assert ids(response)[0] == "cat"
    return {"hits": ranking(response)}


@scenario("search:neural_sparse")
def _neural_sparse(suite: Suite, backend: Backend) -> dict[str, Fact]:
    # the model recorded by ingest (the SPLADE document encoder) encodes the query too: bi-encoder mode
    response = search(suite, backend, ingested(suite, backend, "dense-sparse"), "--sparse", "volcano magma eruption")
    assert ids(response)[0] == "volcano"
    return {"hits": ranking(response)}


@scenario("search:match")
def _match(suite: Suite, backend: Backend) -> dict[str, Fact]:
    response = search(suite, backend, ingested(suite, backend, "dense-sparse"), "--match", "pets that sleep in the day",
                      size=ALL)
    assert ids(response)[0] == "cat" and len(ids(response)) > 5
    return {"hits": ranking(response, LexicalRanking)}


@scenario("search:hybrid")
def _hybrid(suite: Suite, backend: Backend) -> dict[str, Fact]:
    backend.require(KNN)  # match + neural + neural_sparse
    response = search(suite, backend, ingested(suite, backend, "dense-sparse"), "--hybrid",
                      "programming language memory safety", size=ALL)
    assert ids(response)[0] == "rust" and len(ids(response)) > 5
    return {"hits": ranking(response, LexicalRanking)}


@scenario("search:chunked-neural")
def _chunked_neural(suite: Suite, backend: Backend) -> dict[str, Fact]:
    backend.require(KNN)  # a nested knn query over the passages
    response = search(suite, backend, ingested(suite, backend, "chunked"), "--neural", "Gutenberg's printing press")
    assert ids(response)[0] == "printing"
    return {"hits": ranking(response)}


@scenario("search:chunked-match")
def _chunked_match(suite: Suite, backend: Backend) -> dict[str, Fact]:
    response = search(suite, backend, ingested(suite, backend, "chunked"), "--match", "printing press and ink",
                      size=ALL)
    assert ids(response)[0] == "printing" and len(ids(response)) > 5
    return {"hits": ranking(response, LexicalRanking)}


# ---- search: every shipped search pipeline ---------------------------------------------------------------------


def with_pipeline(suite: Suite, backend: Backend, index: str, name: str, body: dict[str, Any], size: int = 10
                  ) -> dict[str, Any]:
    return search(suite, backend, index, "--body", body_file(suite, f"{backend.name}-{name}", body),
                  "--search-pipeline", str(PIPELINES / "search" / name), size=size)


def neural_body(text: str, field: str = "text_embedding") -> dict[str, Any]:
    return {"neural": {field: {"query_text": text, "k": 10}}}  # no model_id: the pipeline's default


def sparse_body(text: str) -> dict[str, Any]:
    return {"neural_sparse": {"text_sparse": {"query_text": text}}}  # no model_id: the pipeline's field default


@scenario("pipeline:search/dense.yaml")
def _search_dense(suite: Suite, backend: Backend) -> dict[str, Fact]:
    index = ingested(suite, backend, "dense")
    body = {"query": neural_body("baking bread in an oven")}
    knn_refused(suite, backend, index, "--body", body_file(suite, f"{backend.name}-dense", body),
                "--search-pipeline", str(PIPELINES / "search" / "dense.yaml"))
    response = with_pipeline(suite, backend, index, "dense.yaml", body)
    assert ids(response)[0] == "bread"
    return {"hits": ranking(response)}


@scenario("pipeline:search/sparse.yaml")
def _search_sparse(suite: Suite, backend: Backend) -> dict[str, Fact]:
    response = with_pipeline(suite, backend, ingested(suite, backend, "sparse"), "sparse.yaml",
                             {"query": sparse_body("volcano magma and the hot rock below")})
    assert ids(response)[0] == "volcano"
    return {"hits": ranking(response)}


@scenario("pipeline:search/dense-sparse.yaml")
def _search_dense_sparse(suite: Suite, backend: Backend) -> dict[str, Fact]:
    # the per-field default: text_sparse -> the tokenizer model
    response = with_pipeline(suite, backend, ingested(suite, backend, "dense-sparse"), "dense-sparse.yaml",
                             {"query": sparse_body("the immune system fights a virus")})
    assert ids(response)[0] == "vaccine"
    return {"hits": ranking(response)}


@scenario("pipeline:search/dense-sparse.yaml:neural")
def _search_dense_sparse_neural(suite: Suite, backend: Backend) -> dict[str, Fact]:
    backend.require(KNN)  # (this file runs on every backend in the scenario above)
    index = ingested(suite, backend, "dense-sparse")
    body = {"query": neural_body("a game of kings and strategy")}
    response = with_pipeline(suite, backend, index, "dense-sparse.yaml", body)
    assert ids(response)[0] == "chess"
    return {"hits": ranking(response)}


HYBRID_TEXT = "a cat sleeps most of the day"


@scenario("pipeline:search/hybrid.yaml")
def _search_hybrid(suite: Suite, backend: Backend) -> dict[str, Fact]:
    body = {"query": {"hybrid": {"queries": [{"match": {"text": {"query": HYBRID_TEXT}}}, sparse_body(HYBRID_TEXT)]}}}
    response = with_pipeline(suite, backend, ingested(suite, backend, "dense-sparse"), "hybrid.yaml", body, size=ALL)
    assert ids(response)[0] == "cat"
    assert response["hits"]["hits"][0]["_score"] == pytest.approx(1.0)  # min_max: best in both sub-queries
    return {"hits": ranking(response, LexicalRanking)}


@scenario("pipeline:search/hybrid.yaml:neural")
def _search_hybrid_neural(suite: Suite, backend: Backend) -> dict[str, Fact]:
    backend.require(KNN)  # (this file runs on every backend in the scenario above)
    index = ingested(suite, backend, "dense-sparse")
    body = {"query": {"hybrid": {"queries": [neural_body(HYBRID_TEXT), sparse_body(HYBRID_TEXT)]}}}
    response = with_pipeline(suite, backend, index, "hybrid.yaml", body)
    assert ids(response)[0] == "cat"
    return {"hits": ranking(response)}  # knn + rank_feature only: scores compared


@scenario("pipeline:search/hybrid-rrf.yaml")
def _search_hybrid_rrf(suite: Suite, backend: Backend) -> dict[str, Fact]:
    body = {"query": {"hybrid": {"queries": [{"match": {"text": {"query": HYBRID_TEXT}}}, sparse_body(HYBRID_TEXT)]}}}
    response = with_pipeline(suite, backend, ingested(suite, backend, "dense-sparse"), "hybrid-rrf.yaml", body,
                             size=ALL)
    assert ids(response)[0] == "cat"
    assert response["hits"]["hits"][0]["_score"] == pytest.approx(2 / 61, rel=1e-4)  # rank 1 in both: 2 x 1/(60+1)
    return {"hits": ranking(response, LexicalRanking)}


# ---- opensearch-py: the rewritten queries equal hand-built ones ------------------------------------------------


def predict(suite: Suite, algorithm: str, model: str, text: str) -> dict[str, Any]:
    resp = requests.post(f"{suite.ml.url}/_plugins/_ml/_predict/{algorithm}/{suite.ml.model_ids[model]}",
                         json={"text_docs": [text]}, timeout=120)
    assert resp.status_code == 200, resp.text
    return resp.json()["inference_results"][0]["output"][0]


@scenario("opensearch-py:rank_feature")
def _hand_rank_feature(suite: Suite, backend: Backend) -> dict[str, Fact]:
    """The tokenizer's weights as plain rank_feature clauses (linear, boost = query weight), sent with opensearch-py,
    rank exactly as `neuralpipe search --sparse` does."""
    index = ingested(suite, backend, "dense-sparse")
    text = "brew hot coffee beans"
    weights = predict(suite, "sparse_tokenize", "tokenizer", text)["dataAsMap"]["response"][0]
    should = [{"rank_feature": {"field": f"text_sparse.{token}", "boost": weight, "linear": {}}}
              for token, weight in weights.items() if "." not in token]
    with backend.client() as client:
        by_hand = client.search(index=index, body={"size": 10, "query": {"bool": {"should": should}}})
    cli = search(suite, backend, index, "--sparse", text, "--sparse-model-id", "neuralpipe/splade-tiny-tokenizer")
    assert ids(by_hand)[0] == "coffee"
    assert ranking(by_hand).disagreement(ranking(cli)) is None
    return {"hits": ranking(by_hand)}


@scenario("opensearch-py:knn")
def _hand_knn(suite: Suite, backend: Backend) -> dict[str, Fact]:
    """A knn query with the model's vector, sent with opensearch-py: the top score is cosinesimil's (1 + cos) / 2
    of the stored vector, and the ranking is `neuralpipe search --neural`'s."""
    backend.require(KNN)
    index = ingested(suite, backend, "dense-sparse")
    text = "a bird that talks"
    vector = predict(suite, "text_embedding", "dense", text)["data"]
    with backend.client() as client:
        by_hand = client.search(index=index, body={"size": 10, "query": {"knn": {"text_embedding": {
            "vector": vector, "k": 10}}}})
        stored = client.get(index=index, id=ids(by_hand)[0])["_source"]["text_embedding"]
    q, d = np.asarray(vector, dtype=np.float64), np.asarray(stored, dtype=np.float64)
    cosine = float(q @ d / np.linalg.norm(q) / np.linalg.norm(d))
    assert ids(by_hand)[0] == "parrot"
    assert by_hand["hits"]["hits"][0]["_score"] == pytest.approx((1 + cosine) / 2, rel=1e-5)
    cli = search(suite, backend, index, "--neural", text)
    assert ranking(by_hand).disagreement(ranking(cli)) is None
    return {"hits": ranking(by_hand)}


@scenario("capability:knn")
def _capability_knn(suite: Suite, backend: Backend) -> dict[str, Fact]:
    """Keeps the skip reasons true: a backend said to lack k-NN refuses a knn query; the others answer it."""
    index = ingested(suite, backend, "dense")
    body = {"query": {"knn": {"text_embedding": {"vector": [0.05] * DENSE_DIM, "k": 3}}}}
    with backend.client() as client:
        if KNN in backend.unsupported:
            with pytest.raises(RequestError) as refused:
                client.search(index=index, body=body)
            assert refused.value.error == "unsupported_operation_exception"
            return {}
        assert len(client.search(index=index, body=body)["hits"]["hits"]) == 3
    return {}


# ---- resume, dead letters, errors ------------------------------------------------------------------------------


@scenario("ingest:resume")
def _resume(suite: Suite, backend: Backend) -> dict[str, Fact]:
    """A run stopped after 7 documents (--limit: a deterministic stop; tests/e2e kills a real run through a
    pipeline) and run again: the second run skips what the checkpoint holds, and nothing is written twice (every
    _version is 1). No pipeline: the checkpoint is about what the cluster acknowledged."""
    index = backend.index("resume")
    first = ingest(suite, backend, "resume", index, "--limit", "7", "--bulk-size", "3")
    assert first.returncode == 0, first.stderr
    assert first.json()["indexed"] == 7
    second = ingest(suite, backend, "resume", index, "--bulk-size", "3")
    assert second.returncode == 0, second.stderr
    summary = second.json()
    assert (summary["skipped_already_done"], summary["indexed"]) == (7, N_DOCS - 7)
    with backend.client() as client:
        count = client.count(index=index)["count"]
        docs = client.mget(index=index, body={"ids": [doc_id for doc_id, _ in DOCS]})["docs"]
    assert count == N_DOCS
    versions = sorted({doc["_version"] for doc in docs})
    assert versions == [1]
    return {"count": Same(count), "versions": Same(versions)}


@scenario("ingest:dead-letters")
def _dead_letters(suite: Suite, backend: Backend) -> dict[str, Fact]:
    """Lines the cluster refuses go to the dead-letter file with their line number, stage and OpenSearch error."""
    index = backend.index("typed")
    with backend.client() as client:
        client.indices.create(index=index, body={"mappings": {"properties": {
            "text": {"type": "text"}, "year": {"type": "integer"}, "tags": {"type": "rank_features"}}}})
    lines = [
        {"_id": "a", "text": "first", "year": 2001, "tags": {"news": 1.5}},
        {"_id": "b", "text": "second", "year": "not a year"},        # line 2: integer field
        '{"_id": "c", "text": "broken',                              # line 3: not JSON
        {"_id": "d", "text": "fourth", "tags": "not an object"},    # line 4: rank_features field
        {"_id": "e", "text": "fifth", "tags": {"sport": -2.0}},     # line 5: negative feature weight
        {"_id": "f", "text": "sixth", "year": 2006},
    ]
    corpus = suite.tmp / f"{backend.name}-typed.jsonl"
    corpus.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines), encoding="utf-8")
    dead_letter = suite.state_dir(backend, "dead-letters") / "dead.jsonl"
    result = ingest(suite, backend, "dead-letters", index, "--dead-letter", str(dead_letter), corpus=corpus)
    assert result.returncode == 1, result.stderr  # some documents failed
    summary = result.json()
    assert (summary["indexed"], summary["failed"]) == (2, {"parse": 1, "pipeline": 0, "bulk": 3}), summary
    dead = [json.loads(line) for line in dead_letter.read_text().splitlines()]
    failures = sorted((d["line"], d["stage"], d["error"]["type"], d["status"]) for d in dead)
    assert failures == [(2, "bulk", "mapper_parsing_exception", 400), (3, "parse", "parse_exception", 400),
                        (4, "bulk", "mapper_parsing_exception", 400), (5, "bulk", "mapper_parsing_exception", 400)]
    assert {d["id"]: d["document"]["text"] for d in dead if d["stage"] == "bulk"} == {
        "b": "second", "d": "fourth", "e": "fifth"}
    with backend.client() as client:
        client.indices.refresh(index=index)
        count = client.count(index=index)["count"]
    assert count == 2
    return {"count": Same(count), "dead letters": Same(failures)}


@scenario("error:mapping-conflict")
def _mapping_conflict(suite: Suite, backend: Backend) -> dict[str, Fact]:
    """The index exists with a 768-d knn_vector (made for another model): every 384-d document is refused."""
    index = backend.index("conflict")
    with backend.client() as client:
        client.indices.create(index=index, body={"settings": {"index.knn": True}, "mappings": {"properties": {
            "text": {"type": "text"}, "text_embedding": {"type": "knn_vector", "dimension": 768}}}})
    corpus = write_corpus(suite.tmp / f"{backend.name}-conflict.jsonl", DOCS[:3])
    dead_letter = suite.state_dir(backend, "conflict") / "dead.jsonl"
    result = ingest(suite, backend, "conflict", index, "--pipeline", str(PIPELINES / "ingest" / "dense.yaml"),
                    "--dead-letter", str(dead_letter), corpus=corpus)
    assert result.returncode == 1, result.stderr
    dead = [json.loads(line) for line in dead_letter.read_text().splitlines()]
    assert [d["line"] for d in dead] == [1, 2, 3]
    errors = {(d["stage"], d["error"]["type"]) for d in dead}
    assert errors == {("bulk", "mapper_parsing_exception")}
    assert all("dimension" in d["error"]["reason"].lower() or "knn_vector" in d["error"]["reason"] for d in dead)
    with backend.client() as client:
        with pytest.raises(RequestError) as refused:  # the same through opensearch-py
            client.index(index=index, id="x", body={"text": "x", "text_embedding": [0.1] * DENSE_DIM})
        with pytest.raises(RequestError) as change:  # and a mapping cannot change a field's type
            client.indices.put_mapping(index=index, body={"properties": {"text": {"type": "integer"}}})
        count = client.count(index=index)["count"]
    assert count == 0
    assert change.value.error == "illegal_argument_exception"
    return {"bulk error": Same(sorted(errors)), "index error": error_of(refused.value),
            "mapping change": error_of(change.value), "count": Same(count)}


@scenario("error:missing-index")
def _missing_index(suite: Suite, backend: Backend) -> dict[str, Fact]:
    missing = backend.index("no-such-index")
    result = search_cli(suite, backend, missing, "--match", "anything")
    assert result.returncode == 1
    assert result.stderr.strip() == (f"neuralpipe search: no such index [{missing}] "
                                      "(index_not_found_exception, status 404)")
    with backend.client() as client:
        with pytest.raises(NotFoundError) as search_missing:
            client.search(index=missing, body={"query": {"match_all": {}}})
        with pytest.raises(NotFoundError) as count_missing:
            client.count(index=missing)
    return {"search": error_of(search_missing.value), "count": error_of(count_missing.value)}


@scenario("error:index-exists")
def _index_exists(suite: Suite, backend: Backend) -> dict[str, Fact]:
    index = ingested(suite, backend, "dense")
    with backend.client() as client:
        with pytest.raises(RequestError) as exists:
            client.indices.create(index=index)
    assert exists.value.error == "resource_already_exists_exception"
    return {"create": error_of(exists.value)}


@scenario("sparse-query-on-a-text-field")
def _sparse_on_text(suite: Suite, backend: Backend) -> dict[str, Fact]:
    """neural_sparse aimed at a text field: its rewrite asks for rank_feature on "text.<token>", a path that is no
    feature of a rank_features field. OpenSearch answers no hits (RankFeatureQueryBuilder.doToQuery: an unmapped
    field whose parent is not rank_features gives a MatchNoDocsQuery), it does not fail the search."""
    index = ingested(suite, backend, "dense")
    result = search_cli(suite, backend, index, "--sparse", "volcano", "--sparse-field", "text",
                        "--sparse-model-id", "neuralpipe/splade-tiny-tokenizer")
    assert result.returncode == 0, result.stderr
    hits = result.json()["hits"]
    assert (hits["total"]["value"], hits["hits"]) == (0, [])
    return {"total": Same(hits["total"]["value"])}


# ---- the tests -------------------------------------------------------------------------------------------------


def expect_difference(request: pytest.FixtureRequest, backend: str, key: str) -> None:
    if (backend, key) in KNOWN_DIFFERENCES:
        request.applymarker(pytest.mark.xfail(strict=True, reason=KNOWN_DIFFERENCES[backend, key]))


@pytest.mark.parametrize("backend", BACKENDS, indirect=True)
@pytest.mark.parametrize("key", list(SCENARIOS))
def test_scenario(key: str, backend: Backend, suite: Suite, request: pytest.FixtureRequest) -> None:
    expect_difference(request, backend.name, key)
    suite.outcome(backend, key, lambda: SCENARIOS[key](suite, backend))


@pytest.mark.parametrize("pair", PAIRS)
@pytest.mark.parametrize("key", [key for key in SCENARIOS if not key.startswith("capability:")])
def test_backends_agree(key: str, pair: tuple[str, str], suite: Suite, request: pytest.FixtureRequest) -> None:
    """Where both backends serve a scenario, every fact is the same (Ranking: ids, order and float32 scores;
    LexicalRanking, where BM25 takes part: top hit and hit set only; ErrorFact: type and status)."""
    for name in pair:
        expect_difference(request, name, key)
    facts, failures = [], []
    for name in pair:
        backend = request.getfixturevalue(f"backend_{name}")
        try:  # a skip (a backend cannot serve the scenario) is raised as it is
            facts.append(suite.outcome(backend, key, partial(SCENARIOS[key], suite, backend)))
        except Exception as exc:  # noqa: BLE001 - any failure of the scenario: reported, not raised
            failures.append(f"[{key}] failed on {name}, so agreement cannot be shown: {exc}")
    if failures:
        pytest.fail("\n".join(failures), pytrace=False)
    reference, other = facts
    assert set(reference) == set(other)
    diffs = {name: fact.disagreement(other[name]) for name, fact in reference.items()}
    assert {name: diff for name, diff in diffs.items() if diff} == {}


def test_every_shipped_pipeline_has_a_scenario() -> None:
    """A pipeline file added to pipelines/ without a scenario here fails this test."""
    assert INGEST_PIPELINES and SEARCH_PIPELINES
    for kind, names in (("ingest", INGEST_PIPELINES), ("search", SEARCH_PIPELINES)):
        for name in names:
            assert f"pipeline:{kind}/{name}" in SCENARIOS, f"no scenario runs pipelines/{kind}/{name}"
