"""``neuralpipe serve``'s security flags, as a user runs them: a subprocess with --tls-cert/--tls-key and
--users-file, reached with opensearch-py over TLS; and the users file refused when it holds what it must not."""

from __future__ import annotations

import base64
import getpass
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from opensearchpy import OpenSearch
from opensearchpy.exceptions import AuthenticationException
from opensearchpy.exceptions import ConnectionError as OSConnectionError

from neuralpipe.cli import main
from neuralpipe.security.__main__ import main as security_cli
from neuralpipe.security.users import LocalAuthenticator
from opensearch_contract.security import User
from tests.security.nodes import PASSWORDS, make_certs, write_users_file

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    root = tmp_path_factory.mktemp("serve")
    certs = make_certs(root)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "neuralpipe.cli", "serve", "--roles", "data", "--port", str(port), "--data-dir",
         str(root / "data"), "--tls-cert", str(certs["cert"]), "--tls-key", str(certs["key"]),
         "--users-file", str(write_users_file(root / "users.yml"))],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONPATH": str(REPO)})
    url = f"https://127.0.0.1:{port}"
    client = OpenSearch(hosts=[url], use_ssl=True, ca_certs=str(certs["ca"]), http_auth=("bob", PASSWORDS["bob"]))
    deadline = time.monotonic() + 120
    while True:
        try:
            client.info()
            break
        except OSConnectionError:
            if proc.poll() is not None or time.monotonic() > deadline:
                out = proc.stdout.read().decode() if proc.stdout else ""
                proc.kill()
                raise AssertionError(f"serve did not come up: {out}") from None
            time.sleep(0.2)
    try:
        yield url, certs["ca"]
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_serve_with_tls_and_a_users_file(served: tuple[str, Path]) -> None:
    url, ca = served
    bob = OpenSearch(hosts=[url], use_ssl=True, ca_certs=str(ca), http_auth=("bob", PASSWORDS["bob"]))
    bob.index(index="bobs", id="1", body={"text": "hello"}, refresh=True)
    assert bob.count(index="bobs")["count"] == 1
    with pytest.raises(AuthenticationException):
        OpenSearch(hosts=[url], use_ssl=True, ca_certs=str(ca), http_auth=("bob", "guess")).count(index="bobs")
    # credentials in the URL work too (what --opensearch https://user:pass@host:port gives the client)
    in_url = url.replace("https://", f"https://bob:{PASSWORDS['bob']}@")
    assert OpenSearch(hosts=[in_url], use_ssl=True, ca_certs=str(ca)).count(index="bobs")["count"] == 1


@pytest.mark.parametrize(("users", "message"), [
    ("users:\n  eve:\n    password: hunter2\n", "plaintext [password] is not accepted"),
    ("users:\n  eve:\n    hash: hunter2\n", "is not a pbkdf2_sha256$<iterations>$<salt>$<key> or sha256$<hex> hash"),
    ("users:\n  eve:\n    hash: sha256$" + "0" * 64 + "\n    group: x\n", "unknown keys ['group']"),
    ("admins: {}\n", "must be a mapping with [users] and/or [api_keys]"),
])
def test_a_users_file_that_cannot_be_used_stops_serve(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                      users: str, message: str) -> None:
    path = tmp_path / "users.yml"
    path.write_text(users)
    code = main(["serve", "--roles", "data", "--port", "0", "--data-dir", str(tmp_path / "d"), "--users-file",
                 str(path)])
    assert code == 2
    assert message in capsys.readouterr().err


def test_tls_flags_go_together(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cert = tmp_path / "node.pem"
    cert.write_text("x")
    assert main(["serve", "--roles", "data", "--data-dir", str(tmp_path), "--tls-cert", str(cert)]) == 2
    assert "--tls-cert and --tls-key go together" in capsys.readouterr().err


async def test_the_entries_the_helper_prints_make_a_users_file_that_lets_in(tmp_path: Path,
                                                                            capsys: pytest.CaptureFixture[str],
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(getpass, "getpass", lambda prompt="": "Correct-Horse-1")
    assert security_cli(["hash-password", "dora"]) == 0
    users = capsys.readouterr().out
    assert "Correct-Horse-1" not in users
    assert security_cli(["new-api-key", "ci"]) == 0
    printed = capsys.readouterr()
    key = printed.err.rsplit(" ", 1)[1].strip()
    path = tmp_path / "users.yml"
    path.write_text(users + printed.out)
    local = LocalAuthenticator.load(path)
    dora = base64.b64encode(b"dora:Correct-Horse-1").decode()
    assert (await local.authenticate(f"Basic {dora}")) == User("dora")
    assert (await local.authenticate(f"ApiKey {key}")) == User("ci")
    assert await local.authenticate("Basic " + base64.b64encode(b"dora:wrong").decode()) is None
