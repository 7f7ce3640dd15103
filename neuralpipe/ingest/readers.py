"""Input readers for ``neuralpipe ingest``: JSONL, CSV, a BEIR folder, or stdin.

Every reader yields, in input order, either a :class:`Record` (a parsed document) or a
:class:`ParseFailure` (a line it could not parse, with its line number). Nothing is skipped
silently: blank JSONL lines are the only input that produces neither.

Each record carries its ``offset``: the 1-based line number where it starts. Offsets are the
keys of the resume checkpoint of a file, so they must be stable for the same input file.

Document ids come from a field (JSONL: ``_id`` unless ``id_field`` names another), a column (CSV: ``id_field``, else
an ``_id`` or ``id`` column), or a hash of the content. :func:`open_input` says which in ``Input.ids``, so the
checkpoint can refuse a re-run that would make them differently (and index every record twice).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

FORMATS = ("auto", "jsonl", "csv", "beir")

# Fields that are OpenSearch metadata: they name the document, they never go into its source.
METADATA_ID_FIELD = "_id"
# A CSV's id column when none is named: the first of these in its header.
CSV_ID_COLUMNS = (METADATA_ID_FIELD, "id")
# How ids are made (``Input.ids``): "field:<name>" (JSONL; a content hash where the field is missing),
# "column:<name>" (CSV) or CONTENT_IDS.
CONTENT_IDS = "content"
DEFAULT_IDS = f"field:{METADATA_ID_FIELD}"


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


def describe_ids(ids: str) -> str:
    """``column:id`` -> ``column [id]``, for messages."""
    if ids == CONTENT_IDS:
        return "a hash of the content"
    kind, _, name = ids.partition(":")
    return f"{kind} [{name}]"


def id_field_option(ids: str) -> str:
    """The ``--id-field`` value that makes ids the way ``ids`` says."""
    return "''" if ids == CONTENT_IDS else ids.partition(":")[2]


@dataclass
class Input:
    """An input opened for reading: its name, the file read (None for stdin), how its ids are made, its items."""

    name: str
    path: Path | None
    format: str
    ids: str
    items: Iterator[Item]


def _make_record(offset: int, doc: dict[str, Any], id_field: str | None) -> Record:
    source = dict(doc)
    raw_id = source.get(id_field) if id_field else None
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


def read_jsonl(stream: TextIO, id_field: str | None = METADATA_ID_FIELD) -> Iterator[Item]:
    """``id_field`` None or "": every id is a hash of the content."""
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


def _csv_header(reader: Any) -> list[str]:
    try:
        header = next(reader)
    except StopIteration:
        return []
    except csv.Error as exc:
        raise InputError(f"cannot read the CSV header: {exc}") from exc
    if not header or any(not h.strip() for h in header):
        raise InputError(f"the CSV header has an empty column name: {header}")
    return header


def csv_id_column(header: list[str], id_field: str | None) -> str | None:
    """The column holding document ids: ``id_field`` ("" for none: content hashes), else ``_id`` or ``id``."""
    if id_field is None:
        return next((c for c in CSV_ID_COLUMNS if c in header), None)
    if not id_field or not header:
        return None
    if id_field not in header:
        raise InputError(f"id field [{id_field}] is not a column of the CSV; columns: {', '.join(header)} "
                         "('' for ids from a hash of the content)")
    return id_field


def _csv_rows(reader: Any, header: list[str], id_column: str | None, delimiter: str) -> Iterator[Item]:
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
        yield _make_record(start, dict(zip(header, row, strict=False)), id_column)


def read_csv(stream: TextIO, id_field: str | None = None, delimiter: str = ",") -> Iterator[Item]:
    reader = csv.reader(stream, delimiter=delimiter)
    header = _csv_header(reader)
    if header:
        yield from _csv_rows(reader, header, csv_id_column(header, id_field), delimiter)


def open_input(path: str, fmt: str, *, id_field: str | None = None) -> Input:
    """Open an input (path ``-`` is stdin); a CSV header is read at once, so ``ids`` is known before any record.

    ``id_field`` None: ``_id`` (JSONL), the ``_id`` or ``id`` column (CSV); "": a hash of the content."""
    fmt, file = resolve_input(path, fmt)
    if file == "-":
        stream: TextIO = io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8", errors="replace", newline="")
        name, file_path = "stdin", None
    else:
        stream = open(file, encoding="utf-8", errors="replace", newline="")
        name, file_path = str(Path(file).resolve()), Path(file).resolve()
    try:
        if fmt == "csv":
            delimiter = "\t" if file.lower().endswith(".tsv") else ","
            reader = csv.reader(stream, delimiter=delimiter)
            header = _csv_header(reader)
            column = csv_id_column(header, id_field)
            ids = f"column:{column}" if column else CONTENT_IDS
            items = _csv_rows(reader, header, column, delimiter) if header else iter(())
        elif fmt == "beir":
            ids, items = DEFAULT_IDS, read_beir(stream)
        else:
            field_name = METADATA_ID_FIELD if id_field is None else id_field
            ids = f"field:{field_name}" if field_name else CONTENT_IDS
            items = read_jsonl(stream, field_name)
    except BaseException:
        if file_path is not None:
            stream.close()
        raise
    return Input(name, file_path, fmt, ids, _closing(items, stream if file_path is not None else None))


def _closing(items: Iterator[Item], stream: TextIO | None) -> Iterator[Item]:
    try:
        yield from items
    finally:
        if stream is not None:
            stream.close()


def iter_input(path: str, fmt: str, *, id_field: str | None = None) -> Iterator[Item]:
    """Yield every record and parse failure of an input (path ``-`` is stdin)."""
    yield from open_input(path, fmt, id_field=id_field).items


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
