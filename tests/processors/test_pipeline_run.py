"""Pipeline execution semantics without a model: if, ignore_failure, on_failure (processor and pipeline level),
and the CLI's validate/export over the shipped example files."""

import json
from pathlib import Path

import pytest

from neuralpipe.commands import pipelines as cli
from processors import IngestDocument, IngestPipeline

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "neuralpipe" / "pipelines"
CHUNK = {"field_map": {"body": "chunks"}, "algorithm": {"delimiter": {"delimiter": "|"}}}


async def run(body, *sources):
    return await IngestPipeline.from_body("p", body, ml=None).run(
        [IngestDocument("i", str(n), dict(s)) for n, s in enumerate(sources)])


async def test_if_condition_skips_documents():
    body = {"processors": [{"text_chunking": {**CHUNK, "if": "ctx.lang == 'en' && ctx.body != null"}}]}
    out = await run(body, {"lang": "en", "body": "a|b"}, {"lang": "fr", "body": "c|d"})
    assert out[0].source["chunks"] == ["a|", "b"]
    assert "chunks" not in out[1].source


async def test_failure_is_per_document_and_names_the_processor():
    body = {"processors": [{"text_chunking": {**CHUNK, "tag": "split"}}]}
    out = await run(body, {"body": {"not": "text"}}, {"body": "x|y"})
    assert out[0].extra == {"processor_type": "text_chunking", "processor_tag": "split"}
    assert out[1].source["chunks"] == ["x|", "y"]


async def test_ignore_failure_and_on_failure():
    bad = {"body": 5.5}
    body = {"processors": [{"text_chunking": {**CHUNK, "ignore_failure": True}}]}
    (doc,) = await run(body, bad)
    assert doc.source == bad
    fallback = {"text_chunking": {"field_map": {"title": "chunks"}, "algorithm": {"delimiter": {}}}}
    body = {"processors": [{"text_chunking": {**CHUNK, "on_failure": [fallback]}}]}
    (doc,) = await run(body, {"body": [1], "title": "t"})
    assert doc.source["chunks"] == ["t"] and "_ingest" not in doc.source
    body = {"processors": [{"text_chunking": CHUNK},
                           {"text_chunking": {"field_map": {"body": "again"}, "algorithm": {"delimiter": {}}}}],
            "on_failure": [fallback]}
    (doc,) = await run(body, {"body": [1], "title": "t"})
    assert doc.source["chunks"] == ["t"] and "again" not in doc.source  # the rest of the pipeline is skipped


def test_repo_root_pipelines_is_the_packaged_folder():
    # README commands say `--pipeline pipelines/...`; the files live in the package so a wheel ships them
    assert (REPO / "pipelines").is_symlink()
    assert (REPO / "pipelines").resolve() == SHIPPED


def test_cli_validates_every_shipped_example(capsys):
    files = sorted(str(p) for p in SHIPPED.glob("*/*.yaml"))
    kinds = {Path(f).parent.name for f in files}
    assert kinds == {"ingest", "search"} and len(files) >= 8
    assert cli.run(_args("validate", files=files, ml_url=None)) == 0
    assert capsys.readouterr().out.count("OK ") == len(files)


def test_cli_validate_reports_all_errors(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("processors:\n  - text_embedding: {tag: a, model_id: m}\n  - sparse_encoding:\n"
                   "      {tag: b, model_id: m, field_map: {x: y}, prune_type: top_k, prune_ratio: 0}\n")
    assert cli.run(_args("validate", files=[str(bad)], ml_url=None)) == 1
    err = capsys.readouterr().err
    assert "processor [text_embedding] tag [a]: [field_map] required property is missing" in err
    assert "processor [sparse_encoding] tag [b]: Illegal prune_ratio 0.000000 for prune_type: top_k" in err


def test_cli_export_prints_the_opensearch_body(capsys):
    path = SHIPPED / "search" / "hybrid.yaml"
    assert cli.run(_args("export", file=str(path), ml_url=None, mapping=False, indent=2)) == 0
    body = json.loads(capsys.readouterr().out)
    assert body["phase_results_processors"][0]["normalization-processor"]["normalization"] == {"technique": "min_max"}


def _args(action, **kw):
    import argparse

    return argparse.Namespace(pipelines_command=action, **kw)
