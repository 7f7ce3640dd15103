"""ML node settings: ML Commons' ``plugins.ml_commons.*`` settings plus neuralpipe's extras.

Every default lives in one file, ``mlnode/configs/mlnode.yaml`` (package data, read with ``importlib.resources`` so
an installed package finds it; ``configs/`` at the repository root links to it). A user file given with ``--config``
(same layout) overrides it, keyword overrides come last, and ``PUT _cluster/settings`` changes the ML Commons part at
run time (persisted in the data dir by the store).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import yaml

from opensearch_contract.errors import IllegalArgument
from opensearch_contract.settings import flatten_settings, parse_bool, parse_int

PREFIX = "plugins.ml_commons."
PACKAGED_CONFIGS = resources.files("mlnode") / "configs"
DEFAULT_CONFIG = PACKAGED_CONFIGS / "mlnode.yaml"

# Integer settings with ML Commons' (min, max) bounds.
_INT_BOUNDS: dict[str, tuple[int, int]] = {
    "native_memory_threshold": (0, 100),
    "jvm_heap_memory_threshold": (0, 100),
    "max_model_on_node": (0, 10000),
    "max_register_model_tasks_per_node": (0, 10000),
    "max_deploy_model_tasks_per_node": (0, 10),
    "ml_task_timeout_in_seconds": (1, 86400),
    "monitoring_request_count": (0, 10_000_000),
}


def _optional_path(value: Any) -> Path | None:
    return Path(value) if value else None


# How each neuralpipe extra is read; their names and defaults are the ``neuralpipe`` section of DEFAULT_CONFIG.
_EXTRA_TYPES: dict[str, Callable[[Any], Any]] = {
    "node_name": str,
    "batch_max_size": int,
    "batch_token_budget": int,
    "batch_memory_budget": int,
    "queue_capacity": int,
    "worker_threads": lambda value: max(1, int(value)),
    "intra_op_threads": lambda value: max(0, int(value)),
    "max_zip_bytes": int,
    "cache_dir": _optional_path,
    "catalog": _optional_path,
    "artifacts_base_url": lambda value: str(value) if value else None,
    # the URL gate and zip limits (issue 11)
    "max_zip_entries": lambda value: max(1, int(value)),
    "max_zip_compression_ratio": lambda value: max(1.0, float(value)),
    "download_connect_timeout_seconds": lambda value: max(0.001, float(value)),
    "download_total_timeout_seconds": lambda value: max(0.001, float(value)),
    "download_min_bytes_per_second": lambda value: max(0, int(value)),
    "download_min_rate_window_seconds": lambda value: max(0.001, float(value)),
    "download_max_redirects": lambda value: max(0, int(value)),
    "file_url_folders": lambda value: None if value is None else tuple(
        Path(str(folder)).expanduser() for folder in ([value] if isinstance(value, (str, Path)) else value)
    ),
    "max_request_body_bytes": lambda value: max(1, int(value)),
    "max_predict_body_bytes": lambda value: max(1, int(value)),
    "max_predict_texts": lambda value: max(1, int(value)),
    "max_chars_per_token": lambda value: max(1, int(value)),
    "predict_timeout_seconds": lambda value: max(0.001, float(value)),
    "registry": lambda value: str(value) if value else None,
    "registry_index_prefix": str,
    "registry_node_id": lambda value: str(value) if value else None,
    "registry_verify_certs": lambda value: parse_bool(value.lower() if isinstance(value, str) else value),
    "registry_ca_certs": _optional_path,
    "registry_sync_interval": float,
    "registry_node_timeout": float,
}


def usable_cores() -> int:
    """CPUs this process may run on (its affinity mask, e.g. a container's cpuset), else the machine's count."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def resolve_intra_op_threads(configured: int, worker_threads: int, cores: int | None = None) -> int:
    if configured > 0:
        return configured
    return max(1, (cores or usable_cores()) // max(1, worker_threads))


def resolve_alone_threads(configured: int, worker_threads: int, cores: int | None = None) -> int:
    """Intra-op threads of a call that runs alone: ``intra_op_threads`` when set (one count for every call), else
    every usable core."""
    if configured > 0:
        return configured
    return max(1, cores or usable_cores())


def _read_yaml(path: Path | Traversable) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping at the top level")
    return data


def _ml_commons_section(data: dict[str, Any]) -> dict[str, Any]:
    """Short names (``model_auto_redeploy.enable``) of a file's ``plugins.ml_commons`` settings, nested or dotted."""
    flat = flatten_settings({"plugins.ml_commons": data.get("plugins.ml_commons") or {}})
    return {key.removeprefix(PREFIX): value for key, value in flat.items()}


@dataclass
class MLSettings:
    data_dir: Path
    ml_commons: dict[str, Any]
    defaults: dict[str, Any]  # the ML Commons settings' defaults (DEFAULT_CONFIG), by short name
    node_name: str
    batch_max_size: int
    batch_token_budget: int
    batch_memory_budget: int
    queue_capacity: int
    worker_threads: int
    intra_op_threads: int
    max_zip_bytes: int
    cache_dir: Path | None
    catalog: Path | None
    artifacts_base_url: str | None
    max_zip_entries: int
    max_zip_compression_ratio: float
    download_connect_timeout_seconds: float
    download_total_timeout_seconds: float
    download_min_bytes_per_second: int
    download_min_rate_window_seconds: float
    download_max_redirects: int
    file_url_folders: tuple[Path, ...] | None
    max_request_body_bytes: int
    max_predict_body_bytes: int
    max_predict_texts: int
    max_chars_per_token: int
    predict_timeout_seconds: float
    registry: str | None  # the shared registry's OpenSearch URL (mlnode.registry); None: this node's data dir
    registry_index_prefix: str
    registry_node_id: str | None
    registry_verify_certs: bool
    registry_ca_certs: Path | None
    registry_sync_interval: float
    registry_node_timeout: float

    @classmethod
    def load(cls, path: Path | str | None = None, *, data_dir: Path | str, **overrides: Any) -> MLSettings:
        """Defaults from DEFAULT_CONFIG, then ``path`` (same layout), then keyword overrides.

        Keyword overrides take extras by name (``queue_capacity=4``) and ML Commons settings by their short name
        (``allow_registering_model_via_url=True``).
        """
        base = _read_yaml(DEFAULT_CONFIG)
        ml_defaults = _ml_commons_section(base)
        extras = dict(base.get("neuralpipe") or {})
        ml = dict(ml_defaults)
        if path is not None:
            user = _read_yaml(Path(path))
            ml.update(_ml_commons_section(user))
            for key, value in (user.get("neuralpipe") or {}).items():
                if key not in extras:
                    raise ValueError(f"{path}: unknown neuralpipe setting [{key}]; known: {sorted(extras)}")
                extras[key] = value
        for key, value in overrides.items():
            if key in extras:
                extras[key] = value
            elif key in ml_defaults:
                ml[key] = value
            else:
                raise ValueError(f"unknown setting [{key}]; known: {sorted(extras) + sorted(ml_defaults)}")
        settings = cls(
            data_dir=Path(data_dir),
            ml_commons={},
            defaults=ml_defaults,
            **{key: _EXTRA_TYPES[key](value) for key, value in extras.items()},
        )
        settings.ml_commons = {k: settings.coerce(k, v, scope="config") for k, v in ml.items()}
        return settings

    # ---- ML Commons settings -------------------------------------------------------------------------------------

    def get(self, name: str) -> Any:
        return self.ml_commons[name]

    @property
    def resolved_intra_op_threads(self) -> int:
        """Threads an inference call may use beside other calls: ``intra_op_threads``, or when 0 the usable cores
        divided among the worker threads (at least 1), so worker_threads x intra-op threads never exceeds the cores."""
        return resolve_intra_op_threads(self.intra_op_threads, self.worker_threads)

    @property
    def resolved_alone_threads(self) -> int:
        """Threads a call may use when no other call runs or waits: every usable core, unless ``intra_op_threads``
        fixes one count for every call."""
        return resolve_alone_threads(self.intra_op_threads, self.worker_threads)

    @property
    def resolved_cache_dir(self) -> Path:
        return self.cache_dir or (self.data_dir / "cache")

    @property
    def resolved_file_url_folders(self) -> tuple[Path, ...]:
        """The folders ``file://`` model URLs may point into (symlinks resolved): ``file_url_folders``, or when
        null the ML node's own data dir (which holds the default catalog cache). Not the data node's files beside it
        in neuralpipe's layout: the CLI uploads the zips it packages in chunks, it needs no ``file://``."""
        folders: tuple[Path, ...] = self.file_url_folders if self.file_url_folders is not None else (self.data_dir,)
        return tuple(Path(folder).resolve() for folder in folders)

    def coerce(self, name: str, value: Any, *, scope: str = "persistent") -> Any:
        """Validate one ML Commons setting value (``name`` without the prefix); raise IllegalArgument naming it."""
        full = PREFIX + name
        if name not in self.defaults:
            raise IllegalArgument(f"{scope} setting [{full}], not recognized")
        if value is None:
            return self.defaults[name]
        default = self.defaults[name]
        if isinstance(default, bool):
            return parse_bool(value.lower() if isinstance(value, str) else value)
        if isinstance(default, int):
            return parse_int(value, full, *_INT_BOUNDS.get(name, (-(2**31), 2**31 - 1)))
        text = str(value)
        if name == "trusted_url_regex":
            try:
                re.compile(text)
            except re.error as exc:
                raise IllegalArgument(f"Failed to parse value [{text}] for setting [{full}]: {exc}") from None
        return text

    def apply(self, values: dict[str, Any]) -> None:
        """Apply already-validated short-name values; None resets to the default."""
        for name, value in values.items():
            self.ml_commons[name] = self.defaults[name] if value is None else value
