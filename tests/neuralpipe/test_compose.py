"""docker-compose.yml and the Dockerfile, checked for structure.

No Docker engine runs on this machine, so nothing here starts a container: these tests parse the
files and check what a user relies on (services, images, healthchecks, volumes, ports, the ML
node's command)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from neuralpipe.cli import build_parser

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_services_and_images(compose: dict) -> None:
    services = compose["services"]
    assert set(services) == {"opensearch", "dashboards", "ml-node"}
    assert services["opensearch"]["image"].startswith("opensearchproject/opensearch:")
    assert services["dashboards"]["image"].startswith("opensearchproject/opensearch-dashboards:")
    # the k-NN plugin ships in the official image; single node
    assert "discovery.type=single-node" in services["opensearch"]["environment"]
    assert services["ml-node"]["build"] == {"context": ".", "dockerfile": "Dockerfile"}


def test_security_on_with_initial_admin_password(compose: dict) -> None:
    env = compose["services"]["opensearch"]["environment"]
    password = [e for e in env if e.startswith("OPENSEARCH_INITIAL_ADMIN_PASSWORD=")]
    assert password and "${OPENSEARCH_INITIAL_ADMIN_PASSWORD:?" in password[0]  # required, never a default
    assert compose["services"]["dashboards"]["environment"] == ['OPENSEARCH_HOSTS=["https://opensearch:9200"]']
    assert "DISABLE_SECURITY_PLUGIN=true" in (ROOT / "docker-compose.yml").read_text()  # the documented way off


def test_healthchecks_and_startup_order(compose: dict) -> None:
    for name, service in compose["services"].items():
        check = service["healthcheck"]
        assert check["test"][0] in ("CMD", "CMD-SHELL"), name
        assert {"interval", "timeout", "retries"} <= set(check), name
    assert "_cluster/health" in compose["services"]["opensearch"]["healthcheck"]["test"][1]
    assert compose["services"]["dashboards"]["depends_on"]["opensearch"]["condition"] == "service_healthy"
    assert "127.0.0.1:9300/" in " ".join(compose["services"]["ml-node"]["healthcheck"]["test"])


def test_named_volumes_and_ports(compose: dict) -> None:
    assert set(compose["volumes"]) == {"opensearch-data", "ml-data"}
    assert "opensearch-data:/usr/share/opensearch/data" in compose["services"]["opensearch"]["volumes"]
    assert "ml-data:/data" in compose["services"]["ml-node"]["volumes"]
    ports = {name: s["ports"] for name, s in compose["services"].items()}
    assert "9200:9200" in ports["opensearch"]
    assert ports["dashboards"] == ["5601:5601"]
    assert ports["ml-node"] == ["127.0.0.1:9300:9300"]  # the ML node is published on this machine only
    text = (ROOT / "docker-compose.yml").read_text()
    for port in ("9200", "9600", "5601", "9300"):  # every published port is documented in the header
        assert re.search(rf"^#\s+{port}\s+\S", text, re.M), port


def test_ml_node_behind_tls_with_authentication_delegated_to_opensearch(compose: dict) -> None:
    service = compose["services"]["ml-node"]
    argv = service["command"]
    assert argv[:4] == ["neuralpipe", "serve", "--roles", "ml"]
    assert argv[argv.index("--auth-opensearch") + 1] == "https://opensearch:9200"
    cert, key = argv[argv.index("--tls-cert") + 1], argv[argv.index("--tls-key") + 1]
    assert "./certs:/certs:ro" in service["volumes"] and cert.startswith("/certs/") and key.startswith("/certs/")
    assert "https://127.0.0.1:9300/health" in " ".join(service["healthcheck"]["test"])
    assert service["depends_on"]["opensearch"]["condition"] == "service_healthy"
    # the flags are the ones `neuralpipe serve` takes
    args = build_parser().parse_args(argv[1:])
    assert (args.tls_cert.name, args.auth_opensearch, args.auth_no_verify_certs) == ("ml-node.pem",
                                                                                      "https://opensearch:9200", True)


def test_dockerfile_runs_the_ml_node() -> None:
    lines = [line.strip() for line in (ROOT / "Dockerfile").read_text().splitlines()]
    cmd = [line for line in lines if line.startswith("CMD [")]  # (the HEALTHCHECK continuation also starts with CMD)
    assert len(cmd) == 1
    argv = json.loads(cmd[0][4:])
    assert argv[:4] == ["neuralpipe", "serve", "--roles", "ml"]
    assert argv[argv.index("--port") + 1] == "9300" and argv[argv.index("--host") + 1] == "0.0.0.0"
    assert any(line.startswith("EXPOSE 9300") for line in lines)
    assert any(line.startswith("HEALTHCHECK ") for line in lines)
    # the CPU build of torch, pinned like pyproject.toml, never the default CUDA one
    torch = [line for line in lines if "torch==" in line and line.startswith("RUN pip install")]
    assert torch and "download.pytorch.org/whl/cpu" in torch[0]
    pinned = re.search(r'"torch==([\d.]+)"', (ROOT / "pyproject.toml").read_text()).group(1)
    assert f"torch=={pinned}" in torch[0]
    # configs/ and pipelines/ are read from beside the packages: the install must be editable, with both copied
    assert "RUN pip install -e '.[torch,models]'" in lines
    assert "COPY configs/ configs/" in lines and "COPY pipelines/ pipelines/" in lines


def test_dockerignore_keeps_data_and_weights_out() -> None:
    ignored = (ROOT / ".dockerignore").read_text().split()
    for entry in (".venv", "data/", ".git", "*.zip", "*.pt", "*.onnx"):
        assert entry in ignored
