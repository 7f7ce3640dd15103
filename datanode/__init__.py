"""neuralpipe's embedded data node: the part of OpenSearch's REST API that neural search uses, on real storage.

``datanode.app.create_app(data_dir, ml_url=None)`` / ``add_routes(app, data_dir=..., ml_url=...)``.

Design: SQLite (WAL, ``synchronous=FULL``) holds indices, documents and pipelines and is the only durable
state: a write is acknowledged after its transaction is fsynced, and memory is updated after the commit. In
memory, per index and per nested path ("scope"): BM25 postings for ``text`` and ``keyword`` fields, values
for numeric/date/boolean fields, a faiss HNSW graph per ``knn_vector`` field (``flat`` = exact search) and an
inverted index per ``rank_features`` field. An index opens on first use, not at start: its slots and vector
graphs and postings from the segment a clean stop saved (``segment``; checked against SQLite's generation and
document count, rebuilt from SQLite when stale or damaged). Blocking
work runs in a thread pool, never on the event loop; a plain ``_search`` is one thread-pool job (parse, search,
encode), reads stored sources only when the response shows them, and skips decoding the vectors a ``_source``
filter drops.
``GET /metrics``: Prometheus metrics (``datanode_*``). Ingest and search pipelines, ``neural``, ``neural_sparse``
and ``hybrid`` run through the ``processors`` package against the ML node at ``ml_url``.

Compatibility choices (what a user may notice):
- ``GET /`` reports OpenSearch ``3.1.0`` (Lucene 10): scores follow Lucene's ``BM25Similarity`` (OpenSearch
  3.x's default, without the ``k1 + 1`` factor of 2.x's LegacyBM25Similarity), with its one-byte length norms.
- One shard, whatever ``number_of_shards`` says (it is accepted and reported): scores are those of a
  one-shard index. BM25 statistics count live documents only (Lucene keeps deleted ones until a merge).
- Documents are searchable as soon as the write is acknowledged; ``refresh`` also brings the HNSW graphs up
  to date (otherwise the first search after writes does).
- Text fields take OpenSearch's built-in analyzers (standard, simple, whitespace, keyword, stop, english) by
  name, not custom ones; the standard tokenizer is approximated (UAX#29 word breaks), see ``analysis``.
- A query that parses but fails while running (a wrong vector dimension, a rank_feature on a non-feature
  field, ...) is answered as a cluster does: ``search_phase_execution_exception`` ("all shards failed") with a
  ``query_shard_exception`` root cause ("failed to create query: ...") and the ``illegal_argument_exception``
  as ``caused_by``; malformed or unknown queries are a ``parsing_exception`` at once.
"""
