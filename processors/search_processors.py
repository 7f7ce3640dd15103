"""Search pipeline processors: ``neural_query_enricher`` (request) and the hybrid phase-results processors
``normalization-processor`` and ``score-ranker-processor``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from processors import scoring
from processors.config import ConfigReader
from processors.mlclient import MLClient


@dataclass
class SearchProcessor:
    TYPE: ClassVar[str] = ""
    tag: str | None = None
    description: str | None = None
    ignore_failure: bool = False

    async def process(self, request: dict[str, Any], response: dict[str, Any], ml: MLClient | None
                      ) -> dict[str, Any]:
        """A response processor's work on the search response (OpenSearch's SearchResponseProcessor); request and
        phase-results processors do theirs where the search runner calls them."""
        raise NotImplementedError(f"[{self.TYPE}] is not a response processor")


@dataclass
class NeuralQueryEnricher(SearchProcessor):
    """Fills ``model_id`` of neural / neural_sparse clauses that lack one: the field's default, else the global."""

    TYPE: ClassVar[str] = "neural_query_enricher"
    default_model_id: str | None = None
    field_defaults: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_config(cls, r: ConfigReader, **common: Any) -> NeuralQueryEnricher:
        model_id = r.optional_string("default_model_id")
        per_field = r.optional_map("neural_field_default_id")
        if model_id is None and per_field is None:
            raise r.illegal("model Id or neural info map either of them should be provided")
        return cls(default_model_id=model_id, field_defaults={str(k): str(v) for k, v in (per_field or {}).items()},
                   **common)

    def model_for(self, field_name: str) -> str | None:
        return self.field_defaults.get(field_name, self.default_model_id)

    def model_refs(self) -> list[str]:
        return [m for m in [self.default_model_id, *self.field_defaults.values()] if m]


@dataclass
class HybridCombiner(SearchProcessor):
    """Normalizes each sub-query's scores, then combines them per document."""

    normalization: str = "min_max"
    combination: str = "arithmetic_mean"
    weights: list[float] = field(default_factory=list)
    rank_constant: int = scoring.DEFAULT_RANK_CONSTANT

    lower_bounds: list[scoring.Bound] | None = None
    upper_bounds: list[scoring.Bound] | None = None

    def normalize(self, scores: list[list[float]]) -> list[list[float]]:
        if self.normalization == "rrf":
            return scoring.rrf(scores, self.rank_constant)
        if self.lower_bounds or self.upper_bounds:
            for bounds in (self.lower_bounds, self.upper_bounds):
                if bounds and scores and len(bounds) != len(scores):
                    raise ValueError(f"expected bounds array to contain {len(scores)} elements matching the number "
                                     f"of sub-queries, but found a mismatch")
            return scoring.min_max(scores, self.lower_bounds, self.upper_bounds)
        return scoring.NORMALIZATIONS[self.normalization](scores)

    def combine(self, scores: list[float]) -> float:
        return scoring.COMBINATIONS[self.combination](scores, self.weights)


def _read_weights(r: ConfigReader, params: dict[str, Any] | None) -> list[float]:
    params = dict(params or {})
    weights = params.pop("weights", None)
    if params:
        raise r.illegal("provided parameter for combination technique is not supported. supported parameters are "
                        "[weights]", "combination")
    if weights is None:
        return []
    if not isinstance(weights, list) or not all(isinstance(w, (int, float)) and not isinstance(w, bool)
                                                for w in weights):
        raise r.illegal("parameter [weights] must be a collection of numbers", "combination")
    try:
        scoring.validate_weights([float(w) for w in weights])
    except ValueError as exc:
        raise r.illegal(str(exc), "combination") from None
    return [float(w) for w in weights]


_BOUND_KEYS = {"lower_bounds": ("min_score", 0.0), "upper_bounds": ("max_score", 1.0)}


def _read_bounds(r: ConfigReader, technique: str, params: dict[str, Any] | None
                 ) -> dict[str, list[scoring.Bound] | None]:
    """min_max ``lower_bounds`` / ``upper_bounds``: one {mode, min_score|max_score} per sub-query."""
    out: dict[str, list[scoring.Bound] | None] = {"lower_bounds": None, "upper_bounds": None}
    if not params:
        return out
    supported = _BOUND_KEYS if technique == "min_max" else {}
    if set(params) - set(supported):
        raise r.illegal("unrecognized parameters in normalization technique", "normalization")
    for name, value in params.items():
        score_key, default = supported[name]
        if not isinstance(value, list):
            raise r.illegal(f"{name} must be a List", "normalization")
        if len(value) > 5:
            raise r.illegal(f"{name} size {len(value)} should be less than or equal to 5", "normalization")
        bounds = []
        for item in value:
            if not isinstance(item, dict) or set(item) - {"mode", score_key}:
                raise r.illegal("unrecognized parameters in normalization technique", "normalization")
            mode = str(item.get("mode") or "apply").lower()
            if mode not in scoring.BOUND_MODES:
                raise r.illegal(f"invalid mode: {item.get('mode')}, valid values are: apply, clip, ignore",
                                "normalization")
            try:
                score = float(item.get(score_key, default))
            except (TypeError, ValueError):
                raise r.illegal(f"invalid format for {score_key}: must be a valid float value",
                                "normalization") from None
            if not -10_000 <= score <= 10_000:
                raise r.illegal(f"{score_key} must be a valid finite number between -10000.000000 and "
                                f"10000.000000", "normalization")
            bounds.append(scoring.Bound(lower=name == "lower_bounds", mode=mode, score=score))
        out[name] = bounds
    return out


def _clause(r: ConfigReader, name: str) -> tuple[str | None, dict[str, Any] | None]:
    """Read ``{technique, parameters}`` of one clause with the processor's type/tag in its errors."""
    clause = r.optional_map(name)
    if clause is None:
        return None, None
    clause = dict(clause)
    inner = ConfigReader(r.type, r.tag, clause)
    technique = inner.optional_string("technique")
    params = inner.optional_map("parameters")
    if clause:
        raise r.error(name, f"unsupported parameters {sorted(clause)}; supported: [technique, parameters]")
    return technique, params


@dataclass
class NormalizationProcessor(HybridCombiner):
    TYPE: ClassVar[str] = "normalization-processor"

    @classmethod
    def from_config(cls, r: ConfigReader, **common: Any) -> NormalizationProcessor:
        norm, norm_params = _clause(r, "normalization")
        comb, comb_params = _clause(r, "combination")
        norm = norm or "min_max"
        comb = comb or "arithmetic_mean"
        if norm not in scoring.NORMALIZATIONS:
            raise r.illegal(f"provided normalization technique is not supported: [{norm}]; supported: "
                            f"{sorted(scoring.NORMALIZATIONS)}", "normalization")
        bounds = _read_bounds(r, norm, norm_params)
        if comb not in scoring.COMBINATIONS or comb == "rrf":
            raise r.illegal(f"provided combination technique is not supported: [{comb}]; supported: "
                            f"[arithmetic_mean, geometric_mean, harmonic_mean]", "combination")
        weights = _read_weights(r, comb_params)
        allowed = scoring.COMPATIBLE_COMBINATIONS[norm]
        if comb not in allowed:
            raise r.illegal(f"provided combination technique {comb} is not supported for normalization technique "
                            f"{norm}. Supported techniques are: {', '.join(allowed)}", "combination")
        return cls(normalization=norm, combination=comb, weights=weights, lower_bounds=bounds["lower_bounds"],
                   upper_bounds=bounds["upper_bounds"], **common)


@dataclass
class ScoreRankerProcessor(HybridCombiner):
    TYPE: ClassVar[str] = "score-ranker-processor"

    @classmethod
    def from_config(cls, r: ConfigReader, **common: Any) -> ScoreRankerProcessor:
        clause = r.optional_map("combination")
        rank_constant = scoring.DEFAULT_RANK_CONSTANT
        weights: list[float] = []
        if clause is not None:
            clause = dict(clause)
            inner = ConfigReader(r.type, r.tag, clause)
            technique = inner.string("technique", "rrf")
            if technique != "rrf":
                raise r.illegal(f"provided combination technique is not supported: [{technique}]; supported: [rrf]",
                                "combination")
            if "rank_constant" in clause:
                raw = clause.pop("rank_constant")
                try:
                    if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
                        raise ValueError
                    rank_constant = int(raw)
                except (TypeError, ValueError):
                    raise r.illegal("parameter [rank_constant] must be an integer", "combination") from None
                if not 1 <= rank_constant <= 10_000:
                    raise r.illegal(f"rank constant must be in the interval between 1 and 10000, submitted rank "
                                    f"constant: {rank_constant}", "combination")
            weights = _read_weights(r, inner.optional_map("parameters"))
            if clause:
                raise r.error("combination", f"unsupported parameters {sorted(clause)}; supported: "
                                             f"[technique, rank_constant, parameters]")
        return cls(normalization="rrf", combination="rrf", weights=weights, rank_constant=rank_constant, **common)
