"""Package a local Hugging Face model folder into an ML Commons model zip plus its ``config.json``.

The zip holds exactly one model file (``<name>.pt`` or ``<name>.onnx``; none for SPARSE_TOKENIZE),
``tokenizer.json`` with auto-truncation at the model's max length (as opensearch-py-ml writes it:
``{"direction": "Right", "max_length": N, "strategy": "LongestFirst", "stride": 0}``, padding removed),
and ``idf.json`` for SPARSE_TOKENIZE. Zip entries get a fixed timestamp so identical contents hash the
same. ``config.json`` is the ML Commons register body / OpenSearch pretrained ``config.json``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import shutil
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FUNCTION_NAMES = ("TEXT_EMBEDDING", "SPARSE_ENCODING", "SPARSE_TOKENIZE", "TEXT_SIMILARITY", "QUESTION_ANSWERING")
MODEL_FORMATS = ("TORCH_SCRIPT", "ONNX")
FRAMEWORK_TYPES = ("sentence_transformers", "huggingface_transformers")
DEFAULT_MAX_LENGTH = 512
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)
_SUFFIX = {"TORCH_SCRIPT": ".pt", "ONNX": ".onnx"}


# The code that decides what a packaged zip holds: the packaging package and the pooling modes it traces.
_PACKAGE_DIR = Path(__file__).resolve().parent
CODE_FILES = (*sorted(_PACKAGE_DIR.glob("*.py")), _PACKAGE_DIR.parent / "runtimes" / "pooling.py")


@functools.cache
def packaging_code_hash() -> str:
    """SHA-256 of ``CODE_FILES``: caches of packaged zips key on it, so a zip packaged by older code is never reused
    (read once per process)."""
    digest = hashlib.sha256()
    for path in CODE_FILES:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def source_fingerprint(*sources: Path) -> str:
    """A cheap identity of model source files (relative names, sizes, modification times; no content read)."""
    digest = hashlib.sha256()
    for source in sources:
        source = Path(source)
        files = [source] if source.is_file() else sorted(p for p in source.rglob("*") if p.is_file())
        for file in files:
            stat = file.stat()
            digest.update(f"{file.relative_to(source.parent)}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


class PackagingError(ValueError):
    """The source folder or the options cannot be packaged."""


@dataclass(frozen=True)
class PackagedModel:
    """A model zip and its ML Commons register body (``config.json``)."""

    zip_path: Path
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def config_path(self) -> Path:
        return self.zip_path.parent / "config.json"

    @property
    def name(self) -> str:
        return str(self.config["name"])

    @property
    def hash(self) -> str:
        return str(self.config["model_content_hash_value"])


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def zip_file_name(name: str, version: str, model_format: str) -> str:
    """OpenSearch's artifact zip name: the name after its first ``/``, ``/`` -> ``_``, then version and
    format (``sentence-transformers_all-MiniLM-L6-v2-1.0.1-torch_script.zip``)."""
    tail = name[name.index("/") + 1 :] if "/" in name else name
    return f"{tail.replace('/', '_')}-{version}-{model_format.lower()}.zip"


def model_file_name(name: str, model_format: str) -> str:
    return name.rstrip("/").rsplit("/", 1)[-1] + _SUFFIX[model_format]


def truncated_tokenizer_json(tokenizer_json: Path, max_length: int) -> str:
    """tokenizer.json with truncation reset to ``max_length`` (LongestFirst, Right) and no padding."""
    data = json.loads(Path(tokenizer_json).read_text(encoding="utf-8"))
    data["truncation"] = {"direction": "Right", "max_length": int(max_length), "strategy": "LongestFirst", "stride": 0}
    data["padding"] = None
    return json.dumps(data, ensure_ascii=False)


def write_zip(zip_path: Path, members: dict[str, Path | str | bytes]) -> None:
    """Write members (arcname -> file path, or text/bytes content) with fixed timestamps, atomically."""
    zip_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = zip_path.with_name(zip_path.name + ".part")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for arcname, content in members.items():
            info = zipfile.ZipInfo(arcname, date_time=_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            with archive.open(info, "w") as out:
                if isinstance(content, Path):
                    with content.open("rb") as src:
                        shutil.copyfileobj(src, out, 1 << 20)
                else:
                    out.write(content.encode("utf-8") if isinstance(content, str) else content)
    tmp.replace(zip_path)


def finish(
    out_dir: Path,
    *,
    name: str,
    version: str,
    description: str,
    function_name: str,
    model_format: str,
    members: dict[str, Path | str | bytes],
    model_config: dict[str, Any] | None,
) -> PackagedModel:
    """Write the zip and ``config.json`` into ``out_dir`` and return them."""
    out_dir = Path(out_dir)
    zip_path = out_dir / zip_file_name(name, version, model_format)
    write_zip(zip_path, members)
    config: dict[str, Any] = {
        "name": name,
        "version": version,
        "description": description,
        "model_format": model_format,
        "function_name": function_name,
        "model_task_type": function_name,
        "model_content_size_in_bytes": zip_path.stat().st_size,
        "model_content_hash_value": sha256_file(zip_path),
    }
    if model_config is not None:
        config["model_config"] = model_config
    (out_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return PackagedModel(zip_path=zip_path, config=config)


def scratch_dir() -> tempfile.TemporaryDirectory[str]:
    return tempfile.TemporaryDirectory(prefix="neuralpipe-package-")
