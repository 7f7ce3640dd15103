"""What ``neuralpipe eval`` runs: one ingest pipeline (dense + sparse over BEIR's passage) and, per method, a search
body in OpenSearch's query DSL plus the search pipeline body that combines hybrid results."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from neuralpipe.eval.metrics import beir_passage

PASSAGE_FIELD = "passage"
DENSE_FIELD = "passage_embedding"
SPARSE_FIELD = "passage_sparse"

METHODS = ("dense", "sparse", "bm25", "hybrid_minmax", "hybrid_rrf")
METHOD_TITLES = {
    "dense": "dense (neural, knn)",
    "sparse": "sparse (neural_sparse, doc encoder + tokenizer)",
    "bm25": "BM25 (match)",
    "hybrid_minmax": "hybrid bm25+dense, min_max + arithmetic_mean",
    "hybrid_rrf": "hybrid bm25+dense, rrf (rank_constant 60)",
}


@dataclass(frozen=True)
class EvalModels:
    """Model ids (or registered names) used at ingest and at query time."""

    dense: str
    sparse: str
    tokenizer: str


def adapt_ingest_pipeline(body: Mapping[str, Any], models: EvalModels) -> dict[str, Any]:
    """A user's dense + sparse ingest pipeline body, re-pointed at eval's fields: every ``text_embedding`` reads
    ``passage`` into ``passage_embedding`` with the dense model, every ``sparse_encoding`` reads ``passage`` into
    ``passage_sparse`` with the sparse model; their other settings (batch_size, prune_type, ...) are kept.
    Raises ``ValueError`` if the pipeline lacks one of the two or holds another processor type."""
    out: dict[str, Any] = copy.deepcopy(dict(body))  # a JSON pipeline body
    seen: set[str] = set()
    for item in out.get("processors") or []:
        for ptype, config in item.items():
            if ptype == "text_embedding":
                config.update(model_id=models.dense, field_map={PASSAGE_FIELD: DENSE_FIELD})
            elif ptype == "sparse_encoding":
                config.update(model_id=models.sparse, field_map={PASSAGE_FIELD: SPARSE_FIELD})
            else:
                raise ValueError(f"eval runs text_embedding and sparse_encoding processors only, not [{ptype}]")
            config.pop("skip_existing", None)
            seen.add(ptype)
    missing = {"text_embedding", "sparse_encoding"} - seen
    if missing:
        raise ValueError("the ingest pipeline needs a text_embedding and a sparse_encoding processor; "
                         f"missing {sorted(missing)}")
    return out


def eval_document(doc_id: str, doc: Mapping[str, object]) -> dict:
    """What eval indexes for a BEIR document: its id and the passage BEIR scores (``title + " " + text``)."""
    return {"_id": doc_id, PASSAGE_FIELD: beir_passage(doc)}


def search_pipeline_body(method: str) -> dict[str, Any] | None:
    """The ``PUT _search/pipeline`` body a method needs (hybrid only)."""
    processor: dict[str, Any]
    if method == "hybrid_minmax":
        processor = {"normalization-processor": {"normalization": {"technique": "min_max"},
                                                 "combination": {"technique": "arithmetic_mean"}}}
    elif method == "hybrid_rrf":
        processor = {"score-ranker-processor": {"combination": {"technique": "rrf", "rank_constant": 60}}}
    else:
        return None
    return {"description": f"neuralpipe eval {method}", "phase_results_processors": [processor]}


def search_body(method: str, query: str, models: EvalModels, *, k: int = 100) -> dict[str, Any]:
    """The search body for one query: ``neural`` / ``neural_sparse`` / ``match`` / ``hybrid`` of match + neural."""
    neural: dict[str, Any] = {"neural": {DENSE_FIELD: {"query_text": query, "model_id": models.dense, "k": k}}}
    match: dict[str, Any] = {"match": {PASSAGE_FIELD: {"query": query}}}
    clause: dict[str, Any]
    if method == "dense":
        clause = neural
    elif method == "sparse":
        clause = {"neural_sparse": {SPARSE_FIELD: {"query_text": query, "model_id": models.tokenizer}}}
    elif method == "bm25":
        clause = match
    elif method in ("hybrid_minmax", "hybrid_rrf"):
        clause = {"hybrid": {"queries": [match, neural]}}
    else:
        raise ValueError(f"unknown method [{method}], valid: {', '.join(METHODS)}")
    return {"size": k, "_source": False, "query": clause}
