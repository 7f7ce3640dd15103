"""Helpers for the security tests: ``NodeServer`` (what ``neuralpipe serve`` runs) in a background thread, a throwaway
CA and node certificate made by the ``openssl`` binary, and a users file."""

from __future__ import annotations

import asyncio
import subprocess
import threading
from pathlib import Path
from typing import Any

from neuralpipe.node import NodeServer, NodeSpec
from neuralpipe.security.passwords import hash_api_key, hash_password

ITERATIONS = 1000  # test users' PBKDF2 cost: the format carries it, so checks stay fast here
PASSWORDS = {"alice": "alice-Secret1", "bob": "bob-Secret1", "carol": "carol-Secret1", "admin": "admin-Secret1"}
BACKEND_ROLES = {"alice": ["team-a"], "bob": ["team-b"], "carol": ["team-a", "team-c"], "admin": []}
API_KEY = "k3y-for-the-ingest-job-0123456789abcdef"


def write_users_file(path: Path) -> Path:
    lines = ["users:"]
    for name, password in PASSWORDS.items():
        lines += [f"  {name}:", f"    hash: \"{hash_password(password, iterations=ITERATIONS)}\"",
                  f"    backend_roles: {BACKEND_ROLES[name]}"]
        if name == "admin":
            lines.append("    roles: [all_access]")
    lines += ["api_keys:", "  ingest-job:", f"    hash: \"{hash_api_key(API_KEY)}\"", "    backend_roles: [team-b]"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def make_certs(root: Path) -> dict[str, Path]:
    """A CA and a node certificate for 127.0.0.1 and localhost, signed by it (EC P-256: fast to make)."""
    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=root, check=True, capture_output=True)

    key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run("req", "-x509", *key, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=neuralpipe test CA",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    run("req", *key, "-keyout", "node.key", "-out", "node.csr", "-subj", "/CN=localhost")
    (root / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n"
                                  "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
                                  "authorityKeyIdentifier=keyid\nsubjectKeyIdentifier=hash\n")
    run("x509", "-req", "-in", "node.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out",
        "node.pem", "-days", "2", "-extfile", "ext.cnf")
    return {"ca": root / "ca.pem", "cert": root / "node.pem", "key": root / "node.key"}


class ServedNode:
    """A ``NodeServer`` started on its own event loop in a thread (sync clients can call it); ``stop()`` ends it."""

    def __init__(self, spec: NodeSpec, *, host: str = "127.0.0.1") -> None:
        self.server = NodeServer(spec, host=host)
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="served-node", daemon=True)

    def start(self) -> ServedNode:
        self._thread.start()
        self.call(self.server.start(), timeout=120)
        return self

    @property
    def url(self) -> str:
        return self.server.url

    def call(self, coro: Any, timeout: float = 60.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        self.call(self.server.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(30)
        self.loop.close()
