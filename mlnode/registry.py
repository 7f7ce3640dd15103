"""The shared model registry: model groups, models, model chunks and tasks kept in OpenSearch indices.

Several ML nodes behind a load balancer point at one registry (``neuralpipe serve --registry URL``; any OpenSearch,
or the embedded data node). ``RegistryStore`` is a ``Store`` whose documents live in the registry, as ML Commons
keeps them in its system indices:

    <prefix>model-group   model groups
    <prefix>model         model documents, and the model's content as chunk documents ``<model_id>_<n>``
                          (``model_id``, ``chunk_number``, ``model_content`` base64, ``total_chunks``,
                          ``content_hash``: the SHA-256 of the whole zip)
    <prefix>task          tasks
    <prefix>node          neuralpipe's own: one document per ML node (heartbeat, what it has deployed)

The default prefix ``.plugins-ml-`` gives ML Commons' index names; on a cluster that runs ML Commons itself, give
another (``registry_index_prefix``) so the plugin's own documents and ours never mix.

Reads come from a cache in memory (``Store``'s), which ``pull`` refreshes from the registry (``mlnode.cluster``
calls it every second) and ``refresh_doc`` refreshes one document of. Writes go to the registry first:
``update`` is a read-modify-write guarded by ``if_seq_no``/``if_primary_term`` and retried on a conflict, a model
group's name is claimed with ``op_type=create`` so two nodes creating the same name end with one group, and a new
model's ``model_version`` is taken from its group's ``latest_version`` under the same guard.

A model's content is uploaded as chunks before the model document says REGISTERED; every node unpacks it into its
own data dir (``models/<model_id>``, the local store's layout) and checks the SHA-256 of the chunks it read.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import logging
import secrets
import shutil
import tempfile
import urllib.parse
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from opensearchpy import OpenSearch
from opensearchpy.exceptions import ConflictError, NotFoundError, RequestError, TransportError
from opensearchpy.exceptions import ConnectionError as OpenSearchConnectionError

from mlnode.errors import GroupNameTaken
from mlnode.store import KINDS, Store, now_ms
from mlnode.zipcheck import validate_and_extract

log = logging.getLogger(__name__)

DEFAULT_PREFIX = ".plugins-ml-"
SUFFIXES = {"model_groups": "model-group", "models": "model", "tasks": "task"}
NODES_SUFFIX = "node"
NAMES_SUFFIX = "model-group-name"  # one document per group name, claimed with op_type=create
CHUNK_BYTES = 10_000_000  # the chunk size opensearch-py-ml uploads with
PULL_SIZE = 10_000
CLAIM_TIMEOUT_MS = 60_000

# Fields the registry searches on; everything else stays in _source only (dynamic: false), so a chunk's base64 is
# never analyzed.
_MAPPINGS: dict[str, dict[str, Any]] = {
    "model_groups": {"name": {"type": "keyword"}},
    "models": {"model_id": {"type": "keyword"}, "chunk_number": {"type": "long"},
               "model_group_id": {"type": "keyword"}, "model_state": {"type": "keyword"}},
    "tasks": {"state": {"type": "keyword"}, "model_id": {"type": "keyword"}},
    NODES_SUFFIX: {"node_id": {"type": "keyword"}},
    NAMES_SUFFIX: {"group_id": {"type": "keyword"}},
}


class RegistryError(Exception):
    """The registry cannot be reached or answered an error the node cannot act on."""


@dataclass(frozen=True)
class Versioned:
    doc: dict[str, Any]
    version: int
    seq_no: int
    primary_term: int


@dataclass
class Snapshot:
    clock: int  # the store's write clock when the pull started
    docs: dict[str, dict[str, Versioned]] = field(default_factory=dict)


class RegistryStore(Store):
    """A ``Store`` whose documents and model contents live in an OpenSearch registry; see the module's doc."""

    def __init__(self, data_dir: Path, url: str, *, prefix: str = DEFAULT_PREFIX, timeout: float = 60.0,
                 verify_certs: bool = True, ca_certs: Path | None = None) -> None:
        super().__init__(data_dir)
        self.url = url
        self.prefix = prefix
        tls: dict[str, Any] = {"verify_certs": verify_certs, "ssl_show_warn": verify_certs}
        if ca_certs is not None:
            tls["ca_certs"] = str(ca_certs)
        self.client = OpenSearch(hosts=[url], timeout=timeout, pool_maxsize=16,  # one connection per thread
                                 **(tls if url.startswith("https") else {}))
        self.index_names = {kind: prefix + suffix for kind, suffix in SUFFIXES.items()}
        self.nodes_index = prefix + NODES_SUFFIX
        self.names_index = prefix + NAMES_SUFFIX
        self._terms: dict[tuple[str, str], int] = {}
        self._tombstones: dict[tuple[str, str], int] = {}  # deleted here: seq_no of the delete
        self._clock = 0  # counts cache writes; a pull notes it when it starts
        self._touched: dict[tuple[str, str], int] = {}  # the clock when each cached document was last written

    # ---- setup and cache ----------------------------------------------------------------------------------------

    def load(self) -> None:
        """Create the registry's indices if missing and fill the cache (blocking); an unreachable or failing
        registry raises ``RegistryError`` naming it (without its password)."""
        try:
            self._load()
        except (OpenSearchConnectionError, TransportError) as exc:
            raise RegistryError(f"cannot use the model registry at [{redact(self.url)}]: {exc.error}") from None

    def _load(self) -> None:
        for directory in (self.meta_dir, self.models_dir, self.chunks_dir):
            directory.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self.tmp_dir, ignore_errors=True)  # staging left by a crash
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        settings_path = self.meta_dir / "cluster_settings.json"
        if settings_path.exists():  # cluster settings stay per node (see the README)
            super().load()
            for kind in KINDS:  # documents of a local data dir are not the registry's
                self._docs[kind].clear()
        for key, props in _MAPPINGS.items():
            name = self.index_names.get(key) or self.prefix + key
            try:
                self.client.indices.create(index=name, body={"mappings": {"dynamic": False, "properties": props}})
            except RequestError as exc:
                if "already_exists" not in str(exc.error):
                    raise
        self.apply(self.pull())

    def pull(self) -> Snapshot:
        """Every group, model (not its chunks) and task in the registry (blocking)."""
        out = Snapshot(self._clock)
        for kind in KINDS:
            query: dict[str, Any] = {"match_all": {}}
            if kind == "models":
                query = {"bool": {"must_not": [{"exists": {"field": "chunk_number"}}]}}
            self.client.indices.refresh(index=self.index_names[kind])
            result = self.client.search(index=self.index_names[kind], body={
                "query": query, "size": PULL_SIZE, "version": True, "seq_no_primary_term": True})
            out.docs[kind] = {hit["_id"]: Versioned(hit["_source"], int(hit.get("_version", 1)), int(hit["_seq_no"]),
                                               int(hit["_primary_term"])) for hit in result["hits"]["hits"]}
        return out

    def apply(self, snapshot: Snapshot) -> None:
        """Take a pulled snapshot into the cache; what this node wrote or read after the pull began wins."""
        for kind, docs in snapshot.docs.items():
            for doc_id, got in docs.items():
                key = (kind, doc_id)
                if self._seq_nos.get(key, -1) > got.seq_no or self._tombstones.get(key, -1) > got.seq_no:
                    continue
                self._remember(kind, doc_id, got)
            for doc_id in [d for d in self._docs[kind] if d not in docs]:
                if self._touched.get((kind, doc_id), -1) < snapshot.clock:
                    del self._docs[kind][doc_id]

    def _remember(self, kind: str, doc_id: str, got: Versioned) -> None:
        key = (kind, doc_id)
        self._clock += 1
        self._touched[key] = self._clock
        self._docs[kind][doc_id] = dict(got.doc)
        self._versions[key] = got.version
        self._seq_nos[key] = got.seq_no
        self._terms[key] = got.primary_term
        self._seq_no = max(self._seq_no, got.seq_no)

    def _fetch(self, kind: str, doc_id: str) -> Versioned | None:
        try:
            got = self.client.get(index=self.index_names[kind], id=doc_id)
        except NotFoundError:
            return None
        return Versioned(got["_source"], int(got["_version"]), int(got["_seq_no"]), int(got["_primary_term"]))

    async def refresh_doc(self, kind: str, doc_id: str) -> dict[str, Any] | None:
        """Read one document from the registry into the cache (a real-time get: no refresh needed)."""
        key = (kind, doc_id)
        clock = self._clock
        got = await asyncio.to_thread(self._fetch, kind, doc_id)
        if got is None:
            if self._touched.get(key, -1) < clock:  # not written here while the get ran
                self._docs[kind].pop(doc_id, None)
            return self.get(kind, doc_id)
        if self._seq_nos.get(key, -1) <= got.seq_no and self._tombstones.get(key, -1) < got.seq_no:
            self._remember(kind, doc_id, got)
        return self.get(kind, doc_id)

    # ---- writes -------------------------------------------------------------------------------------------------

    def _index(self, kind: str, doc_id: str, doc: dict[str, Any], **params: Any) -> Versioned:
        result = self.client.index(index=self.index_names[kind], id=doc_id, body=doc,
                                   params={"refresh": "true", **params})
        return Versioned(doc, int(result["_version"]), int(result["_seq_no"]), int(result["_primary_term"]))

    async def put(self, kind: str, doc_id: str, doc: dict[str, Any]) -> int:
        doc = dict(doc)
        if kind == "model_groups" and doc_id not in self._docs[kind]:
            await asyncio.to_thread(self._claim_group_name, str(doc.get("name", "")), doc_id)
        if kind == "models" and doc_id not in self._docs[kind] and doc.get("model_group_id"):
            doc["model_version"] = str(await asyncio.to_thread(
                self._take_version, str(doc["model_group_id"]), int(doc.get("model_version", 1))))
        written = await asyncio.to_thread(self._index, kind, doc_id, doc)
        self._remember(kind, doc_id, written)
        return written.version

    def _claim_group_name(self, name: str, group_id: str) -> None:
        """Claim a group name for ``group_id``; a name another node took first raises ``GroupNameTaken``."""
        name_id = _name_id(name)
        claim = {"name": name, "group_id": group_id, "claimed_time": now_ms()}
        try:
            self.client.create(index=self.names_index, id=name_id, body=claim, params={"refresh": "true"})
            return
        except ConflictError:
            pass
        held = self.client.get(index=self.names_index, id=name_id)
        owner = held["_source"]["group_id"]
        # a claim whose group never got written (its node died in between) is released after a minute
        abandoned = (now_ms() - int(held["_source"].get("claimed_time", 0)) > CLAIM_TIMEOUT_MS
                     and self._fetch("model_groups", owner) is None)
        if abandoned:
            try:
                self.client.index(index=self.names_index, id=name_id, body=claim, params={
                    "refresh": "true", "if_seq_no": held["_seq_no"], "if_primary_term": held["_primary_term"]})
                return
            except ConflictError:
                owner = self.client.get(index=self.names_index, id=name_id)["_source"]["group_id"]
        raise GroupNameTaken(owner)

    def _release_name(self, name: str, group_id: str) -> None:
        try:
            held = self.client.get(index=self.names_index, id=_name_id(name))
            if held["_source"].get("group_id") == group_id:
                self.client.delete(index=self.names_index, id=_name_id(name), params={
                    "refresh": "true", "if_seq_no": held["_seq_no"], "if_primary_term": held["_primary_term"]})
        except (NotFoundError, ConflictError):
            pass  # released already, or claimed again by a new group

    def _take_version(self, group_id: str, wanted: int) -> int:
        """The next ``model_version`` in a group, taken by raising the group's ``latest_version`` under
        ``if_seq_no``: two models registered into one group at once get two versions."""
        while True:
            got = self._fetch("model_groups", group_id)
            if got is None:
                return wanted
            version = max(int(got.doc.get("latest_version", 0)) + 1, wanted)
            doc = {**got.doc, "latest_version": version, "last_updated_time": now_ms()}
            try:
                written = self._index("model_groups", group_id, doc, if_seq_no=got.seq_no,
                                      if_primary_term=got.primary_term)
            except ConflictError:
                continue
            self._remember("model_groups", group_id, written)
            return version

    def _update(self, kind: str, doc_id: str, fields: dict[str, Any]) -> Versioned:
        while True:
            got = self._fetch(kind, doc_id)
            if got is None:
                raise KeyError(f"{kind}/{doc_id} does not exist")
            doc = {**got.doc, **fields}
            try:
                return self._index(kind, doc_id, doc, if_seq_no=got.seq_no, if_primary_term=got.primary_term)
            except ConflictError:
                continue

    async def update(self, kind: str, doc_id: str, **fields: Any) -> dict[str, Any]:
        old_name = (self._docs[kind].get(doc_id) or {}).get("name")
        renamed = kind == "model_groups" and "name" in fields and fields["name"] != old_name
        if renamed:
            await asyncio.to_thread(self._claim_group_name, str(fields["name"]), doc_id)
        written = await asyncio.to_thread(self._update, kind, doc_id, fields)
        self._remember(kind, doc_id, written)
        if renamed and old_name is not None:
            await asyncio.to_thread(self._release_name, str(old_name), doc_id)
        return dict(written.doc)

    def _delete(self, kind: str, doc_id: str) -> dict[str, Any] | None:
        try:
            return self.client.delete(index=self.index_names[kind], id=doc_id, params={"refresh": "true"})
        except NotFoundError:
            return None

    async def delete(self, kind: str, doc_id: str) -> bool:
        result = await asyncio.to_thread(self._delete, kind, doc_id)
        # the tombstone goes in before anything else awaits, so a pull read before the delete cannot bring it back
        cached = self._docs[kind].pop(doc_id, None)
        key = (kind, doc_id)
        if result is not None:
            self._versions[key] = int(result["_version"])
            self._seq_nos[key] = self._tombstones[key] = int(result["_seq_no"])
            self._seq_no = max(self._seq_no, int(result["_seq_no"]))
        if kind == "model_groups" and result is not None and cached is not None:
            await asyncio.to_thread(self._release_name, str(cached.get("name", "")), doc_id)
        return result is not None or cached is not None

    def index_response(self, kind: str, doc_id: str, result: str) -> dict[str, Any]:
        body = super().index_response(kind, doc_id, result)  # _index: ML Commons' name, whatever the prefix
        body["_primary_term"] = self._terms.get((kind, doc_id), 1)
        return body

    # ---- nodes --------------------------------------------------------------------------------------------------

    def put_node(self, node_id: str, doc: dict[str, Any]) -> None:
        self.client.index(index=self.nodes_index, id=node_id, body=doc, params={"refresh": "true"})

    def nodes(self) -> dict[str, dict[str, Any]]:
        self.client.indices.refresh(index=self.nodes_index)
        result = self.client.search(index=self.nodes_index, body={"query": {"match_all": {}}, "size": 1000})
        return {hit["_id"]: hit["_source"] for hit in result["hits"]["hits"]}

    # ---- model content ------------------------------------------------------------------------------------------

    def commit_model_dir(self, staged: Path, model_id: str) -> Path:
        """Upload the model's zip as chunks, then move the unpacked copy into place (blocking).

        The zip is the one the node validated (``<staging>/model.zip``), or, for a pretrained model packaged in the
        catalog's cache, a zip of the validated files."""
        original = staged.parent / "model.zip"
        data = original.read_bytes() if original.is_file() else _zip_dir(staged)
        digest = self.upload_chunks(model_id, data)
        target = super().commit_model_dir(staged, model_id)
        self._hash_path(model_id).write_text(digest, encoding="ascii")
        return target

    def upload_chunks(self, model_id: str, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        total = max(1, -(-len(data) // CHUNK_BYTES))
        index = self.index_names["models"]
        for n in range(total):
            part = data[n * CHUNK_BYTES:(n + 1) * CHUNK_BYTES]
            self.client.index(index=index, id=f"{model_id}_{n}", body={
                "model_id": model_id, "chunk_number": n, "total_chunks": total, "content_hash": digest,
                "model_content": base64.b64encode(part).decode("ascii"), "created_time": now_ms(),
            })
        self.client.indices.refresh(index=index)
        return digest

    def remove_model_files(self, model_id: str) -> None:
        """Drop the model's chunks from the registry and its unpacked copy here (blocking)."""
        self.forget_local(model_id)
        self.client.delete_by_query(index=self.index_names["models"], params={"refresh": "true"}, body={
            "query": {"bool": {"filter": [{"term": {"model_id": model_id}}, {"exists": {"field": "chunk_number"}}]}}})

    def forget_local(self, model_id: str) -> None:
        super().remove_model_files(model_id)
        self._hash_path(model_id).unlink(missing_ok=True)

    def _hash_path(self, model_id: str) -> Path:
        """Where the SHA-256 of the chunks this node's copy of a model was unpacked from is kept."""
        folder = self.data_dir / "registry"
        folder.mkdir(parents=True, exist_ok=True)
        return folder / f"{model_id}.sha256"

    def local_copies(self) -> list[str]:
        return [p.name for p in self.models_dir.iterdir() if p.is_dir()] if self.models_dir.is_dir() else []

    def ensure_local(self, model_id: str, doc: dict[str, Any], max_bytes: int) -> Path:
        """This node's unpacked copy of the model, read from the registry's chunks if missing or stale (blocking).

        The chunks' SHA-256 must equal the hash they were stored with; the zip is checked like a new one."""
        index = self.index_names["models"]
        first = self.client.get(index=index, id=f"{model_id}_0", params={"_source_excludes": "model_content"})
        digest, total = str(first["_source"]["content_hash"]), int(first["_source"]["total_chunks"])
        target = self.model_dir(model_id)
        hash_path = self._hash_path(model_id)
        if target.is_dir() and hash_path.is_file() and hash_path.read_text(encoding="ascii") == digest:
            return target
        hasher = hashlib.sha256()
        staging = self.staging_dir()
        try:
            zip_path = staging / "model.zip"
            with open(zip_path, "wb") as out:
                for n in range(total):
                    part = base64.b64decode(self.client.get(index=index, id=f"{model_id}_{n}")["_source"]
                                            ["model_content"])
                    hasher.update(part)
                    out.write(part)
            if hasher.hexdigest() != digest:
                raise RegistryError(f"model content changed: the chunks of model [{model_id}] do not match their "
                                    f"hash {digest}")
            validate_and_extract(zip_path, staging / "model", model_format=doc["model_format"],
                                 function_name=doc.get("algorithm", "TEXT_EMBEDDING"), expected_hash=digest,
                                 max_bytes=max_bytes)
            Store.commit_model_dir(self, staging / "model", model_id)
            hash_path.write_text(digest, encoding="ascii")
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return target

    def close(self) -> None:
        self.client.close()


def redact(url: str) -> str:
    """The URL without the password it may carry (``https://user:***@host``)."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def _name_id(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


def _zip_dir(folder: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            zf.write(path, path.relative_to(folder).as_posix())
    return buffer.getvalue()


def node_id(data_dir: Path) -> str:
    """This ML node's id: random like OpenSearch's node ids, kept in the data dir so a restart keeps it."""
    path = Path(data_dir) / "node_id"
    if path.is_file():
        return path.read_text(encoding="ascii").strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    value = base64.urlsafe_b64encode(secrets.token_bytes(16)).decode("ascii").rstrip("=")
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, encoding="ascii") as fh:
        fh.write(value)
    Path(fh.name).replace(path)
    return value
