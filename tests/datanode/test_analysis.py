"""Text analysis on the data node: the built-in analyzers through ``_analyze`` (tokens, offsets, positions), the
mapping's ``analyzer`` / ``search_analyzer`` at index and query time, BM25 over analysed text equal to Lucene's,
and OpenSearch's errors for unknown analyzers.

Expected tokens come from Lucene's own tests and sources (apache/lucene-solr, lucene/analysis/common):
- ``src/test/org/apache/lucene/analysis/en/TestEnglishAnalyzer.java`` (testBasics: books, the, possessives);
- ``src/java/org/apache/lucene/analysis/en/PorterStemmer.java`` (the step-1 examples of its javadoc, carried
  through all six steps, and its departures from the 1980 paper: ``bli -> ble``, ``logi -> log``);
- ``src/test/org/apache/lucene/analysis/en/TestPorterStemFilter.java`` (testWithKeywordAttribute's
  "yourselves yours", here without the keyword marker);
- ``src/test/org/apache/lucene/analysis/core/TestStopAnalyzer.java`` (testStopListPositions' sentence: a removed
  stop word leaves a position gap).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from opensearchpy import RequestError, helpers

from datanode import analysis
from tests.fixtures.datanode import DataNodeThread, os_client

pytestmark = pytest.mark.integration


@pytest.fixture
def client(data_node: Any) -> Any:
    c = os_client(data_node.url)
    yield c
    c.close()


def terms(client: Any, analyzer: str, text: Any) -> list[str]:
    return [t["token"] for t in client.indices.analyze(body={"analyzer": analyzer, "text": text})["tokens"]]


# --- _analyze equals Lucene ----------------------------------------------------------------------------------

# TestEnglishAnalyzer.testBasics
ENGLISH_ANALYZER_TEST = [("books", ["book"]), ("book", ["book"]), ("the", []), ("steven's", ["steven"]),
                         ("steven\u2019s", ["steven"]), ("steven\uff07s", ["steven"])]
# PorterStemmer.java's javadoc words, stemmed through all steps (e.g. step 1 gives "agree", step 6 drops its "e")
PORTER_JAVADOC = {"caresses": "caress", "ponies": "poni", "ties": "ti", "caress": "caress", "cats": "cat",
                  "feed": "feed", "agreed": "agre", "disabled": "disabl", "matting": "mat", "mating": "mate",
                  "meeting": "meet", "milling": "mill", "messing": "mess", "meetings": "meet",
                  # the reference implementation's departures from the paper, which Lucene keeps (step3)
                  "possibly": "possibl", "archaeology": "archaeolog",
                  # TestPorterStemFilter.testWithKeywordAttribute's words, with no keyword marker
                  "yourselves": "yourselv", "yours": "your"}


@pytest.mark.parametrize(("text", "expected"), ENGLISH_ANALYZER_TEST)
def test_english_analyzer_equals_lucenes_test(client: Any, text: str, expected: list[str]) -> None:
    assert terms(client, "english", text) == expected


def test_english_porter_stems_equal_lucenes_porter_stemmer(client: Any) -> None:
    words = list(PORTER_JAVADOC)
    assert terms(client, "english", " ".join(words)) == [PORTER_JAVADOC[w] for w in words]


def test_stop_words_leave_position_gaps(client: Any) -> None:
    sentence = "This is a good test of the english stop analyzer with positions"  # TestStopAnalyzer
    got = client.indices.analyze(body={"analyzer": "stop", "text": sentence})["tokens"]
    assert [(t["token"], t["position"]) for t in got] == [
        ("good", 3), ("test", 4), ("english", 7), ("stop", 8), ("analyzer", 9), ("positions", 11)]
    english = client.indices.analyze(body={"analyzer": "english", "text": sentence})["tokens"]
    assert [(t["token"], t["position"]) for t in english] == [
        ("good", 3), ("test", 4), ("english", 7), ("stop", 8), ("analyz", 9), ("posit", 11)]
    assert english[-1] == {"token": "posit", "start_offset": 54, "end_offset": 63, "type": "<ALPHANUM>",
                           "position": 11}


@pytest.mark.parametrize(("analyzer", "expected"), [
    ("standard", ["the", "quick", "brown", "fox's", "2", "e", "mails"]),
    ("default", ["the", "quick", "brown", "fox's", "2", "e", "mails"]),
    ("simple", ["the", "quick", "brown", "fox", "s", "e", "mails"]),
    ("whitespace", ["The", "QUICK-brown", "fox's", "2", "e-mails"]),
    ("keyword", ["The QUICK-brown fox's 2 e-mails"]),
    ("stop", ["quick", "brown", "fox", "s", "e", "mails"]),
    ("english", ["quick", "brown", "fox", "2", "e", "mail"]),
])
def test_each_builtin_analyzer(client: Any, analyzer: str, expected: list[str]) -> None:
    assert terms(client, analyzer, "The QUICK-brown fox's 2 e-mails") == expected


def test_analyze_arrays_and_fields_continue_positions_and_offsets(client: Any) -> None:
    client.indices.create(index="docs", body={"mappings": {"properties": {
        "body": {"type": "text", "analyzer": "english"}, "tag": {"type": "keyword"}}}})
    texts = ["the books", "Steven's cats"]
    glob = client.indices.analyze(body={"analyzer": "english", "text": texts})["tokens"]
    assert [(t["token"], t["position"], t["start_offset"], t["end_offset"]) for t in glob] == [
        ("book", 1, 4, 9), ("steven", 2, 10, 18), ("cat", 3, 19, 23)]
    # a text field's analyzer puts OpenSearch's position_increment_gap (100) between the values
    field = client.indices.analyze(index="docs", body={"field": "body", "text": texts})["tokens"]
    assert [(t["token"], t["position"]) for t in field] == [("book", 1), ("steven", 102), ("cat", 103)]
    assert terms_of(client.indices.analyze(index="docs", body={"field": "tag", "text": "Big Cats"})) == ["Big Cats"]
    assert terms_of(client.indices.analyze(index="docs", body={"field": "nope", "text": "Big Cats"})) == [
        "big", "cats"]


def terms_of(response: dict[str, Any]) -> list[str]:
    return [t["token"] for t in response["tokens"]]


# --- index and search time -------------------------------------------------------------------------------------

CORPUS = {
    "1": "The quick foxes are jumping over the lazy dogs",
    "2": "A fox jumped",
    "3": "Dogs and cats in the garden",
    "4": "Jumping is what a fox does",
    "5": "jumping over lazy dogs",
    "6": "jumping over a lazy dog",
    "7": "jumping over my lazy dog",
}
# The english analyzer's terms of each document, worked out by hand (stop words gone, Porter stems)
ENGLISH_TERMS = {
    "1": ["quick", "fox", "jump", "over", "lazi", "dog"],
    "2": ["fox", "jump"],
    "3": ["dog", "cat", "garden"],
    "4": ["jump", "what", "fox", "doe"],
    "5": ["jump", "over", "lazi", "dog"],
    "6": ["jump", "over", "lazi", "dog"],
    "7": ["jump", "over", "my", "lazi", "dog"],
}


def idf(term: str) -> float:
    n = len(ENGLISH_TERMS)
    df = sum(term in toks for toks in ENGLISH_TERMS.values())
    return math.log(1 + (n - df + 0.5) / (df + 0.5))


def bm25(freq: float, weight: float, doc_id: str) -> float:
    """Lucene's BM25: the field length is the number of indexed tokens (stop words do not count; all < 25, so
    the one-byte norm is exact)."""
    avgdl = sum(len(t) for t in ENGLISH_TERMS.values()) / len(ENGLISH_TERMS)
    return weight * freq / (freq + 1.2 * (1 - 0.75 + 0.75 * len(ENGLISH_TERMS[doc_id]) / avgdl))


@pytest.fixture
def english(client: Any) -> Any:
    client.indices.create(index="en", body={"mappings": {"properties": {
        "body": {"type": "text", "analyzer": "english"},
        "exact": {"type": "text", "analyzer": "english", "search_analyzer": "standard"}}}})
    helpers.bulk(client, [{"_index": "en", "_id": d, "body": t, "exact": t} for d, t in CORPUS.items()],
                 refresh=True)
    return client


def scores(client: Any, query: dict[str, Any]) -> dict[str, float]:
    res = client.search(index="en", body={"size": 20, "query": query})
    return {h["_id"]: h["_score"] for h in res["hits"]["hits"]}


def test_match_on_english_field_scores_equal_lucene_bm25(english: Any) -> None:
    for query, stems in (("jumps", ["jump"]), ("The lazy dogs", ["lazi", "dog"]), ("fox's garden", ["fox", "garden"])):
        expected = {d: sum(bm25(toks.count(s), idf(s), d) for s in stems if s in toks)
                    for d, toks in ENGLISH_TERMS.items() if any(s in toks for s in stems)}
        got = scores(english, {"match": {"body": query}})
        assert got == pytest.approx(expected, rel=1e-6), query


def test_match_phrase_sees_stop_word_gaps_as_lucene_does(english: Any) -> None:
    # query positions: jump 0, over 1, lazi 3, dog 4 ("the" leaves a hole that any token, or none, fills)
    got = scores(english, {"match_phrase": {"body": "jumped over the lazy dog"}})
    weight = sum(idf(t) for t in ("jump", "over", "lazi", "dog"))
    assert got == pytest.approx({d: bm25(1, weight, d) for d in ("1", "6", "7")}, rel=1e-6)  # not "5": no hole
    assert scores(english, {"match_phrase": {"body": "jumping over lazy dogs"}}).keys() == {"5"}


def test_search_analyzer_and_query_analyzer(english: Any) -> None:
    # "exact" is indexed with english but searched with standard: "foxes" stays "foxes" and finds nothing
    assert scores(english, {"match": {"exact": "foxes"}}) == {}
    assert scores(english, {"match": {"exact": "fox"}}).keys() == {"1", "2", "4"}
    assert scores(english, {"match": {"body": {"query": "foxes", "analyzer": "standard"}}}) == {}
    assert scores(english, {"multi_match": {"query": "foxes", "fields": ["body", "exact"]}}).keys() == {"1", "2", "4"}
    assert scores(english, {"match": {"body": {"query": "the", "zero_terms_query": "all"}}}).keys() == set(CORPUS)


def test_a_restarted_node_reindexes_with_the_mapped_analyzer(tmp_path: Path) -> None:
    node = DataNodeThread(tmp_path / "dn").start()
    c = os_client(node.url)
    c.indices.create(index="en", body={"mappings": {"properties": {"body": {"type": "text", "analyzer": "english"}}}})
    helpers.bulk(c, [{"_index": "en", "_id": d, "body": t} for d, t in CORPUS.items()], refresh=True)
    before = scores(c, {"match_phrase": {"body": "jumped over the lazy dog"}})
    c.close()
    node.stop()
    node = DataNodeThread(tmp_path / "dn").start()
    c = os_client(node.url)
    try:
        assert before.keys() == {"1", "6", "7"}
        assert scores(c, {"match_phrase": {"body": "jumped over the lazy dog"}}) == before
        assert scores(c, {"match": {"body": "jumps"}}).keys() == {"1", "2", "4", "5", "6", "7"}
    finally:
        c.close()
        node.stop()


# --- errors ----------------------------------------------------------------------------------------------------

def error_of(call: Any) -> dict[str, Any]:
    with pytest.raises(RequestError) as err:
        call()
    assert err.value.status_code == 400
    return err.value.info["error"]


@pytest.mark.parametrize("key", ["analyzer", "search_analyzer"])
def test_unknown_analyzer_in_mapping(client: Any, key: str) -> None:
    err = error_of(lambda: client.indices.create(index="bad", body={"mappings": {"properties": {
        "body": {"type": "text", key: "klingon"}}}}))
    assert err["type"] == "mapper_parsing_exception"
    assert err["reason"] == "Failed to parse mapping [_doc]: analyzer [klingon] has not been configured in mappings"
    assert err["caused_by"] == {"type": "illegal_argument_exception",
                                "reason": "analyzer [klingon] has not been configured in mappings"}
    assert not client.indices.exists(index="bad")


@pytest.mark.parametrize(("index", "body", "kind", "reason"), [
    (None, {"analyzer": "klingon", "text": "x"}, "illegal_argument_exception",
     "failed to find global analyzer [klingon]"),
    ("en", {"analyzer": "klingon", "text": "x"}, "illegal_argument_exception", "failed to find analyzer [klingon]"),
    (None, {"analyzer": "english"}, "action_request_validation_exception", "Validation Failed: 1: text is missing;"),
    (None, {"field": "body", "text": "x"}, "illegal_argument_exception",
     "analysis based on a specific field requires an index"),
])
def test_analyze_errors(english: Any, index: str | None, body: dict[str, Any], kind: str, reason: str) -> None:
    err = error_of(lambda: english.indices.analyze(index=index, body=body))
    assert (err["type"], err["reason"]) == (kind, reason)


def test_query_and_mapping_update_errors(english: Any) -> None:
    err = error_of(lambda: english.search(index="en", body={"query": {"match": {"body": {
        "query": "fox", "analyzer": "klingon"}}}}))
    assert err["caused_by"]["reason"] == "[match] analyzer [klingon] not found"
    err = error_of(lambda: english.indices.put_mapping(index="en", body={"properties": {
        "body": {"type": "text", "analyzer": "standard"}}}))
    assert err["reason"] == "Cannot update parameter [analyzer] from [english] to [standard]"


INDEXING_TEXTS = [
    "", "   ", "The QUICK brown fox's tail", "don't stop: e.g. 3.14 and 1,000; 2;3 a.b", "x" * 600 + " tail",
    "\u4e00\u4e01 \u30a2\u30a4\u30a6 mixed\u4e00text", "İstanbul straße ÉCOLE", "the a an is running runs ran",
    "trailing stop words the and of", "John’s ＇quote＇ hyphen-ated under_score", "tab\tnew\nline",
]


@pytest.mark.parametrize("analyzer", sorted(analysis.ANALYZERS))
def test_indexing_reads_the_terms_and_positions_analyze_reports(analyzer: str) -> None:
    """Documents are indexed through ``index_terms`` (no Token objects, for speed); it must give exactly the terms,
    positions and span that ``_analyze`` and the query side compute with ``run``."""
    an = analysis.ANALYZERS[analyzer]
    for text in INDEXING_TEXTS:
        tokens, span = an.run(text)
        assert an.index_terms(text) == ([t.term for t in tokens], [t.position for t in tokens], span), text


@pytest.mark.parametrize("name", sorted(analysis.ANALYZERS))
@pytest.mark.parametrize("text", ["Brown " + "Fox" * 200 + " it's OVER", "x" * 255 + " " + "é" * 256, "short one"])
def test_indexing_reads_the_terms_and_positions_analyze_gives(name: str, text: str) -> None:
    """What a document indexes (``index_terms``) is what ``_analyze`` shows, tokens past 255 characters cut the
    same way (a 600-letter word is three tokens)."""
    analyzer = analysis.get(name)
    tokens, span = analyzer.run(text)
    assert analyzer.index_terms(text) == ([t.term for t in tokens], [t.position for t in tokens], span)
    if name in ("standard", "simple") and text.startswith("Brown"):
        assert [len(t.term) for t in tokens][:4] == [5, 255, 255, 90]
