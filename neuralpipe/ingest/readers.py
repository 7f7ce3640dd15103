"""Input readers for ``neuralpipe ingest``: JSONL, CSV, a BEIR folder, or stdin.

Every reader yields, in input order, either a :class:`Record` (a parsed document) or a
:class:`ParseFailure` (a line it could not parse, with its line number). Nothing is skipped
silently: blank JSONL lines are the only input that produces neither.

Each record carries its ``offset``: the 1-based line number where it starts. Offsets are the
keys of the resume checkpoint, so they must be stable for the same input file.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, TextIO

FORMATS = ("auto", "jsonl", "csv", "beir")

# Fields that are OpenSearch metadata: they name the document, they never go into its source.
METADATA_ID_FIELD = "_id"


@dataclass(frozen=True)
class Record:
    offset: int
    id: str
    source: dict[str, Any]


@dataclass(frozen=True)
class ParseFailure:
    offset: int
    reason: str
    raw: str = field(repr=False)


Item = Record | ParseFailure


class InputError(Exception):
    """The input as a whole cannot be read (missing file, unknown format, bad CSV header)."""


def content_id(source: dict[str, Any]) -> str:
    """A stable id from the document's content: the same document always gets the same id."""
    canonical = json.dumps(source, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:32]


def _make_record(offset: int, doc: dict[str, Any], id_field: str) -> Record:
    source = dict(doc)
    raw_id = source.get(id_field)
    if id_field == METADATA_ID_FIELD:
        source.pop(METADATA_ID_FIELD, None)
    if raw_id is None or raw_id == "":
        return Record(offset, content_id(source), source)
    return Record(offset, str(raw_id), source)


def detect_format(path: str) -> str:
    if path == "-":
        return "jsonl"
    p = Path(path)
    if p.is_dir():
        return "beir"
    suffix = p.suffix.lower()
    if suffix in (".csv", ".tsv"):
        return "csv"
    return "jsonl"


def resolve_input(path: str, fmt: str) -> tuple[str, str]:
    """Return (format, the file actually read) for an input argument; raises InputError."""
    if fmt not in FORMATS:
        raise InputError(f"unknown input format [{fmt}], valid: {', '.join(FORMATS)}")
    if fmt == "auto":
        fmt = detect_format(path)
    if path == "-":
        if fmt == "beir":
            raise InputError("a BEIR folder cannot be read from stdin; use --format jsonl")
        return fmt, "-"
    p = Path(path)
    if fmt == "beir":
        corpus = p / "corpus.jsonl" if p.is_dir() else p
        if not corpus.is_file():
            raise InputError(f"no BEIR corpus at [{corpus}] (a BEIR folder holds corpus.jsonl)")
        return fmt, str(corpus)
    if not p.is_file():
        raise InputError(f"no such input file [{path}]")
    return fmt, str(p)


def read_jsonl(stream: TextIO, id_field: str = METADATA_ID_FIELD) -> Iterator[Item]:
    for lineno, line in enumerate(stream, start=1):
        text = line.strip()
        if not text:
            continue
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            yield ParseFailure(lineno, f"invalid JSON: {exc.msg} at column {exc.colno}", text)
            continue
        if not isinstance(doc, dict):
            yield ParseFailure(lineno, f"expected a JSON object, got {type(doc).__name__}", text)
            continue
        yield _make_record(lineno, doc, id_field)


def read_beir(stream: TextIO) -> Iterator[Item]:
    """BEIR corpus.jsonl: ``{"_id", "title", "text", ...}``; the id is ``_id``."""
    for item in read_jsonl(stream, METADATA_ID_FIELD):
        if isinstance(item, Record) and "text" not in item.source:
            yield ParseFailure(item.offset, "BEIR corpus line has no [text] field",
                               json.dumps(item.source, ensure_ascii=False))
            continue
        yield item


def read_csv(stream: TextIO, id_field: str = METADATA_ID_FIELD, delimiter: str = ",") -> Iterator[Item]:
    reader = csv.reader(stream, delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        return
    except csv.Error as exc:
        raise InputError(f"cannot read the CSV header: {exc}") from exc
    if not header or any(not h.strip() for h in header):
        raise InputError(f"the CSV header has an empty column name: {header}")
    width = len(header)
    while True:
        start = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield ParseFailure(start, f"invalid CSV: {exc}", "")
            continue
        if not row:
            continue
        if len(row) != width:
            raw = delimiter.join(row)
            yield ParseFailure(start, f"expected {width} columns ({', '.join(header)}), got {len(row)}", raw)
            continue
        yield _make_record(start, dict(zip(header, row, strict=False)), id_field)


def iter_input(path: str, fmt: str, *, id_field: str = METADATA_ID_FIELD) -> Iterator[Item]:
    """Yield every record and parse failure of an input (path ``-`` is stdin)."""
    fmt, file = resolve_input(path, fmt)
    if file == "-":
        stream: TextIO = io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8", errors="replace", newline="")
        yield from _read(stream, fmt, id_field, file)
        return
    with open(file, encoding="utf-8", errors="replace", newline="") as stream:
        yield from _read(stream, fmt, id_field, file)


def _read(stream: TextIO, fmt: str, id_field: str, file: str) -> Iterator[Item]:
    if fmt == "beir":
        yield from read_beir(stream)
    elif fmt == "csv":
        yield from read_csv(stream, id_field, "\t" if file.lower().endswith(".tsv") else ",")
    else:
        yield from read_jsonl(stream, id_field)


def count_lines(path: str, fmt: str) -> int | None:
    """Upper bound of the records in a file (for the progress bar's total and ETA); None for stdin."""
    fmt, file = resolve_input(path, fmt)
    if file == "-":
        return None
    n = 0
    with open(file, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            n += chunk.count(b"\n")
        # a last line without a trailing newline still counts
        if f.tell() > 0:
            f.seek(-1, 2)
            if f.read(1) != b"\n":
                n += 1
    if fmt == "csv":
        n = max(0, n - 1)
    return n
