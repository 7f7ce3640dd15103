"""neuralpipe's processors: neural-search's ingest and search processors as a library.

Public API (the seams other packages use):
``IngestDocument``, ``MLClient``, ``IngestPipeline``, ``SearchPipeline``, ``load_pipeline_file``, ``run_search``,
``mapping_for_pipeline``, and the errors in ``processors.errors``.
"""

from processors.document import IngestDocument
from processors.mapping import mapping_for_pipeline
from processors.mlclient import MLClient
from processors.pipeline import (
                                 IngestPipeline,
                                 PipelineFile,
                                 SearchPipeline,
                                 build_pipeline,
                                 load_pipeline_file,
                                 resolve_model_names,
)
from processors.search import run_search

__all__ = ["IngestDocument", "MLClient", "IngestPipeline", "SearchPipeline", "PipelineFile", "build_pipeline",
           "load_pipeline_file", "resolve_model_names", "run_search", "mapping_for_pipeline"]
