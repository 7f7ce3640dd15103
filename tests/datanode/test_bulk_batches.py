"""A ``_bulk`` request's documents are indexed together, field by field, into postings parts that merge later
(issue 14): every answer and every stored byte must be what one request per document gives. Here the same mixed
requests (good documents, a bad one, repeated ids, a create conflict, deletes and updates of documents the same
request wrote) go to one node as whole ``_bulk`` requests and to another one item per ``_bulk``: the items, the
scores of later searches, the SQLite rows and the saved segment files must be the same, and stay so after a
restart, and after a rebuild from SQLite. The postings themselves are checked against a plain dict model of what
each slot holds."""

from __future__ import annotations

import json
import math
import random
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests

import datanode.postings
import datanode.segment
from datanode.node import DataNode, WriteOp
from datanode.postings import FeatureField, TermField, similarity
from tests.fixtures.datanode import DataNodeThread

WORDS = ["alpha", "beta", "gamma", "delta", "the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog"]
MAPPING = {"mappings": {"properties": {
    "body": {"type": "text", "fields": {"raw": {"type": "keyword"}}}, "title": {"type": "text", "analyzer": "english"},
    "tags": {"type": "keyword"}, "n": {"type": "integer"}, "sp": {"type": "rank_features"},
    "pop": {"type": "rank_feature"}, "parts": {"type": "nested", "properties": {"text": {"type": "text"}}}}}}
QUERIES: list[dict[str, Any]] = [
    {"query": {"match": {"body": "quick brown fox"}}, "size": 100},
    {"query": {"match_phrase": {"body": "quick brown"}}, "size": 100},
    {"query": {"match": {"title": "gammas"}}, "size": 100},
    {"query": {"rank_feature": {"field": "sp.w2"}}, "size": 100},
    {"query": {"bool": {"should": [{"rank_feature": {"field": f"sp.w{k}", "linear": {}}} for k in range(6)]}},
     "size": 100},
    {"query": {"nested": {"path": "parts", "score_mode": "sum", "query": {"match": {"parts.text": "beta fox"}}}},
     "size": 100},
    {"query": {"match_all": {}}, "sort": [{"tags": "desc"}, {"n": "asc"}], "size": 100},
    {"query": {"term": {"tags": "t3"}}, "size": 100},
    {"query": {"match": {"extra": "new words"}}, "size": 100},  # a field the requests map dynamically
]


def doc(i: int) -> dict[str, Any]:
    words = [WORDS[(i * 7 + k * k) % len(WORDS)] + ("s" if k % 3 == 0 else "") for k in range(3 + i % 9)]
    return {"body": [" ".join(words), " ".join(WORDS[(i + k) % len(WORDS)] for k in range(2 + i % 3))],
            "title": f"{WORDS[i % 12]} of the {WORDS[(i + 1) % 12]}'s",
            "tags": [f"t{i % 5}", f"t{(i * 3) % 7}", f"t{i % 5}"], "n": i,
            "sp": {f"w{(k * 7 + i) % 13}": round(0.1 + ((i * (k + 3)) % 17) / 7, 4) for k in range(i % 5 + 1)},
            "pop": 1 + i % 13, "parts": [{"text": WORDS[(i + k) % len(WORDS)] + " fox"} for k in range(i % 3)]}


def requests_lines() -> list[list[tuple[dict[str, Any], dict[str, Any] | None]]]:
    """Three mixed requests: (action line, source line) per item."""
    out = []
    for start in (0, 60, 120):
        items: list[tuple[dict[str, Any], dict[str, Any] | None]] = [
            ({"index": {"_id": str(i)}}, doc(i)) for i in range(start, start + 60)]
        items[10:10] = [({"index": {"_id": str(start + 3)}}, doc(start + 9)),    # written again: version 2
                        ({"delete": {"_id": str(start + 5)}}, None),             # removed, then written again
                        ({"index": {"_id": str(start + 5)}}, doc(1)),
                        ({"index": {"_id": str(start + 7)}}, {"n": "bad"}),      # fails alone
                        ({"create": {"_id": str(start + 8)}}, doc(2)),           # conflicts
                        ({"update": {"_id": str(start + 2)}}, {"doc": {"n": 7, "tags": "upd"}}),
                        ({"index": {"_id": str(start + 1)}}, {"extra": f"new words {start}", "n": start}),
                        ({"delete": {"_id": str(start + 11)}}, None)]            # not written yet: not_found
        out.append(items)
    return out


def ndjson(items: list[tuple[dict[str, Any], dict[str, Any] | None]]) -> str:
    return "".join(json.dumps(action) + "\n" + (json.dumps(src) + "\n" if src is not None else "")
                   for action, src in items)


def bulk(url: str, items: list[tuple[dict[str, Any], dict[str, Any] | None]]) -> list[dict[str, Any]]:
    res = requests.post(f"{url}/p/_bulk", data=ndjson(items), headers={"Content-Type": "application/x-ndjson"},
                        timeout=60)
    assert res.status_code == 200
    return [json.loads(json.dumps(item).replace(res_uuid(url), "<uuid>")) for item in res.json()["items"]]


def res_uuid(url: str) -> str:
    return requests.get(f"{url}/p", timeout=60).json()["p"]["settings"]["index"]["uuid"]


def answers(url: str) -> list[Any]:
    out = []
    for body in QUERIES:
        res = requests.post(f"{url}/p/_search", data=json.dumps(body), headers={"Content-Type": "application/json"},
                            timeout=60).json()
        out.append([(h["_id"], h["_score"], h.get("sort")) for h in res["hits"]["hits"]])
    return out


def stored(data_dir: Path) -> tuple[list[Any], dict[str, bytes]]:
    """The SQLite rows and the segment's files (by name) of a stopped node."""
    db = sqlite3.connect(data_dir / "datanode.sqlite3")
    rows = db.execute("SELECT id, version, seq_no, source FROM docs ORDER BY id").fetchall()
    rows.append(db.execute("SELECT seq_no, mappings FROM indices").fetchall())
    db.close()
    (segment,) = (data_dir / "indices").iterdir()
    return rows, {path.name: path.read_bytes() for path in sorted(segment.iterdir())}


@pytest.mark.integration
def test_a_whole_bulk_answers_and_stores_what_one_item_per_bulk_does(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(datanode.segment, "REBUILD_BATCH", 7)  # a rebuild from SQLite indexes 7 documents at a time
    results = {}
    for way in ("whole", "one_by_one"):
        node = DataNodeThread(tmp_path / way).start()
        try:
            created = requests.put(f"{node.url}/p", data=json.dumps(MAPPING), timeout=60,
                                   headers={"Content-Type": "application/json"})
            assert created.status_code == 200
            items = []
            for request in requests_lines():
                if way == "whole":
                    items += bulk(node.url, request)
                else:
                    for item in request:
                        items += bulk(node.url, [item])
            before = answers(node.url)
        finally:
            node.stop()
        node = DataNodeThread(tmp_path / way).start()  # restarted on its saved segment
        try:
            after = answers(node.url)
        finally:
            node.stop()
        assert after == before
        results[way] = items, before, stored(tmp_path / way)
        shutil.rmtree(tmp_path / way / "indices")  # no segment: the next start rebuilds the index from SQLite
        node = DataNodeThread(tmp_path / way).start()
        try:
            assert answers(node.url) == before
        finally:
            node.stop()
    whole, one_by_one = results["whole"], results["one_by_one"]
    items = whole[0]
    assert items == one_by_one[0]
    assert [item.get("index", {}).get("_version") for item in items[:4]] == [1, 1, 1, 1]
    failed = [next(iter(item.values())) for item in items if "error" in next(iter(item.values()))]
    assert [(f["_id"], f["status"], f["error"]["type"]) for f in failed] == [
        (str(start + k), status, kind) for start in (0, 60, 120)
        for k, status, kind in ((7, 400, "mapper_parsing_exception"), (8, 409, "version_conflict_engine_exception"))]
    assert [item["delete"]["result"] for item in items if "delete" in item] == ["deleted", "not_found"] * 3
    assert whole[1] == one_by_one[1]
    assert all(hits for hits in whole[1])  # every query finds something
    assert whole[2][0] == one_by_one[2][0]  # SQLite: sources, versions, seq_no, mapping
    assert whole[2][1] == one_by_one[2][1]  # the segment, byte for byte


def model_check(text: TermField, keyword: TermField, feats: FeatureField, model: dict[int, Any]) -> None:
    """Each field's postings, statistics and term order against ``model`` (slot -> (tokens, values, features) of
    every live slot)."""
    first_text: dict[str, None] = {}
    first_kw: dict[str, None] = {}
    first_ft: dict[str, None] = {}
    want_text: dict[str, dict[int, list[int]]] = {}
    want_kw: dict[str, list[int]] = {}
    want_ft: dict[str, dict[int, float]] = {}
    for slot in sorted(model["all"]):
        tokens, values, features = model["all"][slot]
        first_text.update(dict.fromkeys(tokens))
        first_kw.update(dict.fromkeys(values))
        first_ft.update(dict.fromkeys(features))
        if slot not in model["live"]:
            continue
        for position, token in enumerate(tokens):
            want_text.setdefault(token, {}).setdefault(slot, []).append(position)
        for value in dict.fromkeys(values):
            want_kw.setdefault(value, []).append(slot)
        for token, weight in features.items():
            want_ft.setdefault(token, {})[slot] = float(similarity.decode_feature(np.float32([weight]))[0])
    assert list(text.terms()) == list(first_text)  # in the order first written, removed ones too
    assert list(keyword.terms()) == list(first_kw) and list(feats.terms()) == list(first_ft)
    for term in first_text:
        slots, freqs = text.posting(term)
        want = want_text.get(term, {})
        assert slots.tolist() == sorted(want) and freqs.tolist() == [len(want[s]) for s in sorted(want)]
        if want:  # (a phrase asks only for slots holding every term)
            keys = text._position_keys(term, np.asarray(sorted(want), dtype=np.int64))
            assert keys.tolist() == [(s << 32) | p for s in sorted(want) for p in want[s]]
    for value in first_kw:
        slots, freqs = keyword.posting(value)
        assert slots.tolist() == want_kw.get(value, []) and set(freqs.tolist()) <= {1}
    for token in first_ft:
        slots, weights = feats.values(token)
        want_w = want_ft.get(token, {})
        assert slots.tolist() == sorted(want_w) and weights.tolist() == [want_w[s] for s in sorted(want_w)]
    live = sorted(model["live"])
    assert text.doc_count == len(live) and text.sum_ttf == sum(len(model["all"][s][0]) for s in live)
    assert keyword.sum_ttf == sum(len(set(model["all"][s][1])) for s in live)
    for slot in live:
        assert sorted(keyword.slot_values(slot)) == sorted(set(model["all"][slot][1]))


@pytest.mark.parametrize("ratio", [0.0, 0.5, 1.0, 4.0, 1e9])
def test_postings_parts_hold_what_each_slot_was_given(ratio: float, monkeypatch: pytest.MonkeyPatch) -> None:
    """Batches of random documents, removals between them, merges as often as ``ratio`` makes them, then a full
    merge: at every step each posting is the one a dict of the live slots gives."""
    monkeypatch.setattr(datanode.postings, "MERGE_RATIO", ratio)
    rng = random.Random(7)
    vocab = [f"w{k}" for k in range(40)]
    text, keyword, feats = TermField(norms=True), TermField(norms=False), FeatureField()
    model: dict[str, Any] = {"all": {}, "live": set()}
    slot = 0
    for _ in range(12):
        slots, docs = [], []
        for _ in range(rng.choice([1, 2, 5, 17])):
            tokens = [rng.choice(vocab[: rng.randint(3, 40)]) for _ in range(rng.randint(0, 12))]
            values = [rng.choice(vocab[:6]) for _ in range(rng.randint(0, 4))]
            features = {t: round(rng.uniform(0.01, 5), 4) for t in rng.sample(vocab, rng.randint(0, 6))}
            slots.append(slot)
            docs.append((tokens, values, features))
            model["all"][slot] = (tokens, values, features)
            model["live"].add(slot)
            slot += 1
        text.add_many(slots, [d[0] for d in docs])
        keyword.add_many([s for s, d in zip(slots, docs) if d[1]], [d[1] for d in docs if d[1]])
        feats.add_many(slots, [d[2] for d in docs])
        for gone in rng.sample(sorted(model["live"]), min(2, len(model["live"]))):
            model["live"].discard(gone)
            for field in (text, keyword, feats):
                field.remove(gone)
        model_check(text, keyword, feats, model)
    for field in (text, keyword, feats):
        field.merge()
        assert len(field.parts) == 1 and field.dead == 0
    model_check(text, keyword, feats, model)


def test_shrinking_batches_keep_few_parts() -> None:
    """Batches that each hold a little less than the one before (a client's batches rarely hold the same number of
    entries) must still merge: a field keeps at most log2(entries) parts, not one per batch."""
    feats = FeatureField()
    slot = 0
    for size in range(300, 100, -1):
        feats.add_many(list(range(slot, slot + size)), [{"a": 1.0, f"t{k % 50}": 2.0} for k in range(size)])
        slot += size
        assert len(feats.parts) <= math.log2(2 * slot)
    slots, weights = feats.values("a")
    assert slots.tolist() == list(range(slot)) and set(weights.tolist()) == {1.0}


def test_a_batch_of_more_terms_than_16_bits_count() -> None:
    """A batch's terms are sorted by a 16-bit key when they fit in one; more than 65,536 terms sort by the full id."""
    text, feats = TermField(norms=True), FeatureField()
    first, second = [f"t{k}" for k in range(40_000)], [f"t{k}" for k in range(69_999, 29_999, -1)]
    text.add_many([0, 1], [first, second])
    feats.add_many([0, 1], [dict.fromkeys(first, 1.0), dict.fromkeys(second, 2.0)])
    assert len(text.parts[0].terms) == 70_000 and list(text.terms())[-1] == "t40000"
    for term, slots in (("t0", [0]), ("t35000", [0, 1]), ("t69999", [1])):
        assert text.posting(term)[0].tolist() == slots and feats.values(term)[0].tolist() == slots
        assert text._position_keys(term, np.asarray(slots)).tolist() == [
            (s << 32) | (int(term[1:]) if s == 0 else 69_999 - int(term[1:])) for s in slots]
    assert feats.values("t35000")[1].tolist() == [1.0, 2.0]


def test_a_bulk_over_two_indices_indexes_each_as_one_item_per_request_does(tmp_path: Path) -> None:
    """Items alternating between two indices (one of them created by the request) are indexed per index, in
    order: the same hits and scores as one request per item, and each index holds only its own documents."""
    results = []
    for way in ("whole", "one_by_one"):
        node = DataNode(tmp_path / way)
        node.create_index("a", MAPPING)
        ops = [WriteOp("index", "a" if k % 2 else "b", str(k // 2 % 7), doc(k)) for k in range(40)]
        ops.insert(9, WriteOp("delete", "a", "3"))
        items = node.write(ops) if way == "whole" else [node.write([op])[0] for op in ops]
        found = [[(h["_id"], h["_score"]) for h in node.search(name, body)["hits"]["hits"]]
                 for name in ("a", "b") for body in QUERIES[:3]]
        results.append(([(i["_index"], i["_id"], i["_version"], i["_seq_no"], i["result"]) for i in items], found,
                        {name: node.index(name).doc_count for name in ("a", "b")}))
        node.close()
    assert results[0] == results[1]
    assert results[0][2] == {"a": 7, "b": 7} and results[0][1][0] and results[0][1][3]  # match hits in each
