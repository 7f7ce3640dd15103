"""``ml_inference`` ingest processor (ML Commons ``MLInferenceIngestProcessor``) for local models.

Per document and per ``input_map`` entry ML Commons makes one predict call. Here the documents of a pipeline batch
whose predict bodies differ only in ``text_docs`` share one call (their texts concatenated, the results split back
per document), at most ``max_prediction_tasks`` calls at once: the stored fields are the same, the calls fewer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from opensearch_contract.errors import IllegalArgument
from processors import ml_inference as mi
from processors.config import ConfigReader
from processors.document import IngestDocument
from processors.ingest.base import CommonOptions, IngestProcessor, RunContext
from processors.mlclient import MLClient


@dataclass
class _Pending:
    """One document's prediction for one ``input_map`` entry: its body and the output fields still to write."""

    doc: int
    body: dict[str, Any]
    outputs: dict[str, str] | None  # new document field -> model output field; None: the whole output


class MLInferenceIngestProcessor(IngestProcessor):
    TYPE = mi.TYPE

    def __init__(self, options: CommonOptions, config: mi.MLInferenceConfig) -> None:
        self.options = options
        self.config = config
        self._resolved = False

    @classmethod
    def from_config(cls, r: ConfigReader, options: CommonOptions) -> MLInferenceIngestProcessor:
        return cls(options, mi.read_config(r, search=False))

    def model_refs(self) -> list[str]:
        return [self.config.model_id]

    async def prepare(self, ml: MLClient) -> None:
        if not self._resolved:
            self.config.model_id = await ml.resolve_model_id(self.config.model_id)
            self._resolved = True

    async def execute(self, docs: list[IngestDocument], ctx: RunContext) -> list[Exception | None]:
        if ctx.ml is None:
            return [IllegalArgument(f"processor [{self.TYPE}] needs an ML node to run model "
                                    f"[{self.config.model_id}], and none is configured")] * len(docs)
        await self.prepare(ctx.ml)
        errors: list[Exception | None] = [None] * len(docs)
        rounds = max(len(self.config.input_maps or []), 1)
        for index in range(rounds):
            pending: list[_Pending] = []
            for d, doc in enumerate(docs):
                if errors[d] is not None:
                    continue
                try:
                    item = self._plan(doc, index)
                except Exception as exc:  # a bad document fails alone
                    errors[d] = exc
                    continue
                if item is not None:
                    item.doc = d
                    pending.append(item)
            outputs = await mi.predict_batched(ctx.ml, self.config, [p.body for p in pending])
            for item, output in zip(pending, outputs):
                if isinstance(output, Exception):
                    errors[item.doc] = output
                    continue
                try:
                    self._write(docs[item.doc], output, item.outputs)
                except Exception as exc:
                    errors[item.doc] = mi.as_error(exc)
        return errors

    # -- one document ------------------------------------------------------------------------------------------------
    def _plan(self, doc: IngestDocument, index: int) -> _Pending | None:
        """The predict body for one document, or None when every output field already exists (and no override)."""
        view = doc.source
        outputs: dict[str, str] | None = None
        if self.config.output_maps is not None:
            outputs = {}
            for new_field, model_field in self.config.output_maps[index].items():
                places = mi.new_field_locations(view, new_field)
                existing = sum(1 for p in places if _exists(view, p))
                if self.config.override or existing != len(places):
                    outputs[new_field] = model_field
            if not outputs:
                return None
        values: dict[str, str] = {}
        if not self.config.input_maps:
            for name in view:
                self._read_input(view, name, name, values)
        else:
            for model_field, doc_field in self.config.input_maps[index].items():
                if not self._read_input(view, doc_field, model_field, values):
                    return None
        return _Pending(doc=-1, body=mi.build_predict_body(self.config, values), outputs=outputs)

    def _read_input(self, view: dict[str, Any], doc_field: str, model_field: str, values: dict[str, str]) -> bool:
        """A document field (dot path first, then JSONPath) as the model input's text (JSON, strings bare). False when
        it is missing and ``ignore_missing`` is set: the documentation says missing fields are then ignored, so the
        document is left as it is (ML Commons would instead send the template with the placeholder unfilled)."""
        parts = mi.dot_path_parts(view, doc_field) if doc_field else None
        if parts is not None:
            values[model_field] = mi.to_json(_get(view, parts))
            return True
        missing = f"Cannot find field name defined from input map: {doc_field}"
        if not mi.is_json_path(doc_field):
            raise IllegalArgument(missing)
        value = mi.read_path(view, doc_field)
        if value is mi.MISSING or value is None or value == []:
            if not self.config.ignore_missing:
                raise IllegalArgument(missing)
            return False
        values[model_field] = mi.to_json(value)
        return True

    def _write(self, doc: IngestDocument, output: dict[str, Any], outputs: dict[str, str] | None) -> None:
        if not outputs:
            self._append(doc, output, None, mi.DEFAULT_OUTPUT_FIELD)
            return
        for new_field, model_field in outputs.items():
            self._append(doc, output, model_field, new_field)

    def _append(self, doc: IngestDocument, output: dict[str, Any], model_field: str | None, new_field: str) -> None:
        value = mi.output_value(output, model_field, self.config)
        view = doc.source
        places = mi.new_field_locations(view, new_field)
        if len(places) == 1:
            mi.set_path(doc.source, places[0], value)
            return
        if not isinstance(value, list):
            raise IllegalArgument("Model output is not an array, cannot assign to array in documents.")
        if len(value) != len(places):
            raise IllegalArgument(f"the prediction field: {model_field} is an array in size of {len(value)} but the "
                                  f"document field array from field {new_field} is in size of {len(places)}")
        for place, item in zip(places, value):
            mi.set_path(doc.source, place, item)


def _get(obj: Any, parts: tuple[Any, ...]) -> Any:
    for part in parts:
        obj = obj[part]
    return obj


def _exists(obj: Any, parts: tuple[Any, ...]) -> bool:
    for part in parts:
        if isinstance(obj, dict) and part in obj:
            obj = obj[part]
        elif isinstance(obj, list) and isinstance(part, int) and -len(obj) <= part < len(obj):
            obj = obj[part]
        else:
            return False
    return True
