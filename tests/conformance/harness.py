"""The conformance suite's parts: the backends, the CLI as a user runs it, the corpus, and the facts two
backends must agree on.

A *backend* is an OpenSearch REST endpoint the CLI talks to with ``--opensearch URL``: the embedded data node,
osmem-server (an in-memory OpenSearch REST implementation nobody here wrote; it has no k-NN) or a real cluster.
A *scenario* runs once per backend and returns named *facts*; where two backends both serve a scenario, every
fact must agree (``Fact.disagreement``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from _pytest.outcomes import OutcomeException
from opensearchpy import OpenSearch

ROOT = Path(__file__).resolve().parents[2]
PIPELINES = Path("pipelines")  # relative to ROOT, as a user in a checkout types it
INGEST_PIPELINES = sorted(p.name for p in (ROOT / PIPELINES / "ingest").glob("*.yaml"))
SEARCH_PIPELINES = sorted(p.name for p in (ROOT / PIPELINES / "search").glob("*.yaml"))

# rank_feature and knn scores are float32 in OpenSearch: two backends agree to this relative precision
SCORE_REL = 1e-5

ENV_URL = "NEURALPIPE_TEST_OPENSEARCH_URL"
ENV_USER = "NEURALPIPE_TEST_OPENSEARCH_USER"
ENV_PASSWORD = "NEURALPIPE_TEST_OPENSEARCH_PASSWORD"
ENV_VERIFY = "NEURALPIPE_TEST_OPENSEARCH_VERIFY_CERTS"  # "false" / "0": self-signed demo certificates

# ---- corpus ----------------------------------------------------------------------------------------------------

PRINTING = " ".join([
    "The history of printing begins with woodblock printing in China, where whole pages were carved into wood.",
    "Movable type made of clay and later of metal allowed printers to compose a page from reusable characters.",
    "In Europe Johannes Gutenberg combined metal movable type, oil-based ink and a screw press around 1450.",
    "His printing press spread across the continent within decades and books became cheaper and more common.",
    "Printers set type by hand, letter by letter, in a composing stick, then locked the lines into a forme.",
    "The forme was inked with leather balls, a sheet of damp paper was laid on it, and the press was pulled.",
    "A skilled crew could print several hundred sheets in an hour, far more than any scribe could copy.",
] * 3)  # about 400 words: text_chunking's 256-token passages split it in two

DOCS: list[tuple[str, str]] = [
    ("cat", "Cats are small pets that purr when they are content and sleep most of the day."),
    ("dog", "Dogs are loyal pets that bark at strangers and love long walks in the park."),
    ("parrot", "Parrots are colourful birds that can imitate human speech and crack seeds with their beaks."),
    ("goldfish", "A goldfish swims in a glass bowl and needs clean water and a little food every day."),
    ("pasta", "Boil the pasta in salted water for ten minutes, then toss it with tomato sauce."),
    ("bread", "Knead the dough, let it rise for an hour, then bake the bread in a hot oven."),
    ("sushi", "Sushi is vinegared rice topped with raw fish and rolled in sheets of seaweed."),
    ("coffee", "Coffee is brewed from roasted beans of the coffea plant and drunk hot in the morning."),
    ("python", "Python is a programming language; its standard library parses JSON and CSV files."),
    ("rust", "Rust is a systems programming language that guarantees memory safety without a garbage collector."),
    ("sql", "SQL queries select, join and aggregate rows stored in the tables of a relational database."),
    ("git", "Git records every change to the files of a project so developers can branch, merge and revert."),
    ("volcano", "A volcano erupts when molten rock, ash and gases escape from the magma chamber below."),
    ("ocean", "Ocean tides rise and fall twice a day, pulled by the gravity of the moon."),
    ("glacier", "A glacier is a slow river of ice that carves deep valleys into the mountains it flows down."),
    ("desert", "Deserts receive almost no rain; cacti store water and camels cross the hot sand dunes."),
    ("violin", "The violin is a string instrument played with a bow, the highest voice of the orchestra."),
    ("drums", "A drummer keeps the beat of the band with sticks on the snare, the toms and the cymbals."),
    ("soccer", "In soccer two teams of eleven players try to kick the ball into the opposing goal."),
    ("chess", "Chess is a board game of strategy in which each player tries to checkmate the opposing king."),
    ("vaccine", "A vaccine trains the immune system to recognise a virus so the body can fight the infection."),
    ("sleep", "Adults need seven to nine hours of sleep a night; too little sleep harms memory and mood."),
    ("printing", PRINTING),
]
N_DOCS = len(DOCS)


def write_corpus(path: Path, docs: list[tuple[str, str]] = DOCS) -> Path:
    path.write_text("".join(json.dumps({"_id": i, "text": t}) + "\n" for i, t in docs), encoding="utf-8")
    return path


# ---- backends --------------------------------------------------------------------------------------------------

KNN = "knn"


@dataclass
class Backend:
    """An OpenSearch REST endpoint. ``unsupported`` maps a feature to the reason this backend cannot serve it."""

    name: str
    url: str
    user: str | None = None
    password: str | None = None
    verify_certs: bool = True
    unsupported: dict[str, str] = field(default_factory=dict)
    prefix: str = field(default_factory=lambda: f"conf-{uuid.uuid4().hex[:6]}-")

    def index(self, name: str) -> str:
        """A scenario's index name, unique per session (a real cluster may hold other people's indices)."""
        return self.prefix + name

    def require(self, feature: str) -> None:
        if feature in self.unsupported:
            pytest.skip(f"{self.name} cannot serve this scenario: {self.unsupported[feature]}")

    def client(self) -> OpenSearch:
        kwargs: dict[str, Any] = {"hosts": [self.url], "timeout": 120}
        if self.user:
            kwargs["http_auth"] = (self.user, self.password or "")
        if self.url.startswith("https"):
            kwargs.update(use_ssl=True, verify_certs=self.verify_certs, ssl_show_warn=False)
        return OpenSearch(**kwargs)

    def cli_args(self) -> list[str]:
        """Connection flags for ``neuralpipe ingest/search``; the password goes through OPENSEARCH_PASSWORD."""
        args = ["--opensearch", self.url]
        if self.user:
            args += ["--user", self.user]
        if not self.verify_certs:
            args.append("--no-verify-certs")
        return args

    def cli_env(self) -> dict[str, str]:
        return {"OPENSEARCH_PASSWORD": self.password} if self.password else {}


def real_cluster_from_env() -> Backend | None:
    url = os.environ.get(ENV_URL)
    if not url:
        return None
    verify = os.environ.get(ENV_VERIFY, "true").lower() not in ("0", "false", "no")
    return Backend("opensearch", url.rstrip("/"), user=os.environ.get(ENV_USER),
                   password=os.environ.get(ENV_PASSWORD), verify_certs=verify)


# ---- the CLI as a user runs it ---------------------------------------------------------------------------------


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 600) -> CliResult:
    """``neuralpipe ARGS`` in a subprocess started in the repository root (relative pipeline paths work); this
    checkout's packages come first on PYTHONPATH."""
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    full_env.update(env or {})
    cmd = [sys.executable, "-c", "import sys; from neuralpipe.cli import main; sys.exit(main())", *args]
    proc = subprocess.run(cmd, cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=timeout)
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


# ---- the session: ML node, corpus, outcomes --------------------------------------------------------------------


@dataclass
class ConformanceML:
    url: str
    model_ids: dict[str, str]  # dense, sparse, tokenizer


@dataclass
class Suite:
    ml: ConformanceML
    tmp: Path
    corpus: Path
    _outcomes: dict[tuple[str, str], tuple[bool, Any]] = field(default_factory=dict)

    def outcome(self, backend: Backend, key: str, run: Callable[[], dict[str, Fact]]) -> dict[str, Fact]:
        """The facts of scenario ``key`` on ``backend``, run once; a skip or failure is raised again to every
        caller (an agreement test cannot pass where a scenario did not)."""
        slot = (backend.name, key)
        if slot not in self._outcomes:
            try:
                self._outcomes[slot] = (True, run())
            except (Exception, OutcomeException) as exc:
                self._outcomes[slot] = (False, exc)
        ok, value = self._outcomes[slot]
        if not ok:
            raise value
        return value

    def state_dir(self, backend: Backend, key: str) -> Path:
        path = self.tmp / "state" / backend.name / key.replace(":", "-").replace("/", "-")
        path.mkdir(parents=True, exist_ok=True)
        return path


# ---- facts -----------------------------------------------------------------------------------------------------


class Fact:
    """Something a user checks; ``disagreement`` says how another backend's value differs, or None."""

    def disagreement(self, other: Fact) -> str | None:
        return None if self == other else f"{self!r} != {other!r}"


@dataclass(frozen=True)
class Same(Fact):
    """Must be equal: a document count, a mapping's field types, the fields of a stored document."""

    value: Any


@dataclass(frozen=True)
class ErrorFact(Fact):
    """OpenSearch's error type and HTTP status (reasons are worded per implementation)."""

    type: str
    status: int


@dataclass(frozen=True)
class Ranking(Fact):
    """rank_feature / knn hits: the same ids in the same order, scores equal to float32 precision."""

    ids: tuple[str, ...]
    scores: tuple[float, ...]

    def disagreement(self, other: Fact) -> str | None:
        assert isinstance(other, Ranking)
        if self.ids != other.ids:
            return f"hit order {self.ids} != {other.ids}"
        for doc, a, b in zip(self.ids, self.scores, other.scores):
            if a != pytest.approx(b, rel=SCORE_REL):
                return f"score of [{doc}]: {a} != {b}"
        return None


@dataclass(frozen=True)
class LexicalRanking(Fact):
    """Hits whose score has a BM25 part. BM25 is where implementations differ (osmem-server's scores are 15-20% off
    the data node's Lucene formula and its tail order differs), so only the top hit and the set of matching
    documents must agree (a scenario asks for all hits), not the scores or the order below the top."""

    ids: tuple[str, ...]

    def disagreement(self, other: Fact) -> str | None:
        assert isinstance(other, LexicalRanking)
        if self.ids[:1] != other.ids[:1] or set(self.ids) != set(other.ids):
            return f"hits {self.ids} != {other.ids}"
        return None


def ranking(response: dict[str, Any], kind: Callable[..., Fact] = Ranking) -> Fact:
    hits = response["hits"]["hits"]
    ids = tuple(str(h["_id"]) for h in hits)
    if kind is LexicalRanking:
        return LexicalRanking(ids)
    return Ranking(ids, tuple(float(h["_score"]) for h in hits))


def mapping_types(properties: dict[str, Any], parent: str = "") -> dict[str, str]:
    """``{"a.b": "type"}`` for every mapped field; knn_vector with its dimension, objects by their leaves."""
    out: dict[str, str] = {}
    for name, prop in properties.items():
        path = f"{parent}{name}"
        ftype = prop.get("type", "object")
        if ftype == "knn_vector":
            ftype = f"knn_vector({prop.get('dimension')})"
        if ftype != "object":
            out[path] = ftype
        if "properties" in prop:
            out.update(mapping_types(prop["properties"], path + "."))
    return out
