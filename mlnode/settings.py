"""ML node settings: ML Commons' ``plugins.ml_commons.*`` settings plus neuralpipe's extras.

Defaults come from ``configs/mlnode.yaml``; a user file given with ``--config`` overrides them, and
``PUT _cluster/settings`` changes the ML Commons part at run time (persisted in the data dir by the store).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mlnode.errors import IllegalArgument
from opensearch_contract.settings import flatten_settings, parse_bool, parse_int

PREFIX = "plugins.ml_commons."
DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "mlnode.yaml"

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

_EXTRA_DEFAULTS: dict[str, Any] = {
    "node_name": "neuralpipe-ml",
    "batch_max_size": 32,
    "batch_token_budget": 16384,
    "batch_memory_budget": 256 * 1024**2,
    "queue_capacity": 256,
    "worker_threads": 2,
    "intra_op_threads": 0,
    "max_zip_bytes": 4 * 1024**3,
    "cache_dir": None,
    "catalog": None,
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


def _read_yaml(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping at the top level")
    return data


@dataclass
class MLSettings:
    data_dir: Path
    ml_commons: dict[str, Any] = field(default_factory=dict)
    node_name: str = "neuralpipe-ml"
    batch_max_size: int = 32
    batch_token_budget: int = 16384
    batch_memory_budget: int = 256 * 1024**2
    queue_capacity: int = 256
    worker_threads: int = 2
    intra_op_threads: int = 0
    max_zip_bytes: int = 4 * 1024**3
    cache_dir: Path | None = None
    catalog: Path | None = None
    defaults: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path | str | None = None, *, data_dir: Path | str, **overrides: Any) -> MLSettings:
        """Defaults from configs/mlnode.yaml, then ``path`` (same layout), then keyword overrides.

        Keyword overrides take extras by name (``queue_capacity=4``) and ML Commons settings by their short name
        (``allow_registering_model_via_url=True``).
        """
        base = _read_yaml(DEFAULT_CONFIG)
        ml_defaults = {k.removeprefix(PREFIX): v for k, v in flatten_settings({"plugins.ml_commons": base.get("plugins.ml_commons", {})}).items()}
        extras = dict(_EXTRA_DEFAULTS)
        extras.update(base.get("neuralpipe") or {})
        ml = dict(ml_defaults)
        if path is not None:
            user = _read_yaml(Path(path))
            for key, value in flatten_settings({"plugins.ml_commons": user.get("plugins.ml_commons", {})}).items():
                ml[key.removeprefix(PREFIX)] = value
            for key, value in (user.get("neuralpipe") or {}).items():
                if key not in _EXTRA_DEFAULTS:
                    raise ValueError(f"{path}: unknown neuralpipe setting [{key}]; known: {sorted(_EXTRA_DEFAULTS)}")
                extras[key] = value
        for key, value in overrides.items():
            if key in _EXTRA_DEFAULTS:
                extras[key] = value
            elif key in ml_defaults:
                ml[key] = value
            else:
                raise ValueError(f"unknown setting [{key}]")
        settings = cls(
            data_dir=Path(data_dir),
            ml_commons={},
            node_name=str(extras["node_name"]),
            batch_max_size=int(extras["batch_max_size"]),
            batch_token_budget=int(extras["batch_token_budget"]),
            batch_memory_budget=int(extras["batch_memory_budget"]),
            queue_capacity=int(extras["queue_capacity"]),
            worker_threads=max(1, int(extras["worker_threads"])),
            intra_op_threads=max(0, int(extras["intra_op_threads"])),
            max_zip_bytes=int(extras["max_zip_bytes"]),
            cache_dir=Path(extras["cache_dir"]) if extras["cache_dir"] else None,
            catalog=Path(extras["catalog"]) if extras["catalog"] else None,
            defaults=ml_defaults,
        )
        settings.ml_commons = {k: settings.coerce(k, v, scope="config") for k, v in ml.items()}
        return settings

    # ---- ML Commons settings -------------------------------------------------------------------------------------

    def get(self, name: str) -> Any:
        return self.ml_commons[name]

    @property
    def resolved_intra_op_threads(self) -> int:
        """Threads each inference call may use: ``intra_op_threads``, or when 0 the usable cores divided among the
        worker threads (at least 1), so worker_threads x intra-op threads never exceeds the cores."""
        return resolve_intra_op_threads(self.intra_op_threads, self.worker_threads)

    @property
    def resolved_cache_dir(self) -> Path:
        return self.cache_dir or (self.data_dir / "cache")

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

    def as_flat(self, *, only_changed: bool = False) -> dict[str, Any]:
        return {
            PREFIX + k: v for k, v in sorted(self.ml_commons.items()) if not only_changed or v != self.defaults.get(k)
        }
