"""The one way documents get into an index, for ``neuralpipe ingest``, the demo and ``eval``: a checkpoint and a
dead-letter file (or neither: in memory), the ingest runner, and a refresh once the documents are acknowledged."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from opensearchpy import AsyncOpenSearch
from opensearchpy.exceptions import TransportError

from neuralpipe.admin.models import Say, model_admin
from neuralpipe.ingest.checkpoint import Checkpoint
from neuralpipe.ingest.deadletter import DeadLetter
from neuralpipe.ingest.readers import DEFAULT_IDS, Item, count_lines, open_input
from neuralpipe.ingest.runner import IngestOptions, IngestRunner, IngestStats
from neuralpipe.ingest.setup import Target, prepare_target, read_pipeline_body
from neuralpipe.local import Connection, make_client, make_ml_client, open_endpoints
from processors import semantic
from processors.pipeline import IngestPipeline

log = logging.getLogger(__name__)

STDIN = "stdin"  # the input name of `neuralpipe ingest -`


@dataclass(frozen=True)
class IngestJob:
    options: IngestOptions  # holds the target index
    input_name: str
    input_path: Path | None = None  # a file: its fingerprint guards the checkpoint against a replaced input
    ids: str = DEFAULT_IDS  # how the input's documents get their ids (the checkpoint refuses another way)
    checkpoint: Path | None = None  # None: kept in memory (a run that cannot resume)
    dead_letter: Path | None = None
    restart: bool = False  # forget what the checkpoint holds and the old failures
    new_index: bool = False  # the index was just created: nothing in it can be duplicated, start over freely


async def run_ingest(client: AsyncOpenSearch, job: IngestJob, items: Iterable[Item], *,
                     pipeline: IngestPipeline | None, total: int | None) -> IngestStats:
    # stdin has no file to fingerprint or line numbers that name the same record twice: its checkpoint knows
    # records by their id and content
    checkpoint = Checkpoint.open(job.checkpoint, input_name=job.input_name, index=job.options.index,
                                 restart=job.restart, new_index=job.new_index, input_path=job.input_path,
                                 ids=job.ids, keyed_by="record" if job.input_name == STDIN else "line")
    if (job.restart or job.new_index) and job.dead_letter is not None:
        job.dead_letter.unlink(missing_ok=True)  # a fresh start: the old failures belong to the old run
    runner = IngestRunner(client, pipeline=pipeline, checkpoint=checkpoint, dead_letter=DeadLetter(job.dead_letter),
                          options=job.options)
    stats = await runner.run(checkpoint.track(items), total=total)
    if not stats.aborted:
        try:
            await client.indices.refresh(index=job.options.index)
        except TransportError:  # a refresh is a courtesy; the data is acknowledged
            log.debug("refresh failed", exc_info=True)
    return stats


@dataclass(frozen=True)
class Source:
    """What ``neuralpipe ingest`` reads: a file or ``-`` (stdin), in a resolved format."""

    path: str
    fmt: str
    id_field: str | None = None  # None: _id (JSONL), an _id or id column (CSV); "": a hash of the content
    limit: int | None = None


async def ingest_source(conn: Connection, source: Source, job: IngestJob, *, pipeline_file: Path | None,
                        say: Say, index_body: dict[str, Any] | None = None) -> IngestStats:
    """``neuralpipe ingest``: connect (embedded nodes for what is not given), prepare the index and the pipeline
    (on an embedded ML node, registering the catalog models the pipeline names that are missing), then run."""
    body = read_pipeline_body(pipeline_file) if pipeline_file is not None else None
    opened = open_input(source.path, source.fmt, id_field=source.id_field)  # a bad CSV header fails before connecting
    job = replace(job, input_path=opened.path, ids=opened.ids)
    # semantic fields in a new index's body need an ML node: the embedded data node embeds them server-side
    semantic_body = bool(semantic.fields_of((index_body or {}).get("mappings")))
    async with open_endpoints(opensearch=conn.opensearch, ml_url=conn.ml_url, data_dir=conn.data_dir,
                              need_ml=body is not None or semantic_body) as endpoints:
        client = make_client(endpoints.opensearch_url, conn.options)
        # an ML node given without a pipeline still embeds the index's client-side semantic fields
        wants_ml = body is not None or conn.ml_url is not None
        ml = make_ml_client(endpoints.ml_url, conn.options) if wants_ml and endpoints.ml_url else None
        try:
            target = Target(job.options.index, pipeline_file.stem if pipeline_file else "ingest", body,
                            index_body=index_body)
            if ml is not None and not conn.ml_url:
                async with model_admin(ml.base_url, conn.options, say=say) as admin:
                    pipeline, created = await prepare_target(client, ml, target, admin=admin)
            else:
                pipeline, created = await prepare_target(client, ml, target)
            total = await asyncio.to_thread(count_lines, source.path, source.fmt)
            items: Iterable[Item] = opened.items
            if source.limit is not None:
                items = itertools.islice(items, source.limit)
                total = min(total, source.limit) if total is not None else source.limit
            # a new index holds nothing: an old checkpoint for it would skip documents it never got
            return await run_ingest(client, replace(job, new_index=created), items, pipeline=pipeline, total=total)
        finally:
            await client.close()
            if ml is not None:
                await ml.close()
