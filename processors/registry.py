"""Processor registries keyed by OpenSearch type names. Never import a class from a name written in a file."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from processors.ingest.ml_inference_ingest import MLInferenceIngestProcessor
from processors.ingest.sparse_encoding import SparseEncodingProcessor
from processors.ingest.text_chunking import TextChunkingProcessor
from processors.ingest.text_embedding import TextEmbeddingProcessor
from processors.ml_inference_search import MLInferenceRequestProcessor, MLInferenceResponseProcessor
from processors.rerank import RerankProcessor
from processors.search_processors import NeuralQueryEnricher, NormalizationProcessor, ScoreRankerProcessor
from processors.two_phase import NeuralSparseTwoPhaseProcessor

INGEST_PROCESSORS: dict[str, Callable[..., Any]] = {
    TextEmbeddingProcessor.TYPE: TextEmbeddingProcessor.from_config,
    SparseEncodingProcessor.TYPE: SparseEncodingProcessor.from_config,
    TextChunkingProcessor.TYPE: TextChunkingProcessor.from_config,
    MLInferenceIngestProcessor.TYPE: MLInferenceIngestProcessor.from_config,
}

SEARCH_REQUEST_PROCESSORS: dict[str, Callable[..., Any]] = {
    NeuralQueryEnricher.TYPE: NeuralQueryEnricher.from_config,
    NeuralSparseTwoPhaseProcessor.TYPE: NeuralSparseTwoPhaseProcessor.from_config,
    MLInferenceRequestProcessor.TYPE: MLInferenceRequestProcessor.from_config,
}

SEARCH_RESPONSE_PROCESSORS: dict[str, Callable[..., Any]] = {
    RerankProcessor.TYPE: RerankProcessor.from_config,
    MLInferenceResponseProcessor.TYPE: MLInferenceResponseProcessor.from_config,
}

SEARCH_PHASE_RESULTS_PROCESSORS: dict[str, Callable[..., Any]] = {
    NormalizationProcessor.TYPE: NormalizationProcessor.from_config,
    ScoreRankerProcessor.TYPE: ScoreRankerProcessor.from_config,
}
