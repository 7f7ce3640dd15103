"""Prometheus metrics of the ML node, one registry per app so several nodes can live in one process (tests)."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

PREFIX = "mlnode"
_SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_BATCH = (1, 2, 4, 8, 16, 32, 64, 128, 256)


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.requests = Counter(f"{PREFIX}_predict_requests", "Predict requests received", ["model_id"], registry=r)
        self.failures = Counter(
            f"{PREFIX}_predict_failures", "Predict requests that failed, by reason", ["model_id", "reason"], registry=r
        )
        self.queue_size = Gauge(f"{PREFIX}_queue_size", "Predict requests waiting", ["model_id"], registry=r)
        self.queue_seconds = Histogram(
            f"{PREFIX}_queue_duration_seconds",
            "Time a request waited in the queue",
            ["model_id"],
            buckets=_SECONDS,
            registry=r,
        )
        self.tokenization_seconds = Histogram(
            f"{PREFIX}_tokenization_duration_seconds",
            "Token counting per request",
            ["model_id"],
            buckets=_SECONDS,
            registry=r,
        )
        self.inference_seconds = Histogram(
            f"{PREFIX}_inference_duration_seconds", "Runtime time per batch", ["model_id"], buckets=_SECONDS, registry=r
        )
        self.request_seconds = Histogram(
            f"{PREFIX}_request_duration_seconds",
            "Predict request end to end",
            ["model_id"],
            buckets=_SECONDS,
            registry=r,
        )
        self.batch_size = Histogram(
            f"{PREFIX}_batch_size", "Texts per inference batch", ["model_id"], buckets=_BATCH, registry=r
        )
        self.batch_requests = Histogram(
            f"{PREFIX}_batch_requests",
            "Requests merged into one inference batch",
            ["model_id"],
            buckets=_BATCH,
            registry=r,
        )
        self.batch_tokens = Histogram(
            f"{PREFIX}_batch_tokens",
            "Tokens (after truncation) per inference batch",
            ["model_id"],
            buckets=(64, 256, 1024, 4096, 16384, 65536),
            registry=r,
        )
        self.truncated = Counter(
            f"{PREFIX}_truncated_inputs", "Texts longer than the model's max length", ["model_id"], registry=r
        )
        self.dropped = Counter(
            f"{PREFIX}_dropped_requests", "Queued requests dropped because their client left", ["model_id"], registry=r
        )
        self.stuck_calls = Gauge(
            f"{PREFIX}_stuck_inference_calls", "Inference calls past the predict timeout that have not returned",
            ["model_id"], registry=r,
        )
        self.deployed = Gauge(f"{PREFIX}_deployed_models", "Models deployed on this node", registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)
