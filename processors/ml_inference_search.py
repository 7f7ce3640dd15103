"""``ml_inference`` search request and response processors (ML Commons ``MLInferenceSearchRequestProcessor`` and
``MLInferenceSearchResponseProcessor``) for local models.

Request: each ``input_map`` entry reads query fields (JSONPath into the search body), one predict call fills
``model_input``; the model output is written into the query at the ``output_map`` paths, or substituted into
``query_template`` (``${<output field>}``), which then becomes the search body.

Response: with ``one_to_one`` false (the default) one predict call per ``input_map`` entry gets the mapped field of
every hit (a list, one item per hit); an output list as long as the hits that had the fields is handed out one item
per hit. With ``one_to_one`` true each hit gets its own call (at most ``max_prediction_tasks`` at once). Paths
starting ``_request.`` / ``$._request.`` read the search request instead of the hit. The model output goes into each
hit's ``_source`` under the ``output_map`` key, or into ``ext.ml_inference`` of the response.

Where ML Commons answers ``ignore_failure`` with the request or response unchanged, so do these.
"""

from __future__ import annotations

import asyncio
import copy
import json
from dataclasses import dataclass
from typing import Any, ClassVar

from opensearch_contract.errors import IllegalArgument, OpenSearchError, ParsingError
from processors import ml_inference as mi
from processors.config import ConfigReader
from processors.mlclient import MLClient
from processors.search_processors import SearchProcessor

REQUEST_PREFIX = "_request."


async def _needs_ml(config: mi.MLInferenceConfig, ml: MLClient | None) -> MLClient:
    """The ML client, with the model name (if one was given) resolved to its id once."""
    if ml is None:
        raise IllegalArgument(f"processor [{mi.TYPE}] needs an ML node to run model [{config.model_id}], and none "
                              f"is configured")
    config.model_id = await ml.resolve_model_id(config.model_id)
    return ml


@dataclass
class MLInferenceRequestProcessor(SearchProcessor):
    TYPE: ClassVar[str] = mi.TYPE
    config: mi.MLInferenceConfig | None = None

    @classmethod
    def from_config(cls, r: ConfigReader, **common: Any) -> MLInferenceRequestProcessor:
        return cls(config=mi.read_config(r, search=True), **common)

    @property
    def cfg(self) -> mi.MLInferenceConfig:
        assert self.config is not None
        return self.config

    def model_refs(self) -> list[str]:
        return [self.cfg.model_id]

    async def process_request(self, body: dict[str, Any], ml: MLClient | None) -> dict[str, Any]:
        try:
            return await self._rewrite(body, ml)
        except Exception as exc:
            if self.ignore_failure:
                return body
            raise mi.as_error(exc) from None

    async def _rewrite(self, body: dict[str, Any], ml: MLClient | None) -> dict[str, Any]:
        config = self.cfg
        inputs = config.combined_input_maps()
        if not inputs:
            return body
        query_string = json.dumps(body, separators=(",", ":"))
        if not self._required_fields_present(body, query_string):
            return body
        bodies = []
        for mapping in inputs:
            values = {model_field: mi.to_json(mi.read_path(body, query_field))
                      for model_field, query_field in mapping.items() if mi.has_path(body, query_field)}
            bodies.append(mi.build_predict_body(config, values))
        outputs = await mi.predict_batched(await _needs_ml(config, ml), config, bodies)
        for output in outputs:
            if isinstance(output, Exception):
                raise output
        out_maps = config.combined_output_maps()
        if config.query_template is None:
            query = copy.deepcopy(body)
            for index, output in enumerate(outputs):
                for new_field, model_field in out_maps[index].items():
                    _set_in_query(query, new_field, mi.output_value(output, model_field, config))  # type: ignore[arg-type]
            return query
        filled: dict[str, str] = {}
        for index, output in enumerate(outputs):
            for new_field, model_field in out_maps[index].items():
                value = mi.output_value(output, model_field, config)  # type: ignore[arg-type]
                filled[new_field] = mi.to_json(value) if isinstance(value, dict) else mi.java_string(value)
        text = mi.substitute(config.query_template, filled, "")
        try:
            new_body = json.loads(text)
        except ValueError as exc:
            raise ParsingError(f"[query_template] of processor [{mi.TYPE}] is not a valid search body after "
                               f"substitution: {exc}: {text[:300]}") from None
        if not isinstance(new_body, dict):
            raise ParsingError(f"[query_template] of processor [{mi.TYPE}] must be a JSON object, got: {text[:300]}")
        return new_body

    def _required_fields_present(self, body: dict[str, Any], query_string: str) -> bool:
        """ML Commons' validateQueryFieldInQueryString: a missing input field (or a missing ``query.`` output path
        when there is no template) fails, or with ``ignore_missing`` leaves the request as it is."""
        config = self.cfg
        wanted = [f for m in config.input_maps or [] for f in m.values()]
        if config.query_template is None:
            wanted += [f for m in config.output_maps or [] for f in m if f.startswith(("query.", "$.query."))]
        for path in wanted:
            if not mi.has_path(body, path):
                if config.ignore_missing:
                    return False
                raise IllegalArgument(f"cannot find field: {path} in query string: {query_string}")
        return True


def _set_in_query(query: dict[str, Any], path: str, value: Any) -> None:
    if path.startswith(("$.ext.", "ext.")):
        node: Any = query
        for part in path.removeprefix("$.").split(".")[:-1]:
            node = node.setdefault(part, {}) if isinstance(node, dict) else node
    places = mi.match_paths(query, path)
    if not places and path.startswith(("$.ext.", "ext.")):
        places = [tuple(path.removeprefix("$.").split("."))]
    for place in places:
        mi.set_path(query, place, copy.deepcopy(value))


@dataclass
class MLInferenceResponseProcessor(SearchProcessor):
    TYPE: ClassVar[str] = mi.TYPE
    config: mi.MLInferenceConfig | None = None

    @classmethod
    def from_config(cls, r: ConfigReader, **common: Any) -> MLInferenceResponseProcessor:
        return cls(config=mi.read_config(r, search=True, response=True), **common)

    @property
    def cfg(self) -> mi.MLInferenceConfig:
        assert self.config is not None
        return self.config

    def model_refs(self) -> list[str]:
        return [self.cfg.model_id]

    async def process(self, request: dict[str, Any], response: dict[str, Any], ml: MLClient | None
                      ) -> dict[str, Any]:
        hits = (response.get("hits") or {}).get("hits") or []
        if not hits:
            return response
        out = copy.deepcopy(response)
        try:
            client = await _needs_ml(self.cfg, ml)
            new_hits = out["hits"]["hits"]
            if not self.cfg.one_to_one:
                await self._rewrite(new_hits, request, out, client)
            else:
                gate = asyncio.Semaphore(self.cfg.max_prediction_tasks)

                async def one(hit: dict[str, Any]) -> None:
                    async with gate:
                        await self._rewrite([hit], request, out, client)

                await asyncio.gather(*(one(hit) for hit in new_hits))
        except Exception as exc:
            if self.ignore_failure:
                return response
            raise mi.as_error(exc) from None
        return out

    def _doc_missing(self, source: Any, required: mi.Mapping) -> bool:
        model_config = self.cfg.model_config or {}
        return any(not (isinstance(source, dict) and mi.has_path(source, f)) and f not in model_config
                   for f in required.values() if not _is_request_path(f))

    async def _rewrite(self, hits: list[dict[str, Any]], request: dict[str, Any], response: dict[str, Any],
                       ml: MLClient) -> None:
        config = self.cfg
        inputs = config.combined_input_maps()
        query_string = json.dumps(request, separators=(",", ":"))
        hit_counts: dict[int, int] = {}
        bodies = []
        for index in range(max(len(inputs), 1)):
            params: dict[str, Any] = {}
            if inputs:
                mapping = inputs[index]
                self._check_request_fields(request, query_string, mapping)
                required = (config.input_maps or [])[index] if len(config.input_maps or []) > index else {}
                for hit in hits:
                    source = hit.get("_source")
                    if self._doc_missing(source, required):
                        if not config.ignore_missing:
                            raise IllegalArgument(f"cannot find all required input fields: {list(mapping.values())} "
                                                  f"in hit:{json.dumps(hit)} and query body:{query_string}")
                        continue
                    hit_counts[index] = hit_counts.get(index, 0) + 1
                    for model_field, doc_field in mapping.items():
                        if _is_request_path(doc_field):
                            if model_field not in params:
                                value = _read(request, doc_field.replace(REQUEST_PREFIX, "", 1))
                                if value is not None:
                                    params[model_field] = mi.to_json(value)
                        else:
                            value = _read(source, doc_field)
                            if value is not None:
                                self._add(params, model_field, value)
            else:
                for hit in hits:
                    hit_counts[index] = hit_counts.get(index, 0) + 1
                    for name, value in (hit.get("_source") or {}).items():
                        self._add(params, name, value)
            bodies.append(mi.build_predict_body(config, mi.parameter_map(params)))
        outputs = await mi.predict_batched(ml, config, bodies)
        for output in outputs:
            if isinstance(output, Exception):
                raise output
        self._write(hits, outputs, hit_counts, response)  # type: ignore[arg-type]

    def _check_request_fields(self, request: dict[str, Any], query_string: str, mapping: mi.Mapping) -> None:
        model_config = self.cfg.model_config or {}
        for path in mapping.values():
            if not _is_request_path(path):
                continue
            inner = path.replace(REQUEST_PREFIX, "", 1)
            if not mi.has_path(request, inner) and inner not in model_config and not self.cfg.ignore_missing:
                raise IllegalArgument(f"Missing required input field in query body. input_map: "
                                      f"{list(mapping.values())}, query body:{query_string}")

    def _add(self, params: dict[str, Any], name: str, value: Any) -> None:
        if self.cfg.one_to_one:
            params[name] = value
        else:
            params.setdefault(name, []).append(value)

    def _write(self, hits: list[dict[str, Any]], outputs: list[dict[str, Any]], hit_counts: dict[int, int],
               response: dict[str, Any]) -> None:
        config = self.cfg
        inputs = config.combined_input_maps()
        out_maps = config.combined_output_maps()
        handed_out: dict[tuple[int, str | None], int] = {}
        for hit in hits:
            source = hit.get("_source")
            if not isinstance(source, dict):
                continue
            new_source = dict(source)
            for index, output in enumerate(outputs):
                mapping: dict[str, str | None] = dict(out_maps[index]) if out_maps else {mi.DEFAULT_OUTPUT_FIELD: None}
                required = (config.input_maps or [])[index] if len(config.input_maps or []) > index else {}
                if inputs and self._doc_missing(source, required):
                    continue
                for new_field, model_field in mapping.items():
                    key = (index, model_field)
                    handed_out[key] = handed_out.get(key, -1) + 1
                    value = mi.output_value(output, model_field, config)
                    if new_field.startswith(mi.EXTENSION_PREFIX):
                        name = new_field.replace(mi.EXTENSION_PREFIX + ".", "", 1)
                        response.setdefault("ext", {}).setdefault("ml_inference", {})[name] = value
                        continue
                    if (index in hit_counts and isinstance(value, list) and len(value) == hit_counts[index]
                            and not config.one_to_one):
                        value = value[handed_out[key]]
                    if new_field in source and not config.override:
                        continue
                    new_source[new_field] = value
            hit["_source"] = new_source


def _is_request_path(path: str) -> bool:
    return path.startswith(("$." + REQUEST_PREFIX, REQUEST_PREFIX))


def _read(obj: Any, path: str) -> Any:
    try:
        value = mi.read_path(obj, path)
    except OpenSearchError:
        return None
    return None if value is mi.MISSING else value
