"""The pipelines shipped in neuralpipe/pipelines/ name only models a user can register by their catalog names
(``POST /_plugins/_ml/models/_register`` with a pretrained name), and they run against such models."""

from pathlib import Path

import pytest

from mlnode.catalog import Catalog
from processors import IngestDocument, MLClient
from processors.pipeline import IngestPipeline, build_pipeline, load_pipeline_file

SHIPPED = Path(__file__).resolve().parents[2] / "neuralpipe" / "pipelines"
FILES = sorted(SHIPPED.glob("*/*.yaml"))


@pytest.mark.unit
def test_every_shipped_pipeline_is_found():
    assert {p.parent.name for p in FILES} == {"ingest", "search"} and len(FILES) >= 9


@pytest.mark.unit
@pytest.mark.parametrize("path", FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_shipped_pipeline_names_only_catalog_models(path):
    catalog = Catalog.load()
    refs = build_pipeline(load_pipeline_file(path), ml=None).model_refs()
    assert refs, f"{path.name} names no model"
    assert set(refs) <= set(catalog.names()), f"{path.name} names {sorted(set(refs) - set(catalog.names()))}"


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.parametrize("path", FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
async def test_shipped_pipeline_runs_against_models_registered_by_catalog_name(ml_node, path):
    # the session's ML node holds all-MiniLM-L6-v2 and SPLADE-tiny under their catalog names
    async with MLClient(ml_node.url) as ml:
        pipeline = build_pipeline(load_pipeline_file(path), ml=ml)
        await pipeline.prepare()  # resolves every model name; an unknown one is a 404 here
        if not isinstance(pipeline, IngestPipeline):
            return
        (doc,) = await pipeline.run([IngestDocument("docs", "1", {"text": "Vaccines train the immune system."})])
    assert isinstance(doc, IngestDocument), doc
    written = set(doc.source) - {"text"}
    assert written, f"{path.name} wrote nothing"
