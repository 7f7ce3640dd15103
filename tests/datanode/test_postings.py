"""Text, keyword, feature and value fields are saved in the segment (issue 14): a restarted data node answers BM25,
phrase, rank_feature, range and sort queries with the scores and order it gave before, without reading a document
from SQLite; deletes count in BM25 statistics as in Lucene; merging the postings' tail never changes a score; an
older segment format is rebuilt, not trusted."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from opensearchpy import OpenSearch, helpers

import datanode.postings
import datanode.segment
from datanode.keys import DATANODE
from tests.fixtures.datanode import DataNodeThread, os_client

pytestmark = pytest.mark.integration

WORDS = ["alpha", "beta", "gamma", "delta", "the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog"]
MAPPING = {"mappings": {"properties": {
    "body": {"type": "text", "fields": {"raw": {"type": "keyword"}}}, "title": {"type": "text", "analyzer": "stop"},
    "tags": {"type": "keyword"}, "n": {"type": "integer"}, "when": {"type": "date"}, "ok": {"type": "boolean"},
    "sp": {"type": "rank_features"}, "pop": {"type": "rank_feature"},
    "parts": {"type": "nested", "properties": {"text": {"type": "text"}}}}}}

QUERIES: list[dict[str, Any]] = [
    {"query": {"match": {"body": "quick brown fox"}}},
    {"query": {"match": {"body": {"query": "alpha dog lazy", "operator": "and"}}}},
    {"query": {"match": {"body": {"query": "alpha beta gamma delta", "minimum_should_match": "75%"}}}},
    {"query": {"match_phrase": {"body": "quick brown"}}},
    {"query": {"match_phrase": {"body": "fox jumps over"}}},
    {"query": {"match_phrase": {"title": "gamma in the delta"}}},  # stop words leave gaps that match any word
    {"query": {"match_phrase": {"body": "dog alpha"}}},  # the last word of a value, then the next value's first
    {"query": {"bool": {"should": [{"match": {"body": "jumps"}}, {"term": {"tags": "t3"}}],
                        "filter": [{"range": {"n": {"gte": 10, "lt": 70}}}], "must_not": [{"term": {"ok": False}}]}}},
    {"query": {"term": {"tags": {"value": "T1", "case_insensitive": True}}}},
    {"query": {"range": {"tags": {"gte": "t2", "lte": "t4"}}}},
    {"query": {"range": {"when": {"gte": "2024-01-20"}}}},
    {"query": {"terms": {"n": [3, 33, 63, 93]}}},
    {"query": {"exists": {"field": "sp"}}},
    {"query": {"rank_feature": {"field": "sp.w2"}}},  # saturation with the default pivot (the mean of live weights)
    {"query": {"bool": {"should": [{"rank_feature": {"field": f"sp.w{k}", "linear": {}}} for k in range(5)]}}},
    {"query": {"rank_feature": {"field": "pop", "log": {"scaling_factor": 1.5}}}},
    {"query": {"nested": {"path": "parts", "score_mode": "sum", "query": {"match": {"parts.text": "beta fox"}}}}},
    {"query": {"match_all": {}}, "sort": [{"tags": "desc"}, {"n": "asc"}]},
    {"query": {"match": {"body": "dog"}}, "sort": [{"when": "desc"}, "_score"]},
]


def doc(i: int) -> dict[str, Any]:
    words = [WORDS[(i * 7 + k * k) % len(WORDS)] for k in range(3 + i % 9)]
    return {"body": [" ".join(words), " ".join(WORDS[(i + k) % len(WORDS)] for k in range(2 + i % 3))],
            "title": f"{WORDS[i % 12]} of the {WORDS[(i + 1) % 12]}", "tags": [f"t{i % 5}", f"t{(i * 3) % 7}"],
            "n": i, "when": f"2024-01-{1 + i % 28:02d}", "ok": i % 4 != 0,
            "sp": {f"w{k}": round(0.1 + ((i * (k + 3)) % 17) / 7, 4) for k in range(i % 5 + 1)},
            "pop": 1 + i % 13, "parts": [{"text": WORDS[(i + k) % len(WORDS)] + " fox"} for k in range(i % 3)]}


def write(client: OpenSearch, start: int, count: int) -> None:
    helpers.bulk(client, [{"_index": "p", "_id": str(i), **doc(i)} for i in range(start, start + count)])


def edits(client: OpenSearch, deletes: tuple[int, ...] = (2, 5, 11, 40, 41),
          updates: tuple[int, ...] = (7, 12, 50)) -> None:
    """Deletes and updates after the first writes: removed slots must stop counting in every statistic."""
    for i in deletes:
        client.delete(index="p", id=str(i))
    for i in updates:
        client.index(index="p", id=str(i), body=doc(i + 100))
    client.indices.refresh(index="p")


def answers(client: OpenSearch) -> list[list[tuple[str, float, Any]]]:
    out = []
    for body in QUERIES:
        hits = client.search(index="p", body={"size": 100, "_source": False, **body})["hits"]["hits"]
        out.append([(h["_id"], h["_score"], h.get("sort")) for h in hits])
    return out


@pytest.fixture
def sqlite_reads() -> Iterator[Callable[[DataNodeThread], list[str]]]:
    """Counts the documents a data node reads back from SQLite (a spy around ``Storage.docs``: it still reads)."""

    def watch(node: DataNodeThread) -> list[str]:
        storage = node.app[DATANODE].node.storage
        seen: list[str] = []
        read = storage.docs

        def docs(index: str, *args: Any) -> Iterator[tuple[str, Any]]:
            for doc_id, source in read(index, *args):
                seen.append(doc_id)
                yield doc_id, source

        storage.docs = docs  # type: ignore[method-assign]
        return seen

    yield watch


def test_scores_and_order_survive_a_restart_without_reading_sqlite(
        tmp_path: Path, sqlite_reads: Callable[[DataNodeThread], list[str]]) -> None:
    node = DataNodeThread(tmp_path).start()
    client = os_client(node.url)
    try:
        client.indices.create(index="p", body=MAPPING)
        write(client, 0, 90)
        edits(client)
        before = answers(client)
        assert all(before), "every query must find something, or the comparison proves little"
    finally:
        client.close()
        node.stop()
    node = DataNodeThread(tmp_path).start()
    reads = sqlite_reads(node)
    client = os_client(node.url)
    try:
        assert answers(client) == before
        assert reads == []  # opened from the segment's files, not re-indexed from the stored documents
        write(client, 90, 10)  # then written again: the saved base and a new tail answer together
        client.indices.refresh(index="p")
        edits(client, deletes=(3, 60, 95), updates=(8, 12, 91))
        after_writes = answers(client)
    finally:
        client.close()
        node.stop()
    node = DataNodeThread(tmp_path).start()
    client = os_client(node.url)
    try:
        assert answers(client) == after_writes
    finally:
        client.close()
        node.stop()


def bm25(tf: int, dl: int, df: int, n: int, avgdl: float) -> float:
    """Lucene BM25Similarity with k1 1.2, b 0.75 (lengths below 40 are stored exactly in the norm byte)."""
    idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
    return idf * (1 - 1 / (1 + tf / (1.2 * (0.25 + 0.75 * dl / avgdl))))


def test_a_delete_leaves_doc_freq_doc_count_and_avgdl_before_and_after_a_restart(tmp_path: Path) -> None:
    docs = {"1": "apple pie", "2": "apple apple tart", "3": "pear", "4": "apple crumble with cream", "5": "fig"}
    node = DataNodeThread(tmp_path).start()
    client = os_client(node.url)
    try:
        client.indices.create(index="f", body={"mappings": {"properties": {"t": {"type": "text"}}}})
        helpers.bulk(client, [{"_index": "f", "_id": k, "t": v} for k, v in docs.items()], refresh=True)
        client.delete(index="f", id="4", refresh=True)
        client.delete(index="f", id="5", refresh=True)
        # live: 1 (2 terms), 2 (3 terms), 3 (1 term): docCount 3, avgdl 2, docFreq(apple) 2
        expected = {"2": bm25(2, 3, 2, 3, 2.0), "1": bm25(1, 2, 2, 3, 2.0)}
        query = {"query": {"match": {"t": "apple"}}}
        got = {h["_id"]: h["_score"] for h in client.search(index="f", body=query)["hits"]["hits"]}
        assert got == pytest.approx(expected, rel=1e-6)
    finally:
        client.close()
        node.stop()
    node = DataNodeThread(tmp_path).start()
    client = os_client(node.url)
    try:
        hits = client.search(index="f", body=query)["hits"]["hits"]
        assert [h["_id"] for h in hits] == ["2", "1"]
        assert {h["_id"]: h["_score"] for h in hits} == got
    finally:
        client.close()
        node.stop()


def test_merging_parts_changes_no_score(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One node never merges its postings' parts (one part per write), the other merges them at every write: same
    answers."""
    monkeypatch.setattr(datanode.postings, "MERGE_RATIO", 0.0)
    plain = DataNodeThread(tmp_path / "plain").start()
    plain_client = os_client(plain.url)
    plain_client.indices.create(index="p", body=MAPPING)
    for start in range(0, 90, 30):
        write(plain_client, start, 30)
    edits(plain_client)
    expected = answers(plain_client)
    root = plain.app[DATANODE].node.indices["p"].root
    assert len(root.terms["body"].parts) >= 3 and len(root.features["sp"].parts) >= 3  # never merged
    plain_client.close()
    plain.stop()
    monkeypatch.setattr(datanode.postings, "MERGE_RATIO", 1e9)
    merging = DataNodeThread(tmp_path / "merging").start()
    client = os_client(merging.url)
    try:
        client.indices.create(index="p", body=MAPPING)
        for start in range(0, 90, 30):
            write(client, start, 30)
        edits(client)
        assert answers(client) == expected
        root = merging.app[DATANODE].node.indices["p"].root
        assert len(root.terms["body"].parts) == 1 and len(root.features["sp"].parts) == 1  # merged every time
    finally:
        client.close()
        merging.stop()


def test_a_segment_of_the_previous_format_is_rebuilt(tmp_path: Path,
                                                     sqlite_reads: Callable[[DataNodeThread], list[str]]) -> None:
    node = DataNodeThread(tmp_path).start()
    client = os_client(node.url)
    client.indices.create(index="p", body=MAPPING)
    write(client, 0, 60)
    edits(client)
    before = answers(client)
    client.close()
    node.stop()
    (segment,) = (tmp_path / "indices").iterdir()
    for path in segment.glob("post-*"):  # what a format-1 segment held: slots and vectors, no postings
        path.unlink()
    for path in segment.glob("val-*"):
        path.unlink()
    meta = json.loads((segment / "meta.json").read_text())
    del meta["postings"]
    (segment / "meta.json").write_text(json.dumps({**meta, "format": 1}))
    node = DataNodeThread(tmp_path).start()
    reads = sqlite_reads(node)
    client = os_client(node.url)
    try:
        assert answers(client) == before
        assert len(reads) == 55  # rebuilt from every live document
    finally:
        client.close()
        node.stop()
    assert json.loads((segment / "meta.json").read_text())["format"] == datanode.segment.FORMAT
    assert list(segment.glob("post-*.slots.npy"))  # saved again in the current format


def test_a_read_tail_sees_later_writes_and_removals() -> None:
    """Queries keep a term's tail as arrays between writes: a later write to the term, and a removal, must still
    show in the next read (the posting and the feature values a user's match / rank_feature reads)."""
    from datanode.postings import FeatureField, TermField

    text, feats = TermField(norms=True), FeatureField()
    for slot in range(3):
        text.add(slot, ["red", "fox"] if slot != 1 else ["red"])
        feats.add(slot, {"red": 1.0 + slot})
    assert text.posting("red")[0].tolist() == [0, 1, 2] and feats.values("red")[0].tolist() == [0, 1, 2]
    text.add(3, ["red", "red"])
    feats.add(3, {"red": 4.0})
    slots, freqs = text.posting("red")
    assert slots.tolist() == [0, 1, 2, 3] and freqs.tolist() == [1, 1, 1, 2]
    assert feats.values("red")[0].tolist() == [0, 1, 2, 3] and feats.values("red")[1].tolist() == [1, 2, 3, 4]
    text.remove(1)
    feats.remove(1)
    assert text.posting("red")[0].tolist() == [0, 2, 3] and feats.values("red")[0].tolist() == [0, 2, 3]
    text.merge()
    feats.merge()
    text.add(4, ["red"])
    feats.add(4, {"red": 5.0})
    assert text.posting("red")[0].tolist() == [0, 2, 3, 4] and feats.values("red")[0].tolist() == [0, 2, 3, 4]
