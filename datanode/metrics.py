"""Prometheus metrics of the data node (one registry per app, so several nodes can live in one process).

Served at ``GET /metrics`` by a data node alone; ``neuralpipe serve --roles ml,data`` serves them after the ML
node's in one exposition."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

PREFIX = "datanode"
_SECONDS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class _IndexCollector(Collector):
    """Documents per index, read at scrape time (no bookkeeping on the write path)."""

    def __init__(self, doc_counts: Callable[[], dict[str, int]]) -> None:
        self.doc_counts = doc_counts

    def collect(self) -> Iterator[Any]:
        docs = GaugeMetricFamily(f"{PREFIX}_documents", "Live documents per index", labels=["index"])
        for name, count in sorted(self.doc_counts().items()):
            docs.add_metric([name], count)
        yield docs


class _QueryCacheCollector(Collector):
    """The ML client's query-embedding cache (hits, misses, entries), read at scrape time."""

    def __init__(self, stats: Callable[[], Any]) -> None:
        self.stats = stats

    def collect(self) -> Iterator[Any]:
        stats = self.stats()
        hits = CounterMetricFamily(f"{PREFIX}_query_cache_hits", "Query texts whose embedding came from the cache")
        misses = CounterMetricFamily(f"{PREFIX}_query_cache_misses", "Query texts sent to the model (not cached)")
        entries = GaugeMetricFamily(f"{PREFIX}_query_cache_entries", "Query embeddings held in the cache")
        hits.add_metric([], stats.hits if stats else 0)
        misses.add_metric([], stats.misses if stats else 0)
        entries.add_metric([], stats.entries if stats else 0)
        yield from (hits, misses, entries)


class DataNodeMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.searches = Counter(f"{PREFIX}_search_requests", "Search requests answered, by kind (plain or "
                                "through search pipelines / neural queries) and outcome", ["kind", "outcome"],
                                registry=r)
        self.search_seconds = Histogram(f"{PREFIX}_search_duration_seconds", "Search request end to end (server side)",
                                        ["kind"], buckets=_SECONDS, registry=r)
        self.bulk_items = Counter(f"{PREFIX}_bulk_items", "Bulk items, by result", ["outcome"], registry=r)

    def watch_indices(self, doc_counts: Callable[[], dict[str, int]]) -> None:
        self.registry.register(_IndexCollector(doc_counts))

    def watch_query_cache(self, stats: Callable[[], Any]) -> None:
        self.registry.register(_QueryCacheCollector(stats))

    def render(self) -> bytes:
        return generate_latest(self.registry)
