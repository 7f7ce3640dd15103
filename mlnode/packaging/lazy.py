"""Thread-safe lazy imports of the heavy optional libraries (transformers, torch, onnxruntime).

Packaging runs in worker threads, and two registrations may package at the same moment in a fresh process. Importing
``transformers`` from two threads at once is not safe: its lazy module can hand one thread the module before the
names it exports are set (``AttributeError: module 'transformers' has no attribute 'AutoModel'``). So every first
import of these libraries, and the lookups of their lazily loaded names, happen under one lock; once imported, a
module is returned from ``sys.modules`` without waiting.
"""

from __future__ import annotations

import importlib
import sys
import threading
from types import ModuleType

HEAVY_MODULES = ("transformers", "torch", "onnxruntime")
IMPORT_LOCK = threading.RLock()  # held while importing a heavy module or resolving its lazy attributes
_imported: set[str] = set()


def heavy_import(name: str) -> ModuleType:
    """``import name`` once per process under ``IMPORT_LOCK`` (any module; meant for ``HEAVY_MODULES``)."""
    if name in _imported:
        return sys.modules[name]
    with IMPORT_LOCK:
        module = importlib.import_module(name)
        _imported.add(name)
        return module
