"""Bad pipeline definitions: each error names the processor type, its tag and the property, with OpenSearch's
messages, and every error of one pipeline is reported together."""

import pytest

from processors import IngestPipeline, SearchPipeline
from processors.errors import ProcessorConfigError

pytestmark = pytest.mark.unit

ML = None  # config parsing never calls the ML node

TE = {"model_id": "m", "field_map": {"text": "vec"}}


def ingest(*processors):
    return {"processors": [dict(p) for p in processors]}


BAD_INGEST = [
    ("missing field_map", ingest({"text_embedding": {"tag": "t1", "model_id": "m"}}),
     "text_embedding", "t1", "field_map", "[field_map] required property is missing"),
    ("missing model_id", ingest({"sparse_encoding": {"tag": "s1", "field_map": {"a": "b"}}}),
     "sparse_encoding", "s1", "model_id", "[model_id] required property is missing"),
    ("leftover key", ingest({"text_embedding": {**TE, "tag": "t2", "foo": 1}}),
     "text_embedding", "t2", None,
     "processor [text_embedding] doesn't support one or more provided configuration parameters [foo]"),
    ("unknown type", ingest({"x": {"tag": "t3"}}), "x", "t3", None, "No processor type exists with name [x]"),
    ("field_map not a map", ingest({"text_embedding": {"tag": "t4", "model_id": "m", "field_map": "text"}}),
     "text_embedding", "t4", "field_map", "[field_map] property isn't a map, but of type [java.lang.String]"),
    ("bad batch_size", ingest({"text_embedding": {**TE, "tag": "t5", "batch_size": "many"}}),
     "text_embedding", "t5", "batch_size", "[batch_size] property cannot be converted to an int [many]"),
    ("bad prune type", ingest({"sparse_encoding": {**TE, "tag": "p1", "prune_type": "top_n", "prune_ratio": 3}}),
     "sparse_encoding", "p1", "prune_type", "Unknown prune type: top_n"),
    ("prune ratio missing", ingest({"sparse_encoding": {**TE, "tag": "p2", "prune_type": "top_k"}}),
     "sparse_encoding", "p2", "prune_ratio", "[prune_ratio] required property is missing"),
    ("prune ratio out of range", ingest({"sparse_encoding": {**TE, "tag": "p3", "prune_type": "max_ratio",
                                                             "prune_ratio": 1.5}}),
     "sparse_encoding", "p3", "prune_ratio",
     "Illegal prune_ratio 1.500000 for prune_type: max_ratio. prune_ratio should be in the range [0, 1)."),
    ("top_k not integer", ingest({"sparse_encoding": {**TE, "tag": "p4", "prune_type": "top_k",
                                                      "prune_ratio": 2.5}}),
     "sparse_encoding", "p4", "prune_ratio", "prune_ratio should be positive integer."),
    ("prune ratio without type", ingest({"sparse_encoding": {**TE, "tag": "p5", "prune_ratio": 0.1}}),
     "sparse_encoding", "p5", "prune_ratio", "prune_ratio field is not supported when prune_type is not provided"),
    ("overlap too high", ingest({"text_chunking": {"tag": "c1", "field_map": {"a": "b"},
                                                   "algorithm": {"fixed_token_length": {"overlap_rate": 0.7}}}}),
     "text_chunking", "c1", "algorithm", "Parameter [overlap_rate] must be between 0.0 and 0.5"),
    ("bad tokenizer", ingest({"text_chunking": {"tag": "c2", "field_map": {"a": "b"},
                                                "algorithm": {"fixed_token_length": {"tokenizer": "ngram"}}}}),
     "text_chunking", "c2", "algorithm", "Tokenizer [ngram] is not supported for [fixed_token_length] algorithm"),
    ("bad max_chunk_limit", ingest({"text_chunking": {"tag": "c3", "field_map": {"a": "b"},
                                                      "algorithm": {"delimiter": {"max_chunk_limit": 0}}}}),
     "text_chunking", "c3", "algorithm", "Parameter [max_chunk_limit] must be positive or -1 to disable"),
    ("unknown algorithm", ingest({"text_chunking": {"tag": "c4", "field_map": {"a": "b"},
                                                    "algorithm": {"sentences": {}}}}),
     "text_chunking", "c4", "algorithm", "Chunking algorithm [sentences] is not supported"),
    ("missing algorithm", ingest({"text_chunking": {"tag": "c5", "field_map": {"a": "b"}}}),
     "text_chunking", "c5", "algorithm", "[algorithm] required property is missing"),
    ("unsupported if", ingest({"text_embedding": {**TE, "tag": "i1", "if": "ctx.a.length() > 3"}}),
     "text_embedding", "i1", "if", "unsupported condition"),
    ("blank field_map value", ingest({"text_embedding": {"tag": "t6", "model_id": "m", "field_map": {"a": ""}}}),
     "text_embedding", "t6", "field_map", "Unable to create the processor as field_map has invalid key or value"),
]

# A misspelt parameter: named as unsupported, with the expected one (also when the typo left a required one missing).
TYPOS = [
    ("field_mapp", {"text_embedding": {"tag": "y1", "model_id": "m", "field_mapp": {"text": "vec"}}},
     "processor [text_embedding] doesn't support one or more provided configuration parameters [field_mapp]; "
     "did you mean [field_map]?"),
    ("fieldmap in sparse_encoding", {"sparse_encoding": {"tag": "y2", "model_id": "m", "fieldmap": {"a": "b"},
                                                         "prune_type": "top_k", "prune_ratio": 10}},
     "processor [sparse_encoding] doesn't support one or more provided configuration parameters [fieldmap]; "
     "did you mean [field_map]?"),
    ("model instead of model_id", {"text_embedding": {"tag": "y3", "model": "m", "field_map": {"a": "b"}}},
     "processor [text_embedding] doesn't support one or more provided configuration parameters [model]; "
     "did you mean [model_id]?"),
    ("optional batch_sise", {"text_embedding": {**TE, "tag": "y4", "batch_sise": 8}},
     "processor [text_embedding] doesn't support one or more provided configuration parameters [batch_sise]; "
     "did you mean [batch_size]?"),
    ("two typos, one unknown", {"text_chunking": {"tag": "y5", "field_map": {"a": "b"}, "algorithm": {"delimiter": {}},
                                                  "ignore_mising": True, "colour": "red", "descriptoin": "x"}},
     "processor [text_chunking] doesn't support one or more provided configuration parameters "
     "[ignore_mising, colour, descriptoin]; did you mean [ignore_missing] for [ignore_mising], "
     "[description] for [descriptoin]?"),
    ("nothing close", {"text_embedding": {**TE, "tag": "y6", "foo": 1}},
     "processor [text_embedding] doesn't support one or more provided configuration parameters [foo]"),
]


@pytest.mark.parametrize("processor,message", [c[1:] for c in TYPOS], ids=[c[0] for c in TYPOS])
def test_misspelt_parameter_is_named_with_the_expected_one(processor, message):
    with pytest.raises(ProcessorConfigError) as info:
        IngestPipeline.from_body("p", ingest(processor), ml=ML)
    (error,) = info.value.errors
    assert error.reason == message
    (ptype,) = processor
    assert error.extra["processor_type"] == ptype and error.extra["processor_tag"] == processor[ptype]["tag"]
    assert "property_name" not in error.extra  # as OpenSearch sends it: the unsupported keys are in the reason


def test_misspelt_search_parameter_gets_a_hint():
    body = {"request_processors": [{"neural_query_enricher": {"tag": "e", "default_modelid": "m"}}]}
    with pytest.raises(ProcessorConfigError) as info:
        SearchPipeline.from_body("s", body, ml=ML)
    assert info.value.errors[0].reason.endswith("parameters [default_modelid]; did you mean [default_model_id]?")


@pytest.mark.parametrize("body,ptype,tag,prop,message", [c[1:] for c in BAD_INGEST], ids=[c[0] for c in BAD_INGEST])
def test_bad_ingest_pipeline_names_type_tag_and_property(body, ptype, tag, prop, message):
    with pytest.raises(ProcessorConfigError) as info:
        IngestPipeline.from_body("p", body, ml=ML)
    (error,) = info.value.errors
    assert message in error.reason
    cause = info.value.to_body()["error"]
    assert cause["processor_type"] == ptype
    assert cause["processor_tag"] == tag
    assert cause.get("property_name") == prop
    assert info.value.status == 400


BAD_SEARCH = [
    ("enricher without ids", {"request_processors": [{"neural_query_enricher": {"tag": "e1"}}]},
     "neural_query_enricher", "e1", "model Id or neural info map either of them should be provided"),
    ("weights not summing to 1", {"phase_results_processors": [{"normalization-processor": {
        "tag": "n1", "combination": {"technique": "arithmetic_mean", "parameters": {"weights": [0.3, 0.3]}}}}]},
     "normalization-processor", "n1", "sum of weights for combination must be equal to 1.0"),
    ("z_score with harmonic", {"phase_results_processors": [{"normalization-processor": {
        "tag": "n2", "normalization": {"technique": "z_score"}, "combination": {"technique": "harmonic_mean"}}}]},
     "normalization-processor", "n2",
     "provided combination technique harmonic_mean is not supported for normalization technique z_score"),
    ("rank constant too small", {"phase_results_processors": [{"score-ranker-processor": {
        "tag": "r1", "combination": {"technique": "rrf", "rank_constant": 0}}}]},
     "score-ranker-processor", "r1", "rank constant must be in the interval between 1 and 10000"),
    ("unknown search processor", {"response_processors": [{"personalize_search_ranking": {"tag": "x1"}}]},
     "personalize_search_ranking", "x1", "No processor type exists with name [personalize_search_ranking]"),
    ("leftover", {"request_processors": [{"neural_query_enricher": {"tag": "e2", "default_model_id": "m",
                                                                    "k": 5}}]},
     "neural_query_enricher", "e2",
     "processor [neural_query_enricher] doesn't support one or more provided configuration parameters [k]"),
]


@pytest.mark.parametrize("body,ptype,tag,message", [c[1:] for c in BAD_SEARCH], ids=[c[0] for c in BAD_SEARCH])
def test_bad_search_pipeline(body, ptype, tag, message):
    with pytest.raises(ProcessorConfigError) as info:
        SearchPipeline.from_body("s", body, ml=ML)
    (error,) = info.value.errors
    assert message in error.reason
    assert error.extra["processor_type"] == ptype
    assert error.extra["processor_tag"] == tag


def test_all_errors_of_one_pipeline_are_reported_together():
    body = ingest({"text_chunking": {"tag": "chunk", "field_map": {"a": "b"},
                                     "algorithm": {"fixed_token_length": {"overlap_rate": 0.9}}}},
                  {"text_embedding": {"tag": "dense", "model_id": "m"}},
                  {"sparse_encoding": {**TE, "tag": "sparse", "colour": "red"}},
                  {"nope": {"tag": "n"}})
    with pytest.raises(ProcessorConfigError) as info:
        IngestPipeline.from_body("p", body, ml=ML)
    errors = info.value.errors
    assert [(e.extra["processor_type"], e.extra["processor_tag"]) for e in errors] == [
        ("text_chunking", "chunk"), ("text_embedding", "dense"), ("sparse_encoding", "sparse"), ("nope", "n")]
    root_causes = info.value.to_body()["error"]["root_cause"]
    assert len(root_causes) == 4
    assert root_causes[1]["reason"] == "[field_map] required property is missing"
    assert "processor [text_embedding] tag [dense]" in info.value.reason
    assert "[colour]" in info.value.reason


def test_good_pipeline_accepts_common_options_and_keeps_body():
    body = ingest({"text_embedding": {**TE, "tag": "t", "description": "d", "ignore_failure": True,
                                      "if": "ctx.text != null", "batch_size": 8, "skip_existing": True,
                                      "on_failure": [{"text_chunking": {"field_map": {"a": "b"},
                                                                        "algorithm": {"delimiter": {}}}}]}})
    pipe = IngestPipeline.from_body("p", body, ml=ML)
    (proc,) = pipe.processors
    assert proc.batch_size == 8 and proc.skip_existing and proc.options.ignore_failure
    assert proc.options.on_failure[0].TYPE == "text_chunking"
    assert pipe.body == body  # the caller's body is not consumed
