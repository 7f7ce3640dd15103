"""Model packaging: a local Hugging Face model folder -> ML Commons model zip + ``config.json``.

``package_model`` is what ``neuralpipe models package`` and the offline catalog call. Tracing and ONNX
export need torch + transformers (the ``torch`` extra); SPARSE_TOKENIZE needs only ``tokenizers``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer

from mlnode.packaging.core import (
    DEFAULT_MAX_LENGTH,
    FRAMEWORK_TYPES,
    FUNCTION_NAMES,
    MODEL_FORMATS,
    PackagedModel,
    PackagingError,
    finish,
    model_file_name,
    scratch_dir,
    sha256_file,
    truncated_tokenizer_json,
    zip_file_name,
)
from mlnode.packaging.idf import CorpusError, build_idf
from mlnode.packaging.lazy import IMPORT_LOCK, heavy_import
from mlnode.runtimes.pooling import POOLING_MODES

__all__ = [
    "CorpusError",
    "PackagedModel",
    "PackagingError",
    "build_idf",
    "package_model",
    "sha256_file",
    "zip_file_name",
]

_POOLING_FLAGS = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len",
    "pooling_mode_weightedmean_tokens": "weightedmean",
    "pooling_mode_lasttoken": "lasttoken",
    "pooling_mode_mean_tokens": "mean",
}
_EXAMPLE_TEXTS = [
    "OpenSearch is a community-driven, open source search and analytics suite.",
    "Neural search turns text into vectors.",
]


def package_model(
    source: Path,
    out_dir: Path,
    *,
    function_name: str,
    model_format: str,
    name: str | None = None,
    version: str = "1.0.0",
    description: str | None = None,
    max_length: int | None = None,
    idf_corpus: Path | None = None,
    tokenizer_dir: Path | None = None,
    **model_config_overrides: Any,
) -> PackagedModel:
    """Package ``source`` (a Hugging Face model folder, or a ready ``.onnx``/``.pt`` file whose
    tokenizer lives in ``tokenizer_dir``) into ``out_dir``.

    ``model_config_overrides`` set ``model_config`` fields (``framework_type``, ``pooling_mode``,
    ``normalize_result``, ``embedding_dimension``, ``query_prefix``, ``passage_prefix``, ...).
    """
    function_name = function_name.upper()
    model_format = model_format.upper()
    if function_name not in FUNCTION_NAMES:
        raise PackagingError(f"unsupported function_name [{function_name}]: valid values are {list(FUNCTION_NAMES)}")
    if model_format not in MODEL_FORMATS:
        raise PackagingError(f"unsupported model_format [{model_format}]: valid values are {list(MODEL_FORMATS)}")
    source = Path(source)
    if not source.exists():
        raise PackagingError(f"model source [{source}] does not exist")
    prebuilt = source if source.is_file() else None
    folder = Path(tokenizer_dir) if tokenizer_dir else (source.parent if prebuilt else source)
    hf_config = _read_json(folder / "config.json")
    length = _max_length(folder, hf_config, max_length)
    name = name or (prebuilt.stem if prebuilt else source.name)
    description = description or f"{function_name} model {name} packaged by neuralpipe"
    common = dict(
        name=name, version=version, description=description, function_name=function_name, model_format=model_format
    )
    members: dict[str, Path | str | bytes] = {}
    with scratch_dir() as scratch_name:
        scratch = Path(scratch_name)
        tokenizer_json = _tokenizer_file(folder, scratch)
        tokenizer_text = truncated_tokenizer_json(tokenizer_json, length)

        if function_name == "SPARSE_TOKENIZE":
            if idf_corpus is None:
                raise PackagingError("SPARSE_TOKENIZE needs an IDF corpus (--idf-corpus FILE: JSONL or text lines)")
            members["tokenizer.json"] = tokenizer_text
            members["idf.json"] = json.dumps(build_idf(Path(idf_corpus), tokenizer_json), ensure_ascii=False)
            return finish(out_dir, members=members, model_config=None, **common)

        model_config = _model_config(
            function_name, model_format, folder, hf_config, length, prebuilt, dict(model_config_overrides)
        )
        model_file = scratch / model_file_name(name, model_format)
        if prebuilt is not None:
            if prebuilt.suffix != model_file.suffix:
                raise PackagingError(f"model file [{prebuilt.name}] does not match model_format [{model_format}]")
            model_file = prebuilt
        else:
            _build_model_file(function_name, model_format, source, tokenizer_text, model_config, model_file)
        members[model_file_name(name, model_format)] = model_file
        members["tokenizer.json"] = tokenizer_text
        return finish(out_dir, members=members, model_config=model_config, **common)


def _tokenizer_file(folder: Path, scratch: Path) -> Path:
    """The folder's tokenizer.json, or one saved from its fast tokenizer (vocab.txt, sentencepiece, ...)."""
    path = folder / "tokenizer.json"
    if path.exists():
        return path
    try:
        from transformers import AutoTokenizer  # transformers is an optional extra ([torch])

        backend = getattr(AutoTokenizer.from_pretrained(str(folder)), "backend_tokenizer", None)
    except Exception as exc:  # no tokenizer files at all, or transformers missing
        raise PackagingError(f"no tokenizer.json in [{folder}] and no tokenizer to build one from: {exc}") from exc
    if backend is None:
        raise PackagingError(f"no tokenizer.json in [{folder}] and its tokenizer has no fast (tokenizers) version")
    out = scratch / "tokenizer.json"
    backend.save(str(out))
    return out


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def _max_length(folder: Path, hf_config: dict[str, Any], explicit: int | None) -> int:
    limit = int(hf_config.get("max_position_embeddings") or DEFAULT_MAX_LENGTH)
    if explicit is not None:
        if explicit <= 0:
            raise PackagingError(f"max_length must be positive, got [{explicit}]")
        return min(int(explicit), limit)
    st_length = _read_json(folder / "sentence_bert_config.json").get("max_seq_length")
    if st_length:
        return min(int(st_length), limit)
    tok_length = _read_json(folder / "tokenizer_config.json").get("model_max_length")
    if isinstance(tok_length, int) and 0 < tok_length < 100_000:
        return min(tok_length, limit)
    return min(DEFAULT_MAX_LENGTH, limit)


def _st_pooling(folder: Path) -> tuple[str | None, bool]:
    """(pooling mode, normalize) from a sentence-transformers folder's modules.json, else (None, False)."""
    modules = _read_json(folder / "modules.json") if (folder / "modules.json").exists() else []
    pooling, normalize = None, False
    for module in modules if isinstance(modules, list) else []:
        kind = str(module.get("type", ""))
        if kind.endswith("Pooling"):
            config = _read_json(folder / module.get("path", "") / "config.json")
            pooling = next((mode for flag, mode in _POOLING_FLAGS.items() if config.get(flag)), "mean")
        elif kind.endswith("Normalize"):
            normalize = True
        elif not kind.endswith("Transformer"):
            raise PackagingError(
                f"sentence-transformers module [{kind}] at [{module.get('path', '')}] is not supported: only "
                "Transformer, Pooling and Normalize modules can be packaged (the vectors would differ)"
            )
    return pooling, normalize


def _model_config(
    function_name: str,
    model_format: str,
    folder: Path,
    hf_config: dict[str, Any],
    length: int,
    prebuilt: Path | None,
    overrides: dict[str, Any],
) -> dict[str, Any] | None:
    base: dict[str, Any] = {"model_type": hf_config.get("model_type", "bert")}
    all_config = json.dumps(hf_config) if hf_config else None
    if function_name == "SPARSE_ENCODING":
        return None
    if function_name == "TEXT_EMBEDDING":
        st_pooling, st_normalize = _st_pooling(folder)
        framework = overrides.pop("framework_type", None) or (
            "sentence_transformers"
            if model_format == "TORCH_SCRIPT" and st_pooling and not prebuilt
            else "huggingface_transformers"
        )
        if framework not in FRAMEWORK_TYPES:
            raise PackagingError(f"unsupported framework_type [{framework}]: valid values are {list(FRAMEWORK_TYPES)}")
        pooling = str(overrides.pop("pooling_mode", None) or st_pooling or "mean").lower()
        if pooling not in POOLING_MODES:
            raise PackagingError(f"unsupported pooling_mode [{pooling}]: valid values are {list(POOLING_MODES)}")
        normalize = overrides.pop("normalize_result", None)
        base["embedding_dimension"] = int(
            overrides.pop("embedding_dimension", None) or hf_config.get("hidden_size") or 0
        )
        if not base["embedding_dimension"]:
            raise PackagingError("embedding_dimension is unknown: pass embedding_dimension=N")
        base["framework_type"] = framework
        base["pooling_mode"] = pooling
        base["normalize_result"] = bool(st_normalize if normalize is None else normalize)
    elif function_name == "TEXT_SIMILARITY":
        base["embedding_dimension"] = 1
        base["framework_type"] = "huggingface_transformers"
    elif function_name == "QUESTION_ANSWERING":
        base["framework_type"] = "huggingface_transformers"
    base["model_max_length"] = length
    if all_config:
        base["all_config"] = all_config
    base.update(overrides)
    return base


@contextmanager
def _quiet(transformers: Any) -> Iterator[None]:
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    try:
        yield
    finally:
        transformers.logging.set_verbosity(verbosity)
        transformers.logging.enable_progress_bar()


def _build_model_file(
    function_name: str,
    model_format: str,
    source: Path,
    tokenizer_text: str,
    model_config: dict[str, Any] | None,
    out_file: Path,
) -> None:
    # transformers is an optional extra ([torch]): only building a model file needs it. Imported, and its lazy names
    # resolved and the model loaded (which imports the model's modules), under the one import lock: concurrent
    # packaging in a fresh process must not see a half-initialised transformers
    with IMPORT_LOCK:
        transformers = heavy_import("transformers")
        kinds = {
            "TEXT_EMBEDDING": transformers.AutoModel,
            "SPARSE_ENCODING": transformers.AutoModelForMaskedLM,
            "TEXT_SIMILARITY": transformers.AutoModelForSequenceClassification,
            "QUESTION_ANSWERING": transformers.AutoModelForQuestionAnswering,
        }
        with _quiet(transformers):  # no load reports, progress bars or loss_type notes (tracing reads every attribute)
            # A TorchScript file keeps the attention kernel it was traced with: PyTorch's fused
            # scaled_dot_product_attention runs 32 passages of 256 tokens ~1.5x faster on CPU than the eager
            # matmul-softmax-matmul, with the same vectors to ~1e-7 (transformers keeps the padding mask in the
            # graph while tracing). The ONNX exporter lowers both to the same ops, so ONNX stays eager; an
            # architecture without an SDPA implementation falls back to eager.
            attention = "sdpa" if model_format == "TORCH_SCRIPT" else "eager"
            try:
                try:
                    model = kinds[function_name].from_pretrained(str(source), attn_implementation=attention).eval()
                except ValueError:
                    if attention == "eager":
                        raise
                    model = kinds[function_name].from_pretrained(str(source), attn_implementation="eager").eval()
            except (OSError, ValueError) as exc:
                raise PackagingError(f"cannot load a {function_name} model from [{source}]: {exc}") from exc
    with _quiet(transformers):
        _trace(model, function_name, model_format, tokenizer_text, model_config, out_file)


def _trace(model: Any, function_name: str, model_format: str, tokenizer_text: str,
           model_config: dict[str, Any] | None, out_file: Path) -> None:
    """Wrap a loaded Hugging Face model in the graph ML Commons expects for ``function_name`` and save it."""
    # torch is an optional extra ([torch]), and tracing imports it (under the one import lock, see lazy.py)
    heavy_import("torch")
    import torch  # now a lookup in sys.modules

    with IMPORT_LOCK:
        from mlnode.packaging import tracing

    tokenizer = Tokenizer.from_str(tokenizer_text)
    pad_id = model.config.pad_token_id if model.config.pad_token_id is not None else 0
    tokenizer.enable_padding(pad_id=pad_id)
    pairs = function_name in {"TEXT_SIMILARITY", "QUESTION_ANSWERING"}
    batch = tokenizer.encode_batch(list(zip(_EXAMPLE_TEXTS, reversed(_EXAMPLE_TEXTS))) if pairs else _EXAMPLE_TEXTS)
    example = {
        "input_ids": torch.tensor([e.ids for e in batch], dtype=torch.long),
        "attention_mask": torch.tensor([e.attention_mask for e in batch], dtype=torch.long),
        "token_type_ids": torch.tensor([e.type_ids for e in batch], dtype=torch.long),
    }
    inputs = tracing.declared_inputs(model)
    seq_outputs: tuple[str, ...] = ()
    module: torch.nn.Module
    if function_name == "TEXT_EMBEDDING":
        assert model_config is not None
        if model_config["framework_type"] == "sentence_transformers":
            module = tracing.SentenceEmbedding(model, model_config["pooling_mode"], model_config["normalize_result"])
        else:
            module = tracing.HiddenStates(model, inputs)
            seq_outputs = ("last_hidden_state",)
    elif function_name == "SPARSE_ENCODING":
        special = [tok_id for tok_id, tok in tokenizer.get_added_tokens_decoder().items() if tok.special]
        if model_format == "TORCH_SCRIPT":  # as opensearch-py-ml traces sparse encoders (one sentence: types are 0)
            inputs = ["input_ids", "attention_mask"]
        module = tracing.SparseEncoder(model, inputs, special, int(model.config.vocab_size), example)
    elif function_name == "TEXT_SIMILARITY":
        module = tracing.Logits(model, inputs, ["logits"])
    else:
        module = tracing.Logits(model, inputs, ["start_logits", "end_logits"])
        seq_outputs = ("start_logits", "end_logits")
    tracing.save(module, example, out_file, model_format, seq_outputs=seq_outputs)
