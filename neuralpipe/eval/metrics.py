"""Retrieval evaluation the way BEIR scores it: a BEIR-layout reader, runs, nDCG@k and recall@k.

The metrics follow trec_eval (which BEIR calls through pytrec_eval) exactly:

- a run maps ``query_id -> {doc_id: score}``; trec_eval ranks it by score descending and breaks ties by
  doc id in *descending* string order (``strcmp(b, a)``), so equal scores rank the same here as there;
- ``ndcg_cut.k``: DCG@k = sum over the top k of ``rel / log2(rank + 1)`` (rank from 1, gain = the graded
  qrels value, unjudged or non-positive = 0), divided by the ideal DCG@k of the query's judged positive
  qrels sorted by grade;
- ``recall.k``: relevant documents (grade >= 1) in the top k over all relevant documents of the query;
- BEIR's mean is over the queries of the qrels; a document whose id equals its query's id is dropped from
  that query's ranking (BEIR's ``ignore_identical_ids=True``).

One deliberate difference, stated: pytrec_eval silently leaves out a query for which the run has no
documents; here such a query counts as 0 (a search that answers nothing found nothing). With every
query answered, as in ``neuralpipe eval``, the two agree.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

Qrels = dict[str, dict[str, int]]
Run = dict[str, dict[str, float]]

DEFAULT_KS_NDCG = (10,)
DEFAULT_KS_RECALL = (100,)


class BeirFormatError(ValueError):
    """A BEIR folder that is missing a file or holds a line that cannot be read (names the file and line)."""


@dataclass
class BeirDataset:
    """A BEIR collection: corpus, queries (only those judged in the split, as BEIR's loader keeps) and qrels."""

    corpus: dict[str, dict[str, str]]
    queries: dict[str, str]
    qrels: Qrels
    split: str = "test"
    path: Path | None = None

    def passage(self, doc_id: str) -> str:
        return beir_passage(self.corpus[doc_id])


def beir_passage(doc: Mapping[str, object]) -> str:
    """The text BEIR embeds and indexes for a document: ``(title + " " + text).strip()``, or ``text`` alone."""
    text = str(doc.get("text") or "")
    title = doc.get("title")
    if title:
        return (f"{title} {text}").strip()
    return text.strip()


def _read_jsonl(path: Path) -> Iterator[tuple[int, dict]]:
    with path.open(encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise BeirFormatError(f"{path}:{line_no}: not a JSON object: {exc.msg}") from None
            if not isinstance(obj, dict) or "_id" not in obj:
                raise BeirFormatError(f'{path}:{line_no}: expected a JSON object with "_id"')
            yield line_no, obj


def read_corpus(path: Path) -> dict[str, dict[str, str]]:
    corpus: dict[str, dict[str, str]] = {}
    for _, obj in _read_jsonl(path):
        corpus[str(obj["_id"])] = {"title": str(obj.get("title") or ""), "text": str(obj.get("text") or "")}
    return corpus


def read_queries(path: Path) -> dict[str, str]:
    return {str(obj["_id"]): str(obj.get("text") or "") for _, obj in _read_jsonl(path)}


def read_qrels(path: Path) -> Qrels:
    """``query-id<TAB>corpus-id<TAB>score`` with a header line, as BEIR writes it."""
    qrels: Qrels = {}
    with path.open(encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_MINIMAL)
        for line_no, row in enumerate(reader, start=1):
            if not row or (line_no == 1 and not _is_int(row[-1])):
                continue  # header
            if len(row) < 3:
                raise BeirFormatError(f"{path}:{line_no}: expected query-id, corpus-id, score; got {row!r}")
            qid, did, score = row[0], row[1], row[2]
            if not _is_int(score):
                raise BeirFormatError(f"{path}:{line_no}: score {score!r} is not an integer")
            qrels.setdefault(qid, {})[did] = int(score)
    return qrels


def _is_int(value: str) -> bool:
    try:
        int(value)
    except ValueError:
        return False
    return True


def load_beir(folder: Path | str, split: str = "test") -> BeirDataset:
    """Read ``corpus.jsonl``, ``queries.jsonl`` and ``qrels/<split>.tsv``; keep the queries judged in the split."""
    folder = Path(folder)
    paths = {"corpus": folder / "corpus.jsonl", "queries": folder / "queries.jsonl",
             "qrels": folder / "qrels" / f"{split}.tsv"}
    for name, path in paths.items():
        if not path.is_file():
            hint = ""
            if name == "qrels" and (folder / "qrels").is_dir():
                splits = sorted(p.stem for p in (folder / "qrels").glob("*.tsv"))
                hint = f"; splits present: {splits}"
            raise BeirFormatError(f"{path} not found (a BEIR folder has corpus.jsonl, queries.jsonl, "
                                  f"qrels/<split>.tsv){hint}")
    corpus = read_corpus(paths["corpus"])
    all_queries = read_queries(paths["queries"])
    qrels = read_qrels(paths["qrels"])
    missing = sorted(q for q in qrels if q not in all_queries)
    if missing:
        raise BeirFormatError(f"{paths['qrels']}: query ids not in queries.jsonl: {missing[:10]}")
    queries = {qid: all_queries[qid] for qid in all_queries if qid in qrels}
    return BeirDataset(corpus=corpus, queries=queries, qrels=qrels, split=split, path=folder)


# ---------------------------------------------------------------------------------------------- metrics


def ranked(doc_scores: Mapping[str, float]) -> list[str]:
    """Doc ids in trec_eval's order: score descending, ties by doc id descending."""
    by_id_desc = sorted(doc_scores, reverse=True)
    return sorted(by_id_desc, key=lambda d: doc_scores[d], reverse=True)  # stable sort keeps the tie order


def dcg(gains: Sequence[float]) -> float:
    return sum(g / math.log2(i + 2) for i, g in enumerate(gains) if g > 0)


def ndcg_at_k(judged: Mapping[str, int], ranking: list[str], k: int) -> float:
    ideal = dcg(sorted((g for g in judged.values() if g > 0), reverse=True)[:k])
    if ideal <= 0:
        return 0.0
    return dcg([max(judged.get(d, 0), 0) for d in ranking[:k]]) / ideal


def recall_at_k(judged: Mapping[str, int], ranking: list[str], k: int) -> float:
    relevant = {d for d, g in judged.items() if g >= 1}
    if not relevant:
        return 0.0
    return sum(1 for d in ranking[:k] if d in relevant) / len(relevant)


@dataclass
class Evaluation:
    """Mean metrics (``{"ndcg@10": 0.65, "recall@100": 0.92}``) and the per-query values behind them."""

    means: dict[str, float]
    per_query: dict[str, dict[str, float]] = field(default_factory=dict)


def evaluate(
    qrels: Qrels,
    run: Run,
    *,
    ndcg_ks: tuple[int, ...] = DEFAULT_KS_NDCG,
    recall_ks: tuple[int, ...] = DEFAULT_KS_RECALL,
    ignore_identical_ids: bool = True,
) -> Evaluation:
    """Score ``run`` against ``qrels``; the mean is over the qrels' queries that have a relevant document."""
    per_query: dict[str, dict[str, float]] = {}
    for qid, judged in qrels.items():
        if not any(g >= 1 for g in judged.values()):
            continue
        scores = dict(run.get(qid, {}))
        if ignore_identical_ids:
            scores.pop(qid, None)
        order = ranked(scores)
        values = {f"ndcg@{k}": ndcg_at_k(judged, order, k) for k in ndcg_ks}
        values.update({f"recall@{k}": recall_at_k(judged, order, k) for k in recall_ks})
        per_query[qid] = values
    names = [f"ndcg@{k}" for k in ndcg_ks] + [f"recall@{k}" for k in recall_ks]
    n = len(per_query)
    means = {name: (sum(v[name] for v in per_query.values()) / n if n else 0.0) for name in names}
    return Evaluation(means=means, per_query=per_query)


def run_from_hits(hits: list[dict]) -> dict[str, float]:
    """An OpenSearch ``hits.hits`` list -> ``{doc_id: score}`` (the first hit wins if an id repeats)."""
    out: dict[str, float] = {}
    for hit in hits:
        out.setdefault(str(hit["_id"]), float(hit["_score"] if hit.get("_score") is not None else 0.0))
    return out


def exact_top_k(
    query_vectors: np.ndarray, doc_vectors: np.ndarray, query_ids: list[str], doc_ids: list[str], k: int = 100
) -> Run:
    """Exact inner-product ranking (cosine for unit vectors): the top ``k`` docs of every query, as a run."""
    q = np.asarray(query_vectors, dtype=np.float32)
    d = np.asarray(doc_vectors, dtype=np.float32)
    k = min(k, d.shape[0])
    run: Run = {}
    for start in range(0, q.shape[0], 256):
        scores = q[start : start + 256] @ d.T
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        for row, qid in enumerate(query_ids[start : start + 256]):
            run[qid] = {doc_ids[j]: float(scores[row, j]) for j in top[row]}
    return run
