"""The pretrained catalog: OpenSearch pretrained ``name`` + ``version`` + ``model_format`` -> a model zip.

Entries come from ``mlnode/configs/catalog.yaml`` (see its header). ``resolve`` packages an offline model once into
``cache_dir/<name>/<version>/<format>/<key>/``, where ``key`` hashes the packaging code, the entry and its source
files' names, sizes and times (so a zip packaged by older code or from other weights is never reused, and nothing is
repackaged at start), or downloads an artifact once into ``cache_dir/<name>/<version>/<format>/``, and returns the
cached ``PackagedModel`` afterwards. Calls block; run them in a worker thread.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mlnode import offline
from mlnode.packaging import package_model
from mlnode.packaging.core import (
    MODEL_FORMATS,
    PackagedModel,
    packaging_code_hash,
    sha256_file,
    source_fingerprint,
    zip_file_name,
)
from mlnode.settings import PACKAGED_CONFIGS

DEFAULT_CATALOG = PACKAGED_CONFIGS / "catalog.yaml"  # package data: an installed package finds it
DEFAULT_ARTIFACT_BASE_URL = "https://artifacts.opensearch.org/models/ml-models"
NOT_IN_LIST = "This model is not in the pre-trained model list, please check your parameters."


def _offline_sources() -> dict[str, Callable[[], tuple[Path, dict[str, Any]]]]:
    return {
        "all-MiniLM-L6-v2": lambda: (offline.minilm_dir(), {}),
        "all-MiniLM-L6-v2-int8": lambda: (offline.minilm_int8_onnx(), {"tokenizer_dir": offline.minilm_dir()}),
        "splade-tiny": lambda: (offline.splade_dir(), {}),
    }


OFFLINE_KEYS = ("all-MiniLM-L6-v2", "all-MiniLM-L6-v2-int8", "splade-tiny")


class CatalogError(ValueError):
    """A bad catalog file, or a model the catalog cannot produce (HTTP 400)."""

    status = 400
    error_type = "illegal_argument_exception"


class UnknownPretrainedModel(CatalogError):
    """The name/version/format is not servable here; the message lists what is."""

    def __init__(self, message: str, names: list[str]) -> None:
        super().__init__(message)
        self.names = names


@dataclass(frozen=True)
class CatalogEntry:
    name: str
    function_name: str
    versions: tuple[str, ...]
    model_formats: tuple[str, ...]
    source: dict[str, Any]
    description: str = ""
    options: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        return f"{self.name} (versions {', '.join(self.versions)}; formats {', '.join(self.model_formats)})"


def _entry(raw: Any, index: int) -> CatalogEntry:
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
        raise CatalogError(f"catalog entry #{index} needs a [name]")
    name = raw["name"]
    versions = tuple(str(v) for v in raw.get("versions") or [])
    formats = tuple(str(f).upper() for f in raw.get("model_formats") or [])
    source = raw.get("source")
    if not versions or not formats:
        raise CatalogError(f"catalog entry [{name}] needs [versions] and [model_formats]")
    bad = [f for f in formats if f not in MODEL_FORMATS]
    if bad:
        raise CatalogError(f"catalog entry [{name}]: unsupported model_formats {bad}; valid: {list(MODEL_FORMATS)}")
    if not isinstance(source, dict) or not ({"offline", "path", "artifacts"} & set(source)):
        raise CatalogError(f"catalog entry [{name}] needs a source: offline, path or artifacts")
    if "offline" in source and source["offline"] not in OFFLINE_KEYS:
        raise CatalogError(
            f"catalog entry [{name}]: unknown offline model [{source['offline']}]; valid: {list(OFFLINE_KEYS)}"
        )
    return CatalogEntry(
        name=name,
        function_name=str(raw.get("function_name") or "TEXT_EMBEDDING").upper(),
        versions=versions,
        model_formats=formats,
        source=dict(source),
        description=" ".join(str(raw.get("description") or "").split()),
        options=dict(raw.get("options") or {}),
    )


class Catalog:
    def __init__(self, entries: list[CatalogEntry], *, artifact_base_url: str = DEFAULT_ARTIFACT_BASE_URL) -> None:
        self.entries = {entry.name: entry for entry in entries}
        self.artifact_base_url = artifact_base_url.rstrip("/")
        self._locks: dict[Path, threading.Lock] = {}
        self._locks_guard = threading.Lock()

    @classmethod
    def load(cls, path: Path | None = None, *, artifact_base_url: str | None = None) -> Catalog:
        """Read a catalog YAML (default ``mlnode/configs/catalog.yaml``)."""
        source = Path(path) if path else DEFAULT_CATALOG
        try:
            data = yaml.safe_load(source.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise CatalogError(f"cannot read the pretrained catalog [{source}]: {exc}") from exc
        base = (
            artifact_base_url
            or os.environ.get("NEURALPIPE_ARTIFACT_BASE_URL")
            or data.get("artifact_base_url")
            or DEFAULT_ARTIFACT_BASE_URL
        )
        entries = [_entry(raw, i) for i, raw in enumerate(data.get("models") or [])]
        return cls(entries, artifact_base_url=str(base))

    def names(self) -> list[str]:
        return sorted(self.entries)

    def describe(self) -> list[str]:
        return [self.entries[name].describe() for name in self.names()]

    def entry(self, name: str, version: str, model_format: str) -> CatalogEntry:
        entry = self.entries.get(name)
        version, model_format = str(version), str(model_format).upper()
        if entry is None or version not in entry.versions or model_format not in entry.model_formats:
            asked = f"[{name}] version [{version}] model_format [{model_format}]"
            raise UnknownPretrainedModel(
                f"{NOT_IN_LIST} Model {asked} cannot be served here; servable pretrained models: "
                + "; ".join(self.describe()),
                self.names(),
            )
        return entry

    def _lock(self, key: Path) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(key, threading.Lock())

    def resolve(self, name: str, version: str, model_format: str, cache_dir: Path) -> PackagedModel:
        """The zip + config.json for a pretrained name, packaged (or downloaded) once and cached."""
        entry = self.entry(name, version, model_format)
        version, model_format = str(version), str(model_format).upper()
        folder = Path(cache_dir) / Path(*name.split("/")) / version / model_format.lower()
        if "artifacts" not in entry.source:
            folder = folder / _package_key(entry)
        with self._lock(folder):
            cached = _cached(folder)
            if cached is not None:
                return cached
            folder.parent.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
            try:
                if "artifacts" in entry.source:
                    self._download(entry, version, model_format, staging)
                else:
                    _package(entry, version, model_format, staging)
                if folder.exists():
                    shutil.rmtree(folder)
                staging.rename(folder)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
            result = _cached(folder)
            assert result is not None
            return result

    def artifact_urls(self, name: str, version: str, model_format: str) -> tuple[str, str]:
        """(config.json URL, zip URL) in OpenSearch's artifact layout."""
        fmt = model_format.lower()
        base = f"{self.artifact_base_url}/{name}/{version}/{fmt}"
        return f"{base}/config.json", f"{base}/{zip_file_name(name, version, model_format)}"

    def _download(self, entry: CatalogEntry, version: str, model_format: str, out: Path) -> None:
        config_url, zip_url = self.artifact_urls(entry.name, version, model_format)
        _fetch(config_url, out / "config.download")
        try:
            config = json.loads((out / "config.download").read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CatalogError(f"[{config_url}] is not a model config.json: {exc}") from exc
        zip_path = out / zip_file_name(entry.name, version, model_format)
        _fetch(zip_url, zip_path)
        expected = str(config.get("model_content_hash_value") or "")
        if sha256_file(zip_path) != expected:
            raise CatalogError("model content changed")
        config["function_name"] = str(
            config.get("function_name") or config.get("model_task_type") or entry.function_name
        )
        config.update(name=entry.name, version=version, model_format=model_format)
        config["model_content_size_in_bytes"] = zip_path.stat().st_size
        (out / "config.download").unlink()
        (out / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")


def _fetch(url: str, target: Path) -> None:
    try:
        with urllib.request.urlopen(url, timeout=60) as response, target.open("wb") as out:
            shutil.copyfileobj(response, out, 1 << 20)
    except (urllib.error.URLError, OSError) as exc:
        raise CatalogError(f"cannot download [{url}]: {exc}") from exc


def _cached(folder: Path) -> PackagedModel | None:
    config_path = folder / "config.json"
    if not config_path.exists():
        return None
    config = json.loads(config_path.read_text(encoding="utf-8"))
    zips = list(folder.glob("*.zip"))
    if len(zips) != 1 or zips[0].stat().st_size != config.get("model_content_size_in_bytes"):
        return None
    return PackagedModel(zip_path=zips[0], config=config)


def _source(entry: CatalogEntry) -> tuple[Path, dict[str, Any]]:
    """The model folder (or file) an entry packages, and extra packaging options it implies."""
    if "offline" in entry.source:
        return _offline_sources()[entry.source["offline"]]()
    return Path(entry.source["path"]), {}


def _package_key(entry: CatalogEntry) -> str:
    source, extra = _source(entry)
    paths = [source, *(v for v in extra.values() if isinstance(v, Path))]
    recipe = json.dumps(
        [entry.function_name, entry.description, entry.source, entry.options], sort_keys=True, default=str
    )
    digest = hashlib.sha256(f"{packaging_code_hash()}\n{recipe}\n{source_fingerprint(*paths)}".encode())
    return digest.hexdigest()[:16]


def _package(entry: CatalogEntry, version: str, model_format: str, out: Path) -> None:
    source, extra = _source(entry)
    package_model(
        source,
        out,
        function_name=entry.function_name,
        model_format=model_format,
        name=entry.name,
        version=version,
        description=entry.description or None,
        **extra,
        **entry.options,
    )
