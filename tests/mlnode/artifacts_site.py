"""A loopback stand-in for https://artifacts.opensearch.org/models/ml-models (the internet is out of reach here).

``tiny_zips()`` packages, with the project's own ``mlnode.packaging``, a handful of tiny seeded models (2 layers,
hidden 32, a WordPiece vocabulary of a few hundred tokens trained on a small corpus): mean- and cls-pooled text
embedding (TorchScript and ONNX), a sparse encoder, a sparse tokenizer with ``idf.json`` and a cross-encoder
(TorchScript and ONNX). They are cached under the test model cache, keyed by the packaging code and this file.

``build_site(root, catalog)`` lays out every (name, version, format) of the catalog as the artifacts site does:
``<root>/models/ml-models/<name>/<version>/<format>/config.json`` next to the zip at the catalog's exact zip name,
reusing the tiny zip of the entry's function and format (so the hash is the tiny zip's).
``ArtifactServer`` serves a folder over HTTP on 127.0.0.1 and records the paths asked for.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import shutil
import tempfile
import threading
from pathlib import Path

import numpy as np
import torch
from tokenizers import BertWordPieceTokenizer, Tokenizer
from transformers import BertConfig, BertForMaskedLM, BertForSequenceClassification, BertModel

from mlnode.catalog import Catalog, CatalogEntry
from mlnode.packaging import PackagedModel, package_model
from mlnode.packaging.core import packaging_code_hash
from tests.fixtures.models import IDF_CORPUS, cache_root, write_idf_corpus

SITE_PREFIX = "models/ml-models"
CLS_POOLED = frozenset(
    {
        "huggingface/sentence-transformers/msmarco-distilbert-base-tas-b",
        "huggingface/sentence-transformers/multi-qa-mpnet-base-dot-v1",
    }
)
_EXTRA_TEXT = [
    "today is sunny",
    "what is the capital of france",
    "paris is the capital of france",
    "sunshine bright saturday mood week",
]
# key -> (model kind, function_name, model_format)
TINY = {
    "mean-torch_script": ("mean", "TEXT_EMBEDDING", "TORCH_SCRIPT"),
    "mean-onnx": ("mean", "TEXT_EMBEDDING", "ONNX"),
    "cls-torch_script": ("cls", "TEXT_EMBEDDING", "TORCH_SCRIPT"),
    "cls-onnx": ("cls", "TEXT_EMBEDDING", "ONNX"),
    "sparse-torch_script": ("sparse", "SPARSE_ENCODING", "TORCH_SCRIPT"),
    "tokenizer-torch_script": ("sparse", "SPARSE_TOKENIZE", "TORCH_SCRIPT"),
    "cross-encoder-torch_script": ("cross-encoder", "TEXT_SIMILARITY", "TORCH_SCRIPT"),
    "cross-encoder-onnx": ("cross-encoder", "TEXT_SIMILARITY", "ONNX"),
}


def _save_tokenizer(folder: Path) -> int:
    tokenizer = BertWordPieceTokenizer(lowercase=True)
    tokenizer.train_from_iterator(
        IDF_CORPUS + _EXTRA_TEXT,
        vocab_size=400,
        min_frequency=1,
        special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"],
        show_progress=False,
    )
    tokenizer.save(str(folder / "tokenizer.json"))
    return tokenizer.get_vocab_size()


def _pooling_modules(folder: Path, mode: str) -> None:
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    if mode == "mean":
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"})
    (folder / "modules.json").write_text(json.dumps(modules))
    (folder / "1_Pooling").mkdir()
    flag = "pooling_mode_mean_tokens" if mode == "mean" else "pooling_mode_cls_token"
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({flag: True}))


def _tiny_model_dir(kind: str, folder: Path) -> Path:
    """A seeded tiny BERT of ``kind`` (mean, cls, sparse, cross-encoder) saved as a Hugging Face folder."""
    folder.mkdir(parents=True)
    vocab = _save_tokenizer(folder)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=vocab,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        num_labels=1,
    )
    model_class = {"sparse": BertForMaskedLM, "cross-encoder": BertForSequenceClassification}.get(kind, BertModel)
    model_class(config).eval().save_pretrained(str(folder))
    if kind in ("mean", "cls"):
        _pooling_modules(folder, kind)
    return folder


def _build(out: Path) -> None:
    sources = out / "sources"
    for key, (kind, function_name, model_format) in TINY.items():
        source = sources / kind
        if not source.exists():
            _tiny_model_dir(kind, source)
        extra = {"idf_corpus": write_idf_corpus(out / "idf-corpus.jsonl")} if function_name == "SPARSE_TOKENIZE" else {}
        package_model(
            source,
            out / key,
            function_name=function_name,
            model_format=model_format,
            name=f"neuralpipe/tiny-{key}",
            version="1.0.0",
            **extra,
        )


def _tiny_root() -> Path:
    """The cached folder of the tiny models (``sources/<kind>``) and their zips (``<key>/``), built on first use."""
    digest = hashlib.sha256((packaging_code_hash() + Path(__file__).read_text()).encode()).hexdigest()[:16]
    final = cache_root() / f"tiny-artifacts-{digest}"
    if not (final / "done").exists():
        final.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".tiny-artifacts-", dir=final.parent))
        try:
            _build(staging)
            (staging / "done").touch()
            if not (final / "done").exists():
                shutil.rmtree(final, ignore_errors=True)
                staging.rename(final)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return final


def tiny_zips() -> dict[str, PackagedModel]:
    """key of ``TINY`` -> the packaged tiny model (built once, cached across sessions)."""
    root = _tiny_root()
    zips = {}
    for key in TINY:
        config = json.loads((root / key / "config.json").read_text())
        zips[key] = PackagedModel(zip_path=next((root / key).glob("*.zip")), config=config)
    return zips


def reference(kind: str, text: str, pair: str | None = None) -> np.ndarray:
    """What a tiny model computes, straight from its Hugging Face weights (transformers), independent of our
    packaging and runtimes: the pooled (mean: and L2-normalised) vector of ``text``, or a cross-encoder's logit for
    (``text``, ``pair``)."""
    folder = _tiny_root() / "sources" / kind
    encoding = Tokenizer.from_file(str(folder / "tokenizer.json")).encode(text, pair)
    feed = {
        "input_ids": torch.tensor([encoding.ids]),
        "attention_mask": torch.tensor([encoding.attention_mask]),
        "token_type_ids": torch.tensor([encoding.type_ids]),
    }
    with torch.no_grad():
        if kind == "cross-encoder":
            return BertForSequenceClassification.from_pretrained(str(folder))(**feed).logits[0].numpy()
        hidden = BertModel.from_pretrained(str(folder))(**feed).last_hidden_state[0].numpy()
    if kind == "cls":
        return hidden[0]
    pooled = hidden.mean(axis=0)
    return pooled / np.linalg.norm(pooled)


def tiny_tokens(text: str) -> list[str]:
    """The word pieces the tiny vocabulary splits ``text`` into (no special tokens)."""
    tokenizer = Tokenizer.from_file(str(_tiny_root() / "sources" / "sparse" / "tokenizer.json"))
    return tokenizer.encode(text, add_special_tokens=False).tokens


def tiny_key(entry: CatalogEntry, model_format: str) -> str:
    """Which tiny zip stands in for a catalog entry in a format."""
    fmt = model_format.lower()
    kind = {
        "TEXT_EMBEDDING": "cls" if entry.name in CLS_POOLED else "mean",
        "SPARSE_ENCODING": "sparse",
        "SPARSE_TOKENIZE": "tokenizer",
        "TEXT_SIMILARITY": "cross-encoder",
    }[entry.function_name]
    return f"{kind}-{fmt}"


def publish(root: Path, catalog: Catalog, name: str, version: str, model_format: str, model: PackagedModel) -> Path:
    """Put ``model`` on the site as ``name``/``version``/``model_format``: config.json (with ``model_task_type``, as
    the artifacts carry it) and the zip at the catalog's zip name. Returns the zip's path."""
    config_url, zip_url = catalog.artifact_urls(name, version, model_format)
    folder = root / SITE_PREFIX / config_url.removeprefix(catalog.artifact_base_url + "/").rsplit("/", 1)[0]
    folder.mkdir(parents=True, exist_ok=True)
    zip_path = folder / zip_url.rsplit("/", 1)[1]
    shutil.copyfile(model.zip_path, zip_path)
    config = {k: v for k, v in model.config.items() if k != "function_name"}
    config.update(name=name, version=version, model_format=model_format)
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    return zip_path


def build_site(root: Path, catalog: Catalog, zips: dict[str, PackagedModel]) -> None:
    """Every artifacts-sourced (name, version, format) of ``catalog``, laid out under ``root``."""
    for entry in catalog.entries.values():
        if not entry.artifacts:
            continue
        for version in entry.versions:
            for model_format in entry.model_formats:
                publish(root, catalog, entry.name, version, model_format, zips[tiny_key(entry, model_format)])


class ArtifactServer:
    """A folder served over HTTP on 127.0.0.1; ``requests`` lists the paths asked for; ``base`` is the site's
    ``/models/ml-models`` URL."""

    def __init__(self, root: Path) -> None:
        self.requests: list[str] = []
        outer = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                outer.requests.append(self.path)

        handler = functools.partial(Handler, directory=str(root))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}/{SITE_PREFIX}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
