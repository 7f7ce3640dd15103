"""Ingest and search pipelines built from the JSON bodies of ``PUT _ingest/pipeline/<id>`` and
``PUT _search/pipeline/<id>`` (or the same keys in a YAML file).

Loading reads every processor, collects every processor's error, and raises one ``ProcessorConfigError`` listing
them all. Common processor options: ``tag``, ``description``, ``ignore_failure``, ``on_failure`` (ingest) and
``if`` (ingest; the subset of Painless described in ``processors.condition``).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from opensearch_contract.errors import IllegalArgument, OpenSearchError
from processors import registry
from processors.condition import compile_condition
from processors.config import ConfigReader
from processors.document import IngestDocument
from processors.errors import ConfigurationError, processor_config_error
from processors.ingest.base import CommonOptions, IngestProcessor, Lookup, RunContext
from processors.ml_inference_search import MLInferenceRequestProcessor, MLInferenceResponseProcessor
from processors.mlclient import MLClient
from processors.rerank import MLOpenSearchRerank
from processors.search_processors import HybridCombiner, NeuralQueryEnricher, SearchProcessor
from processors.two_phase import NeuralSparseTwoPhaseProcessor

INGEST_KEYS = {"description", "processors", "on_failure", "version", "_meta"}
SEARCH_KEYS = {"description", "request_processors", "response_processors", "phase_results_processors", "version",
               "_meta"}


def _as_error(exc: Exception, processor_type: str | None, tag: str | None) -> OpenSearchError:
    if isinstance(exc, ConfigurationError):
        return exc
    if isinstance(exc, OpenSearchError):
        err = ConfigurationError(processor_type, tag, None, exc.reason, error_type=exc.error_type)
        return err
    return ConfigurationError(processor_type, tag, None, str(exc), error_type="illegal_argument_exception")


def _build(r: ConfigReader, factory: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run a processor's factory, then reject leftover keys. If the factory fails while a leftover key looks like a
    misspelling of a property it read (``field_mapp``: ``field_map`` is missing), that key is the error."""
    try:
        processor = factory(r, *args, **kwargs)
    except Exception:
        misspelt = r.misspelt()
        if misspelt is not None:
            raise misspelt from None
        raise
    r.reject_leftovers()
    return processor


def _processor_entries(items: Any, where: str, errors: list[OpenSearchError]) -> list[tuple[str, Any]]:
    if items is None:
        return []
    if not isinstance(items, list):
        errors.append(ConfigurationError(None, None, where, "property isn't a list, but of type "
                                                            f"[{type(items).__name__}]"))
        return []
    entries: list[tuple[str, Any]] = []
    for item in items:
        if not isinstance(item, dict) or not item:
            errors.append(ConfigurationError(None, None, where, f"each processor must be an object with one key, "
                                                                f"the processor type; got [{item!r}]"))
            continue
        entries.extend(item.items())
    return entries


def _read_ingest_processors(items: Any, where: str, errors: list[OpenSearchError]) -> list[IngestProcessor]:
    processors = []
    for ptype, config in _processor_entries(items, where, errors):
        proc = _read_ingest_processor(ptype, config, errors)
        if proc is not None:
            processors.append(proc)
    return processors


def _read_ingest_processor(ptype: str, config: Any, errors: list[OpenSearchError]) -> IngestProcessor | None:
    if config is None:
        errors.append(ConfigurationError(ptype, None, None, f"the config of processor [{ptype}] cannot be null"))
        return None
    if not isinstance(config, dict):
        errors.append(ConfigurationError(ptype, None, None, "property isn't a map, but of type "
                                                            f"[{type(config).__name__}]"))
        return None
    config = dict(config)
    tag = None
    try:
        tag = ConfigReader(ptype, None, config).optional_string("tag")
        r = ConfigReader(ptype, tag, config)
        options = CommonOptions(tag=tag, description=r.optional_string("description"),
                                ignore_failure=r.boolean("ignore_failure", False))
        raw_if = r.value("if")
        if raw_if is not None:
            try:
                options.condition = compile_condition(raw_if)
                options.raw_if = raw_if
            except ValueError as exc:
                raise r.error("if", str(exc)) from None
        factory = registry.INGEST_PROCESSORS.get(ptype)
        on_failure_items = r.optional_list("on_failure")
        if factory is None:
            raise ConfigurationError(ptype, tag, None, f"No processor type exists with name [{ptype}]")
        if on_failure_items is not None:
            nested_errors: list[OpenSearchError] = []
            options.on_failure = _read_ingest_processors(on_failure_items, "on_failure", nested_errors)
            errors.extend(nested_errors)
            if not on_failure_items:
                raise r.error("on_failure", "processors list cannot be empty")
        return _build(r, factory, options)
    except Exception as exc:  # collected: every processor's error is reported together
        errors.append(_as_error(exc, ptype, tag))
        return None


class IngestPipeline:
    def __init__(self, pipeline_id: str, body: dict[str, Any], processors: list[IngestProcessor],
                 on_failure: list[IngestProcessor], ml: MLClient) -> None:
        self.id = pipeline_id
        self.body = body
        self.description = body.get("description")
        self.processors = processors
        self.on_failure = on_failure
        self.ml = ml

    @classmethod
    def from_body(cls, pipeline_id: str, body: dict[str, Any], *, ml: MLClient) -> IngestPipeline:
        body = copy.deepcopy(body)
        errors: list[OpenSearchError] = []
        if not isinstance(body, dict):
            raise processor_config_error([ConfigurationError(None, None, None, "pipeline body must be an object")])
        unknown = sorted(set(body) - INGEST_KEYS)
        if unknown:
            errors.append(ConfigurationError(None, None, None, f"pipeline [{pipeline_id}] doesn't support one or "
                                                               f"more provided configuration parameters {unknown}"))
        if "processors" not in body:
            errors.append(ConfigurationError(None, None, "processors", "required property is missing"))
        work = copy.deepcopy(body)
        processors = _read_ingest_processors(work.get("processors"), "processors", errors)
        on_failure = _read_ingest_processors(work.get("on_failure"), "on_failure", errors)
        if errors:
            raise processor_config_error(errors)
        return cls(pipeline_id, body, processors, on_failure, ml)

    async def prepare(self) -> None:
        """Resolve model names to ids through the ML node (also done lazily by the first run)."""
        for proc in [*self.processors, *self.on_failure]:
            await proc.prepare(self.ml)
            for handler in proc.options.on_failure:
                await handler.prepare(self.ml)

    def model_refs(self) -> list[str]:
        refs: list[str] = []
        for proc in [*self.processors, *self.on_failure]:
            refs.extend(proc.model_refs())
        return refs

    async def run(self, docs: list[IngestDocument], *, lookup: Lookup | None = None
                  ) -> list[IngestDocument | OpenSearchError]:
        ctx = RunContext(ml=self.ml, lookup=lookup)
        failed: dict[int, OpenSearchError] = {}
        stopped: set[int] = set()  # handled by the pipeline's on_failure: remaining processors are skipped
        for proc in self.processors:
            active = [i for i in range(len(docs)) if i not in failed and i not in stopped
                      and (proc.options.condition is None or proc.options.condition(docs[i]))]
            if not active:
                continue
            errs = await proc.execute([docs[i] for i in active], ctx)
            for i, err in zip(active, errs):
                if err is None or proc.options.ignore_failure:
                    continue
                handled = await self._handle(proc.options.on_failure, docs[i], err, proc, ctx)
                if handled is None:
                    continue
                handled = await self._handle(self.on_failure, docs[i], handled, proc, ctx)
                if handled is None:
                    stopped.add(i)
                else:
                    failed[i] = _doc_error(handled, proc)
        return [failed.get(i, doc) for i, doc in enumerate(docs)]

    async def _handle(self, handlers: list[IngestProcessor], doc: IngestDocument, err: Exception,
                      proc: IngestProcessor, ctx: RunContext) -> Exception | None:
        """Run on_failure handlers for one document; None when they succeed, else the error to report."""
        if not handlers:
            return err
        meta = {"on_failure_message": str(err), "on_failure_processor_type": proc.TYPE,
                "on_failure_processor_tag": proc.tag}
        doc.source.setdefault("_ingest", {}).update(meta)
        try:
            for handler in handlers:
                (h_err,) = await handler.execute([doc], ctx)
                if h_err is not None and not handler.options.ignore_failure:
                    return h_err
            return None
        finally:
            doc.source.pop("_ingest", None)


def _doc_error(err: Exception, proc: IngestProcessor) -> OpenSearchError:
    if isinstance(err, OpenSearchError):
        out = OpenSearchError(err.reason, status=err.status, error_type=err.error_type, extra=dict(err.extra))
    else:
        out = IllegalArgument(str(err))
        out = OpenSearchError(out.reason, status=400, error_type=out.error_type)
    out.extra.setdefault("processor_type", proc.TYPE)
    if proc.tag:
        out.extra.setdefault("processor_tag", proc.tag)
    return out


def _read_search_processors(items: Any, where: str, table: dict[str, Callable[..., Any]],
                            errors: list[OpenSearchError]) -> list[SearchProcessor]:
    out = []
    for ptype, config in _processor_entries(items, where, errors):
        if not isinstance(config, dict):
            errors.append(ConfigurationError(ptype, None, None, "property isn't a map, but of type "
                                                                f"[{type(config).__name__}]"))
            continue
        config = dict(config)
        tag = None
        try:
            tag = ConfigReader(ptype, None, config).optional_string("tag")
            r = ConfigReader(ptype, tag, config)
            common = {"tag": tag, "description": r.optional_string("description"),
                      "ignore_failure": r.boolean("ignore_failure", False)}
            factory = table.get(ptype)
            if factory is None:
                raise ConfigurationError(ptype, tag, None, f"No processor type exists with name [{ptype}]")
            out.append(_build(r, factory, **common))
        except Exception as exc:
            errors.append(_as_error(exc, ptype, tag))
    return out


class SearchPipeline:
    def __init__(self, pipeline_id: str, body: dict[str, Any], request: list[SearchProcessor],
                 response: list[SearchProcessor], phase: list[SearchProcessor], ml: MLClient) -> None:
        self.id = pipeline_id
        self.body = body
        self.request_processors = request
        self.response_processors = response
        self.phase_results_processors = phase
        self.ml = ml

    @classmethod
    def from_body(cls, pipeline_id: str, body: dict[str, Any], *, ml: MLClient) -> SearchPipeline:
        body = copy.deepcopy(body)
        if not isinstance(body, dict):
            raise processor_config_error([ConfigurationError(None, None, None, "pipeline body must be an object")])
        errors: list[OpenSearchError] = []
        unknown = sorted(set(body) - SEARCH_KEYS)
        if unknown:
            errors.append(ConfigurationError(None, None, None, f"pipeline [{pipeline_id}] doesn't support one or "
                                                               f"more provided configuration parameters {unknown}"))
        work = copy.deepcopy(body)
        request = _read_search_processors(work.get("request_processors"), "request_processors",
                                          registry.SEARCH_REQUEST_PROCESSORS, errors)
        response = _read_search_processors(work.get("response_processors"), "response_processors",
                                           registry.SEARCH_RESPONSE_PROCESSORS, errors)
        phase = _read_search_processors(work.get("phase_results_processors"), "phase_results_processors",
                                        registry.SEARCH_PHASE_RESULTS_PROCESSORS, errors)
        if len(phase) > 1:
            errors.append(ConfigurationError(phase[1].TYPE, phase[1].tag, None,
                                             "only one normalization-processor or score-ranker-processor may be "
                                             "used in a search pipeline"))
        if errors:
            raise processor_config_error(errors)
        return cls(pipeline_id, body, request, response, phase, ml)

    @property
    def enrichers(self) -> list[NeuralQueryEnricher]:
        return [p for p in self.request_processors if isinstance(p, NeuralQueryEnricher)]

    @property
    def combiner(self) -> HybridCombiner | None:
        return next((p for p in self.phase_results_processors if isinstance(p, HybridCombiner)), None)

    @property
    def two_phase(self) -> NeuralSparseTwoPhaseProcessor | None:
        """The last ``neural_sparse_two_phase_processor`` (each one rewrites the request anew in OpenSearch)."""
        found = [p for p in self.request_processors if isinstance(p, NeuralSparseTwoPhaseProcessor)]
        return found[-1] if found else None

    @property
    def ml_inference(self) -> list[MLInferenceRequestProcessor | MLInferenceResponseProcessor]:
        return [p for p in [*self.request_processors, *self.response_processors]
                if isinstance(p, (MLInferenceRequestProcessor, MLInferenceResponseProcessor))]

    def model_refs(self) -> list[str]:
        rerankers = [p.model_id for p in self.response_processors if isinstance(p, MLOpenSearchRerank)]
        inference = [m for p in self.ml_inference for m in p.model_refs()]
        return [m for e in self.enrichers for m in e.model_refs()] + rerankers + inference

    async def process_request(self, body: dict[str, Any]) -> dict[str, Any]:
        """The request processors that rewrite the search body itself (``ml_inference``), in pipeline order; the
        others (enricher, two-phase) act where the search runner rewrites neural clauses."""
        for processor in self.request_processors:
            if isinstance(processor, MLInferenceRequestProcessor):
                body = await processor.process_request(body, self.ml)
        return body

    async def prepare(self) -> None:
        """Resolve the model names of the enrichers and ``ml_inference`` processors to ids through the ML node."""
        for processor in self.ml_inference:
            processor.cfg.model_id = await self.ml.resolve_model_id(processor.cfg.model_id)
        for enricher in self.enrichers:
            if enricher.default_model_id:
                enricher.default_model_id = await self.ml.resolve_model_id(enricher.default_model_id)
            for name, ref in list(enricher.field_defaults.items()):
                enricher.field_defaults[name] = await self.ml.resolve_model_id(ref)


# -- files ---------------------------------------------------------------------------------------------------------

@dataclass
class PipelineFile:
    path: Path
    kind: str  # "ingest" | "search"
    id: str
    body: dict[str, Any]


def load_pipeline_file(path: str | Path) -> PipelineFile:
    """Read a YAML (or JSON) pipeline file. Its kind comes from its keys (``processors`` -> ingest;
    ``request_processors`` / ``response_processors`` / ``phase_results_processors`` -> search), else from the
    folder it sits in (``ingest/`` or ``search/``). Its id is the file name without extension."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise IllegalArgument(f"cannot read pipeline file [{p}]: {exc.strerror}") from None
    try:
        body = json.loads(text) if p.suffix == ".json" else yaml.safe_load(text)
    except (yaml.YAMLError, json.JSONDecodeError) as exc:
        raise IllegalArgument(f"pipeline file [{p}] is not valid {'JSON' if p.suffix == '.json' else 'YAML'}: "
                              f"{exc}") from None
    if not isinstance(body, dict):
        raise IllegalArgument(f"pipeline file [{p}] must hold an object (the pipeline body)")
    if "processors" in body:
        kind = "ingest"
    elif set(body) & {"request_processors", "response_processors", "phase_results_processors"}:
        kind = "search"
    elif p.parent.name in ("ingest", "search"):
        kind = p.parent.name
    else:
        raise IllegalArgument(f"pipeline file [{p}] is neither an ingest pipeline (processors) nor a search "
                              f"pipeline (request_processors, response_processors, phase_results_processors)")
    return PipelineFile(p, kind, p.stem, body)


def build_pipeline(pf: PipelineFile, *, ml: MLClient) -> IngestPipeline | SearchPipeline:
    if pf.kind == "ingest":
        return IngestPipeline.from_body(pf.id, pf.body, ml=ml)
    return SearchPipeline.from_body(pf.id, pf.body, ml=ml)


async def resolve_model_names(kind: str, body: dict[str, Any], *, ml: MLClient) -> dict[str, Any]:
    """A copy of ``body`` with every model name replaced by its model id, ready for OpenSearch."""
    out = copy.deepcopy(body)
    if kind == "ingest":
        for key in ("processors", "on_failure"):
            await _resolve_ingest_list(out.get(key) or [], ml)
    else:
        for item in out.get("request_processors") or []:
            cfg = item.get(NeuralQueryEnricher.TYPE) if isinstance(item, dict) else None
            if isinstance(cfg, dict):
                if isinstance(cfg.get("default_model_id"), str):
                    cfg["default_model_id"] = await ml.resolve_model_id(cfg["default_model_id"])
                for field_name, ref in (cfg.get("neural_field_default_id") or {}).items():
                    cfg["neural_field_default_id"][field_name] = await ml.resolve_model_id(str(ref))
        for item in [*(out.get("request_processors") or []), *(out.get("response_processors") or [])]:
            cfg = item.get("ml_inference") if isinstance(item, dict) else None
            if isinstance(cfg, dict) and isinstance(cfg.get("model_id"), str):
                cfg["model_id"] = await ml.resolve_model_id(cfg["model_id"])
        for item in out.get("response_processors") or []:
            rerank = item.get("rerank") if isinstance(item, dict) else None
            cfg = rerank.get("ml_opensearch") if isinstance(rerank, dict) else None
            if isinstance(cfg, dict) and isinstance(cfg.get("model_id"), str):
                cfg["model_id"] = await ml.resolve_model_id(cfg["model_id"])
    return out


async def _resolve_ingest_list(items: list[Any], ml: MLClient) -> None:
    for item in items:
        if not isinstance(item, dict):
            continue
        for cfg in item.values():
            if isinstance(cfg, dict):
                if isinstance(cfg.get("model_id"), str):
                    cfg["model_id"] = await ml.resolve_model_id(cfg["model_id"])
                await _resolve_ingest_list(cfg.get("on_failure") or [], ml)
