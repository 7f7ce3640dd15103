"""The CLI imports only the command it runs, and a data node starts without the ML role's modules.

A data node's restart (what a large index's users wait on) used to import opensearch-py, onnxruntime, tokenizers
and the ML node through the other commands' modules: about a second of start-up it never used. Each check runs in
a fresh interpreter, since this test process has imported everything already.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ML_ONLY = ["onnxruntime", "tokenizers", "opensearchpy", "torch", "mlnode.app", "mlnode.registry", "processors"]


def fresh(code: str) -> dict:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_a_data_node_starts_and_answers_without_the_ml_roles_modules(tmp_path: Path) -> None:
    code = f"""
import asyncio, json, sys
from neuralpipe.cli import _command_of, build_parser
args = build_parser(_command_of(["serve"])).parse_args(["serve", "--roles", "data", "--data-dir", {str(tmp_path)!r}])
from neuralpipe.node import NodeServer, NodeSpec, parse_roles
import aiohttp

async def main():
    server = NodeServer(NodeSpec(parse_roles(args.roles), args.data_dir))
    url = await server.start()
    try:
        async with aiohttp.ClientSession() as s:
            async with s.get(url + "/") as r:
                root = await r.json()
    finally:
        await server.stop()
    return root

root = asyncio.run(main())
print(json.dumps({{"name": root["name"], "loaded": sorted(m for m in {ML_ONLY!r} if m in sys.modules)}}))
"""
    got = fresh(code)
    assert got["name"] == "neuralpipe-data"
    assert got["loaded"] == []


def test_the_serve_command_module_alone_leaves_the_other_commands_unimported() -> None:
    got = fresh("""
import json, sys
from neuralpipe.cli import _command_of, build_parser
build_parser(_command_of(["serve", "--roles", "data"]))
print(json.dumps(sorted(m for m in sys.modules if m.startswith("neuralpipe.commands."))))
""")
    assert got == ["neuralpipe.commands.serve"]


def test_help_still_lists_every_command() -> None:
    out = subprocess.run([sys.executable, "-m", "neuralpipe.cli", "--help"], capture_output=True, text=True,
                         cwd=REPO, timeout=120)
    assert out.returncode == 0
    for name in ("serve", "models", "pipelines", "ingest", "search", "demo", "eval"):
        assert f"    {name}" in out.stdout


@pytest.mark.parametrize("argv", [["bogus"], ["--data-dir", "x", "serve"]])
def test_an_unknown_command_is_one_usage_error_naming_the_valid_ones(argv: list[str]) -> None:
    out = subprocess.run([sys.executable, "-m", "neuralpipe.cli", *argv], capture_output=True, text=True,
                         cwd=REPO, timeout=120)
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert "serve" in out.stderr and "eval" in out.stderr
