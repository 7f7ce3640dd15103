"""Validate an ML Commons model zip and unpack it safely.

A zip is accepted only if (checked in this order, nothing written before all pass):

1. its size is within ``max_bytes`` (the file, and the sum of its uncompressed members);
2. its SHA-256 equals ``model_content_hash_value`` (ML Commons: ``model content changed``);
3. no member escapes the folder (absolute paths, ``..``, drive letters, backslashes, symlinks);
4. no member is an executable (native binaries or scripts, by extension or by magic bytes);
5. exactly one ``.pt`` (TORCH_SCRIPT) or ``.onnx`` (ONNX) file, matching ``model_format``, with ML
   Commons' messages ``Model format is X, but find .pt file`` / ``Find multiple model files, but
   expected only one`` / ``Can't find model file`` -- SPARSE_TOKENIZE needs no model file;
6. a ``tokenizer.json`` at the top level (``No tokenizer file``).

It is then extracted into a sibling temporary folder and renamed to ``dest_dir`` in one step.
"""

from __future__ import annotations

import shutil
import stat
import tempfile
import zipfile
from pathlib import Path, PurePosixPath

from mlnode.packaging.core import sha256_file

MODEL_SUFFIX = {"TORCH_SCRIPT": ".pt", "ONNX": ".onnx"}
EXECUTABLE_SUFFIXES = frozenset(
    {
        ".exe",
        ".dll",
        ".so",
        ".dylib",
        ".bin.exe",
        ".sh",
        ".bash",
        ".bat",
        ".cmd",
        ".ps1",
        ".com",
        ".msi",
        ".jar",
        ".py",
        ".pyc",
        ".pl",
        ".rb",
        ".js",
        ".vbs",
        ".scr",
        ".elf",
    }
)
_EXECUTABLE_MAGIC = (b"\x7fELF", b"MZ", b"#!", b"\xcf\xfa\xed\xfe", b"\xce\xfa\xed\xfe", b"\xca\xfe\xba\xbe")
HASH_REQUIRED = "Model content Hash code need to be provided when register via url. Please calculate sha 256 Hash code."


class ZipCheckError(ValueError):
    """A rejected model zip; ``str(error)`` is the reason shown to the user (HTTP 400)."""

    status = 400
    error_type = "illegal_argument_exception"


def _safe_name(name: str) -> bool:
    if not name or "\\" in name or name.startswith("/") or "\x00" in name:
        return False
    parts = PurePosixPath(name).parts
    return not any(part == ".." for part in parts) and not (parts and ":" in parts[0])


def _is_symlink(info: zipfile.ZipInfo) -> bool:
    return info.create_system == 3 and stat.S_ISLNK(info.external_attr >> 16)


def _looks_executable(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> bool:
    name = info.filename.lower()
    if any(name.endswith(suffix) for suffix in EXECUTABLE_SUFFIXES):
        return True
    with archive.open(info) as member:
        head = member.read(4)
    return any(head.startswith(magic) for magic in _EXECUTABLE_MAGIC)


def check_members(
    archive: zipfile.ZipFile, *, model_format: str, function_name: str, max_bytes: int
) -> list[zipfile.ZipInfo]:
    """Apply rules 1 (uncompressed size) and 3-6 to an open archive; return its file members."""
    infos = archive.infolist()
    total = sum(info.file_size for info in infos)
    if total > max_bytes:
        raise ZipCheckError(f"model zip unpacks to {total} bytes, more than the limit of {max_bytes} bytes")
    files = []
    for info in infos:
        if not _safe_name(info.filename) or _is_symlink(info):
            raise ZipCheckError(f"model zip entry [{info.filename}] points outside the model folder")
        if info.is_dir():
            continue
        if _looks_executable(archive, info):
            raise ZipCheckError(f"model zip entry [{info.filename}] is an executable file; executables are not allowed")
        files.append(info)
    model_format = model_format.upper()
    function_name = function_name.upper()
    found = None
    for info in files:
        for fmt, suffix in MODEL_SUFFIX.items():
            if info.filename.endswith(suffix):
                if fmt != model_format:
                    raise ZipCheckError(f"Model format is {model_format}, but find {suffix} file")
                if found is not None:
                    raise ZipCheckError("Find multiple model files, but expected only one")
                found = info
    if found is None and function_name != "SPARSE_TOKENIZE":
        raise ZipCheckError("Can't find model file")
    if not any(info.filename == "tokenizer.json" for info in files):
        raise ZipCheckError("No tokenizer file")
    return files


def validate_and_extract(
    zip_path: Path,
    dest_dir: Path,
    *,
    model_format: str,
    function_name: str,
    expected_hash: str | None,
    max_bytes: int,
) -> Path:
    """Check ``zip_path`` (rules above) and unpack it into ``dest_dir`` (which must not exist or be
    empty). Returns ``dest_dir``. Raises ``ZipCheckError``; on error nothing is left behind."""
    zip_path, dest_dir = Path(zip_path), Path(dest_dir)
    size = zip_path.stat().st_size
    if size > max_bytes:
        raise ZipCheckError(f"model zip is {size} bytes, more than the limit of {max_bytes} bytes")
    if not expected_hash:
        raise ZipCheckError(HASH_REQUIRED)
    if sha256_file(zip_path) != expected_hash.strip().lower():
        raise ZipCheckError("model content changed")
    try:
        archive = zipfile.ZipFile(zip_path)
    except zipfile.BadZipFile as exc:
        raise ZipCheckError(f"model content is not a zip file: {exc}") from exc
    with archive:
        files = check_members(archive, model_format=model_format, function_name=function_name, max_bytes=max_bytes)
        if dest_dir.exists() and any(dest_dir.iterdir()):
            raise ZipCheckError(f"model folder [{dest_dir}] already holds files")
        dest_dir.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{dest_dir.name}-", dir=dest_dir.parent))
        try:
            for info in files:
                target = staging.joinpath(*PurePosixPath(info.filename).parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(info) as src, target.open("wb") as out:
                    shutil.copyfileobj(src, out, 1 << 20)
            if dest_dir.exists():
                dest_dir.rmdir()
            staging.rename(dest_dir)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return dest_dir
