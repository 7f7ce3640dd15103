"""A stand-in ML client for body-level tests that must not depend on a model (mocked on purpose: these tests check
the rewritten query shape; the vectors' values are checked against the real ML node in test_mlnode_*.py)."""

from processors.mlclient import MLClient


class RecordingML(MLClient):
    def __init__(self):
        super().__init__("http://unused")
        self.calls = []

    async def resolve_model_id(self, id_or_name):
        return {"dense-name": "dense-id"}.get(id_or_name, id_or_name)

    async def text_embedding(self, model_id, texts, content_type=None):
        self.calls.append(("text_embedding", model_id, list(texts)))
        return [[float(len(t)), 1.0] for t in texts]

    async def sparse_encoding(self, model_id, texts):
        self.calls.append(("sparse_encoding", model_id, list(texts)))
        return [{w: 1.0 + i for i, w in enumerate(t.split())} for t in texts]
