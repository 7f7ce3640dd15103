"""The demo corpus: docstrings of the Python standard library.

Real, varied English text that every machine with Python already has, so the demo needs no
network and ships no data: the module, class and function docstrings of a fixed list of
well-documented standard-library modules. Each document is ``{"_id": "json.dumps", "title":
"json.dumps", "text": <the docstring>, "module": "json", "kind": "function"}``.

The exact texts follow the running Python version (Python 3.11 gives 460 documents); the
selection (module list, order, length limits) is fixed, so one machine always builds the same
corpus.
"""

from __future__ import annotations

import importlib
import inspect
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

MODULES = (
    "json", "csv", "sqlite3", "pathlib", "os", "os.path", "shutil", "glob", "fnmatch", "tempfile",
    "zipfile", "tarfile", "gzip", "bz2", "lzma", "io", "re", "string", "textwrap", "difflib",
    "collections", "itertools", "functools", "operator", "heapq", "bisect", "copy", "pprint",
    "datetime", "time", "calendar", "math", "statistics", "random", "decimal", "fractions",
    "hashlib", "hmac", "secrets", "base64", "uuid", "struct", "pickle", "shelve", "configparser",
    "logging", "argparse", "getpass", "subprocess", "threading", "queue", "asyncio", "concurrent.futures",
    "socket", "ssl", "select", "urllib.parse", "urllib.request", "http.client", "http.server", "email.message",
    "smtplib", "html", "xml.etree.ElementTree", "unittest", "doctest", "typing", "dataclasses", "enum",
    "contextlib", "abc", "inspect", "traceback", "warnings", "weakref", "gc", "timeit", "sched", "signal",
)
MIN_WORDS = 12          # shorter docstrings say too little to search
MAX_CHARS = 600         # paragraph-sized: the first paragraphs say what a thing does; keeps the demo fast
MAX_PER_MODULE = 8      # keep the corpus balanced across modules


def _clean(doc: str) -> str:
    text = " ".join(inspect.cleandoc(doc).split())
    if len(text) > MAX_CHARS:  # cut after the last full sentence that fits
        cut = text.rfind(". ", 0, MAX_CHARS)
        text = text[: cut + 1] if cut > MAX_CHARS // 3 else text[:MAX_CHARS]
    return text


def _members(module: Any) -> Iterator[tuple[str, str, Any]]:
    """(qualified name, kind, object) of the public classes and functions defined in ``module``."""
    for name in sorted(vars(module)):
        if name.startswith("_"):
            continue
        obj = getattr(module, name)
        if inspect.isclass(obj):
            kind = "class"
        elif inspect.isfunction(obj) or inspect.isbuiltin(obj):
            kind = "function"
        else:
            continue
        own_names = (module.__name__, module.__name__.lstrip("_"), "_" + module.__name__)
        if getattr(obj, "__module__", None) not in own_names:
            continue
        yield f"{module.__name__}.{name}", kind, obj


def iter_documents() -> Iterator[dict[str, Any]]:
    seen: set[str] = set()
    for modname in MODULES:
        try:
            module = importlib.import_module(modname)
        except ImportError:  # a minimal Python build without e.g. sqlite3 or ssl
            continue
        count = 0
        candidates = [(modname, "module", module)] + list(_members(module))
        for qualname, kind, obj in candidates:
            if count >= MAX_PER_MODULE:
                break
            doc = inspect.getdoc(obj) if kind != "module" else obj.__doc__
            if not doc:
                continue
            text = _clean(doc)
            if len(text.split()) < MIN_WORDS or text in seen:
                continue
            seen.add(text)
            count += 1
            yield {"_id": qualname, "title": qualname, "text": text, "module": modname, "kind": kind}


def build_corpus() -> list[dict[str, Any]]:
    return list(iter_documents())


def write_corpus(path: Path) -> int:
    """Write the corpus as JSONL (only when its content changed, so resume checkpoints stay valid)."""
    docs = build_corpus()
    text = "".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs)
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return len(docs)
