"""Validate an ML Commons model zip and unpack it safely.

A zip is accepted only if (checked in this order, nothing written before all pass):

1. its size is within ``max_bytes`` (the file, and the sum of its uncompressed members), it has at most
   ``max_entries`` members (counted from the end-of-central-directory record before the directory is parsed), and
   neither a member of more than 1 MB nor the whole zip unpacks to more than ``max_ratio`` times its compressed size;
2. its SHA-256 equals ``model_content_hash_value`` (ML Commons: ``model content changed``);
3. no member escapes the folder (absolute paths, ``..``, drive letters, backslashes, symlinks);
4. no member is an executable (native binaries or scripts, by extension or by magic bytes);
5. exactly one ``.pt`` (TORCH_SCRIPT) or ``.onnx`` (ONNX) file, matching ``model_format``, with ML
   Commons' messages ``Model format is X, but find .pt file`` / ``Find multiple model files, but
   expected only one`` / ``Can't find model file`` -- SPARSE_TOKENIZE needs no model file;
6. a ``tokenizer.json`` at the top level (``No tokenizer file``).

It is then extracted into a sibling temporary folder and renamed to ``dest_dir`` in one step. Extraction reads each
member's compressed bytes itself (stored or deflate only) and stops as soon as a member unpacks to more than its
central-directory size, the total passes ``max_bytes``, or the stream ends early or fails its CRC, so a zip whose
headers lie about sizes cannot unpack more than the limits allow.
"""

from __future__ import annotations

import shutil
import stat
import struct
import tempfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from typing import BinaryIO

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
DEFAULT_MAX_ENTRIES = 1000
DEFAULT_MAX_RATIO = 100.0
RATIO_FLOOR = 1 << 20  # members (and zips) unpacking to at most 1 MB are never refused for their compression ratio
_BLOCK = 1 << 20
_EOCD = b"PK\x05\x06"
_ZIP64_LOCATOR = b"PK\x06\x07"
_ZIP64_EOCD = b"PK\x06\x06"
_LOCAL_HEADER = b"PK\x03\x04"
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


def _entries_in_directory(zip_path: Path) -> int | None:
    """The member count the end-of-central-directory record declares (the zip64 record's when the classic one says
    0xFFFF); None when no record is found."""
    size = zip_path.stat().st_size
    with open(zip_path, "rb") as fh:
        start = max(0, size - (22 + 0xFFFF))
        fh.seek(start)
        tail = fh.read()
        at = tail.rfind(_EOCD)
        if at < 0 or len(tail) - at < 22:
            return None
        total = struct.unpack("<H", tail[at + 10 : at + 12])[0]
        if total != 0xFFFF:
            return total
        locator = tail[at - 20 : at] if at >= 20 else b""
        if not locator.startswith(_ZIP64_LOCATOR):
            return None
        fh.seek(struct.unpack("<Q", locator[8:16])[0])
        record = fh.read(56)
    if len(record) < 40 or not record.startswith(_ZIP64_EOCD):
        return None
    return int(struct.unpack("<Q", record[32:40])[0])


def _check_entry_count(count: int, max_entries: int) -> None:
    if count > max_entries:
        raise ZipCheckError(
            f"Model zip has {count} entries, more than the limit of {max_entries} (setting max_zip_entries)"
        )


def _check_ratio(name: str, unpacked: int, packed: int, max_ratio: float) -> None:
    if unpacked > RATIO_FLOOR and unpacked > max_ratio * max(packed, 1):
        raise ZipCheckError(
            f"Model zip {name} unpacks to {unpacked} bytes from {packed} compressed bytes, a compression ratio above "
            f"the limit of {max_ratio:g} (setting max_zip_compression_ratio)"
        )


def check_members(
    archive: zipfile.ZipFile,
    *,
    model_format: str,
    function_name: str,
    max_bytes: int,
    max_entries: int = DEFAULT_MAX_ENTRIES,
    max_ratio: float = DEFAULT_MAX_RATIO,
) -> list[zipfile.ZipInfo]:
    """Apply rules 1 (entries, uncompressed size, compression ratio) and 3-6 to an open archive; return its file
    members."""
    infos = archive.infolist()
    _check_entry_count(len(infos), max_entries)
    total = sum(info.file_size for info in infos)
    if total > max_bytes:
        raise ZipCheckError(f"model zip unpacks to {total} bytes, more than the limit of {max_bytes} bytes")
    for info in infos:
        _check_ratio(f"entry [{info.filename}]", info.file_size, info.compress_size, max_ratio)
    _check_ratio("content", total, sum(info.compress_size for info in infos), max_ratio)
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


def _member_stream(zip_file: BinaryIO, info: zipfile.ZipInfo) -> tuple[int, zlib._Decompress | None]:
    """Seek ``zip_file`` to ``info``'s compressed bytes; return their length and a decompressor (None: stored)."""
    if info.flag_bits & 0x1:
        raise ZipCheckError(f"model zip entry [{info.filename}] is encrypted")
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise ZipCheckError(
            f"model zip entry [{info.filename}] uses compression method {info.compress_type}; "
            "supported: stored (0), deflate (8)"
        )
    zip_file.seek(info.header_offset)
    header = zip_file.read(30)
    if len(header) != 30 or not header.startswith(_LOCAL_HEADER):
        raise ZipCheckError(f"model zip entry [{info.filename}] has no local file header")
    name_length, extra_length = struct.unpack("<HH", header[26:30])
    zip_file.seek(info.header_offset + 30 + name_length + extra_length)
    return info.compress_size, (zlib.decompressobj(-15) if info.compress_type == zipfile.ZIP_DEFLATED else None)


def _write_block(out: BinaryIO, data: bytes) -> None:
    """One write of unpacked bytes (a seam: the full-disk test makes it raise ENOSPC)."""
    out.write(data)


def _unpack_member(zip_file: BinaryIO, info: zipfile.ZipInfo, out: BinaryIO, budget: int, max_bytes: int) -> int:
    """Stream one member into ``out``, refusing to write more than its declared size or ``budget`` bytes; check that
    its stream ends where its header says and that its CRC-32 matches. Returns the bytes written."""
    compressed_left, decompressor = _member_stream(zip_file, info)
    written = crc = 0

    def emit(data: bytes) -> None:
        nonlocal written, crc
        written += len(data)
        if written > info.file_size:
            raise ZipCheckError(
                f"model zip entry [{info.filename}] unpacks to more than the {info.file_size} bytes its header declares"
            )
        if written > budget:
            raise ZipCheckError(f"model zip unpacks to more than the limit of {max_bytes} bytes")
        crc = zlib.crc32(data, crc)
        _write_block(out, data)

    while compressed_left and not (decompressor is not None and decompressor.eof):
        raw = zip_file.read(min(compressed_left, _BLOCK))
        if not raw:
            break
        compressed_left -= len(raw)
        if decompressor is None:
            emit(raw)
            continue
        while raw and not decompressor.eof:
            emit(decompressor.decompress(raw, _BLOCK))
            raw = decompressor.unconsumed_tail
    if decompressor is not None:
        emit(decompressor.flush())
        complete = decompressor.eof or info.file_size == 0 and info.compress_size == 0
    else:
        complete = compressed_left == 0
    if not complete or written != info.file_size or crc != info.CRC:
        raise ZipCheckError(f"model zip entry [{info.filename}] is corrupt (its data does not match its header)")
    return written


def validate_and_extract(
    zip_path: Path,
    dest_dir: Path,
    *,
    model_format: str,
    function_name: str,
    expected_hash: str | None,
    max_bytes: int,
    max_entries: int = DEFAULT_MAX_ENTRIES,
    max_ratio: float = DEFAULT_MAX_RATIO,
) -> Path:
    """Check ``zip_path`` (rules above) and unpack it into ``dest_dir`` (which must not exist or be
    empty). Returns ``dest_dir``. Raises ``ZipCheckError``; on error nothing is left behind (``OSError`` from a
    failed write, e.g. a full disk, passes through, also leaving nothing)."""
    zip_path, dest_dir = Path(zip_path), Path(dest_dir)
    size = zip_path.stat().st_size
    if size > max_bytes:
        raise ZipCheckError(f"model zip is {size} bytes, more than the limit of {max_bytes} bytes")
    if not expected_hash:
        raise ZipCheckError(HASH_REQUIRED)
    if sha256_file(zip_path) != expected_hash.strip().lower():
        raise ZipCheckError("model content changed")
    declared = _entries_in_directory(zip_path)
    if declared is not None:
        _check_entry_count(declared, max_entries)  # before parsing a directory of any size
    try:
        archive = zipfile.ZipFile(zip_path)
    except zipfile.BadZipFile as exc:
        raise ZipCheckError(f"model content is not a zip file: {exc}") from exc
    with archive:
        files = check_members(
            archive,
            model_format=model_format,
            function_name=function_name,
            max_bytes=max_bytes,
            max_entries=max_entries,
            max_ratio=max_ratio,
        )
        if dest_dir.exists() and any(dest_dir.iterdir()):
            raise ZipCheckError(f"model folder [{dest_dir}] already holds files")
        dest_dir.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{dest_dir.name}-", dir=dest_dir.parent))
        try:
            unpacked = 0
            with open(zip_path, "rb") as raw:
                for info in files:
                    target = staging.joinpath(*PurePosixPath(info.filename).parts)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with target.open("wb") as out:
                        unpacked += _unpack_member(raw, info, out, max_bytes - unpacked, max_bytes)
            if dest_dir.exists():
                dest_dir.rmdir()
            staging.rename(dest_dir)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return dest_dir


__all__ = ["HASH_REQUIRED", "ZipCheckError", "check_members", "validate_and_extract"]
