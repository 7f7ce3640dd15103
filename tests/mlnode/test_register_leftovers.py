"""Issue 11, ML node registration: crash leftovers (items 13), a full disk during upload and unpack (item 12), and
concurrent lazy imports in a fresh process (item 14)."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import aiohttp
import pytest

import mlnode.store
import mlnode.views.models
import mlnode.zipcheck
from mlnode import keys
from mlnode.settings import MLSettings
from mlnode.tasks import DISK_FULL_MESSAGE
from tests.fixtures.mlnode import NodeThread, api_client, api_wait_task, fake_backends
from tests.mlnode.test_register_gate import GOOD_ZIP, MODEL_CONFIG, _settings, hostile_site, register_body, sha

pytestmark = [pytest.mark.integration]
ML = "/_plugins/_ml"
REPO = Path(__file__).resolve().parents[2]


def _files(root: Path, pattern: str) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob(pattern))


def _meta(data: bytes, total_chunks: int, digest: str | None = None) -> dict:
    return {
        "name": "chunked",
        "version": "1.0.0",
        "function_name": "TEXT_EMBEDDING",
        "model_format": "TORCH_SCRIPT",
        "model_content_hash_value": digest or sha(data),
        "model_config": MODEL_CONFIG,
        "total_chunks": total_chunks,
    }


def _no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


# ---- item 13: crash leftovers ---------------------------------------------------------------------------------------


async def test_restart_after_a_crash_during_register_leaves_nothing_half_done(tmp_path, monkeypatch):
    data_dir = tmp_path / "data"
    crashed = tmp_path / "crashed"
    async with hostile_site({"model.zip": GOOD_ZIP}) as site:
        settings = _settings(tmp_path, download_min_bytes_per_second=0)
        async with api_client(settings, fake_backends(tmp_path)) as client:
            store = client.app[keys.STORE]
            # a metadata write that fails half way (the disk fills at fsync; mocked) leaves the old document alone
            # and no .tmp file behind
            with monkeypatch.context() as patch:
                patch.setattr(mlnode.store.os, "fsync", _no_space)
                with pytest.raises(OSError):
                    await store.put("model_groups", "half-written", {"name": "half-written"})
            assert _files(data_dir, "*.tmp") == [] and store.get("model_groups", "half-written") is None

            # a registration whose download trickles (50 bytes/s): RUNNING, its zip half downloaded in staging
            body = register_body(f"http://127.0.0.1:{site.port}/drip/model.zip", name="crashing")
            resp = await client.post(f"{ML}/models/_register", json=body)
            answer = await resp.json()
            for _ in range(200):
                if _files(data_dir / "tmp", "model.zip"):
                    break
                await asyncio.sleep(0.02)
            task = await (await client.get(f"{ML}/tasks/{answer['task_id']}")).json()
            assert task["state"] == "RUNNING"
            model = await (await client.get(f"{ML}/models/{answer['model_id']}")).json()
            group_id = model["model_group_id"]
            # kill -9 now: what is on disk at this instant is what a restart finds
            shutil.copytree(data_dir, crashed)
    # what a kill -9 in the middle of other writes leaves (named as the store and the catalog name them)
    (crashed / "meta" / "models" / f".{answer['model_id']}.json.0badf00d.tmp").write_text('{"name": "cut sh')
    (crashed / "chunks" / "some-model").mkdir(parents=True)
    (crashed / "chunks" / "some-model" / "0.tmp").write_bytes(b"half a chunk")
    staging = crashed / "cache" / "neuralpipe" / "splade-tiny" / "1.0.0" / "onnx" / ".staging-0123456789abcdef-x1"
    staging.mkdir(parents=True)
    (staging / "model.onnx").write_bytes(b"half a model")
    assert _files(crashed / "tmp", "model.zip")

    restarted = MLSettings.load(
        data_dir=crashed, allow_registering_model_via_url=True, file_url_folders=[str(tmp_path / "allowed")]
    )
    node = NodeThread(restarted, backends=fake_backends(tmp_path)).start()
    try:
        async with aiohttp.ClientSession(node.url) as http:
            task = await (await http.get(f"{ML}/tasks/{answer['task_id']}")).json()
            assert task["state"] == "FAILED" and task["error"] == "The ML node restarted before the task finished"
            assert (await http.get(f"{ML}/models/{answer['model_id']}")).status == 404
            assert _files(crashed, "*.tmp") == []
            assert list((crashed / "tmp").iterdir()) == []
            assert _files(crashed / "cache", ".staging-*") == []
            # the group its register created is kept, as ML Commons keeps it; registering the name again joins it
            assert (await http.get(f"{ML}/model_groups/{group_id}")).status == 200
            allowed = tmp_path / "allowed"
            allowed.mkdir()
            (allowed / "model.zip").write_bytes(GOOD_ZIP)
            body = register_body((allowed / "model.zip").as_uri(), name="crashing")
            again = await (await http.post(f"{ML}/models/_register", json=body)).json()
            for _ in range(500):
                done = await (await http.get(f"{ML}/tasks/{again['task_id']}")).json()
                if done["state"] not in ("CREATED", "RUNNING"):
                    break
                await asyncio.sleep(0.02)
            assert done["state"] == "COMPLETED", done
            model = await (await http.get(f"{ML}/models/{again['model_id']}")).json()
            assert model["model_group_id"] == group_id
            groups = await (
                await http.post(f"{ML}/model_groups/_search", json={"query": {"match_all": {}}})
            ).json()
            assert [hit["_source"]["name"] for hit in groups["hits"]["hits"]] == ["crashing"]
    finally:
        node.stop()


async def test_a_wrong_hash_ends_a_chunked_upload_and_deletes_its_chunks(tmp_path):
    data = GOOD_ZIP
    parts = [data[:100], data[100:]]
    async with api_client(_settings(tmp_path), fake_backends(tmp_path)) as client:
        created = await (await client.post(f"{ML}/models/_register_meta", json=_meta(data, 2, "0" * 64))).json()
        model_id = created["model_id"]
        assert (await client.post(f"{ML}/models/{model_id}/upload_chunk/0", data=parts[0])).status == 200
        resp = await client.post(f"{ML}/models/{model_id}/upload_chunk/1", data=parts[1])
        body = await resp.json()
        assert resp.status == 400 and body["error"] == {
            "root_cause": [{"type": "illegal_argument_exception", "reason": "model content changed"}],
            "type": "illegal_argument_exception",
            "reason": "model content changed",
        }
        assert (await client.get(f"{ML}/models/{model_id}")).status == 404
        assert list((tmp_path / "data" / "chunks").iterdir()) == []
        assert list((tmp_path / "data" / "tmp").iterdir()) == []
        assert list((tmp_path / "data" / "models").iterdir()) == []


# ---- item 12: a full disk (mocked: ENOSPC from the write seams) ---------------------------------------------------


async def _disk_full(resp) -> None:
    body = await resp.json()
    assert resp.status == 429, body
    assert body["error"]["type"] == "cluster_block_exception"
    assert body["error"]["reason"] == DISK_FULL_MESSAGE


async def test_a_full_disk_during_chunk_upload_and_unpack_leaves_no_half_written_model(tmp_path, monkeypatch):
    data = GOOD_ZIP
    parts = [data[:100], data[100:]]
    root = tmp_path / "data"
    async with api_client(_settings(tmp_path), fake_backends(tmp_path)) as client:
        model_id = (await (await client.post(f"{ML}/models/_register_meta", json=_meta(data, 2))).json())["model_id"]
        # the disk is full while a chunk is written (mocked: the write raises ENOSPC)
        with monkeypatch.context() as patch:
            patch.setattr(mlnode.views.models, "_write_bytes", _no_space)
            await _disk_full(await client.post(f"{ML}/models/{model_id}/upload_chunk/0", data=parts[0]))
        assert _files(root / "chunks", "*") in ([], [model_id])
        assert (await client.post(f"{ML}/models/{model_id}/upload_chunk/0", data=parts[0])).status == 200

        # the disk fills while the last chunk's zip is unpacked (mocked: the second write of unpacked bytes fails)
        writes = []

        def fill_up(out, block):
            writes.append(len(block))
            if len(writes) > 1:
                _no_space()
            out.write(block)

        with monkeypatch.context() as patch:
            patch.setattr(mlnode.zipcheck, "_write_block", fill_up)
            await _disk_full(await client.post(f"{ML}/models/{model_id}/upload_chunk/1", data=parts[1]))
        model = await (await client.get(f"{ML}/models/{model_id}")).json()
        assert model["model_state"] == "REGISTERING"
        assert list((root / "models").iterdir()) == [] and list((root / "tmp").iterdir()) == []
        assert _files(root / "chunks", "*.tmp") == []
        # space freed: the last chunk again completes the model
        assert (await client.post(f"{ML}/models/{model_id}/upload_chunk/1", data=parts[1])).status == 200
        model = await (await client.get(f"{ML}/models/{model_id}")).json()
        assert model["model_state"] == "REGISTERED"
        assert (root / "models" / model_id / "model.pt").read_bytes() == b"weights"


async def test_a_full_disk_during_url_registration_fails_the_task_cleanly(tmp_path, monkeypatch):
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    (allowed / "model.zip").write_bytes(GOOD_ZIP)
    root = tmp_path / "data"
    monkeypatch.setattr(mlnode.zipcheck, "_write_block", _no_space)  # mocked: no space left while unpacking
    async with api_client(_settings(tmp_path), fake_backends(tmp_path)) as client:
        resp = await client.post(f"{ML}/models/_register", json=register_body((allowed / "model.zip").as_uri()))
        answer = await resp.json()
        task = await api_wait_task(client, answer["task_id"])
        assert task["state"] == "FAILED" and task["error"] == DISK_FULL_MESSAGE
        assert (await client.get(f"{ML}/models/{answer['model_id']}")).status == 404
        assert list((root / "models").iterdir()) == [] and list((root / "tmp").iterdir()) == []


# ---- item 14: concurrent lazy imports in a fresh process ------------------------------------------------------------

_TWO_AT_ONCE = textwrap.dedent(
    """
    import asyncio, json, sys
    from aiohttp.test_utils import TestClient, TestServer
    from mlnode.app import create_app
    from mlnode.settings import MLSettings

    async def main(data_dir):
        settings = MLSettings.load(data_dir=data_dir, native_memory_threshold=100)
        async with TestClient(TestServer(create_app(settings))) as client:
            bodies = [
                {"name": "huggingface/sentence-transformers/all-MiniLM-L6-v2", "version": "1.0.1",
                 "model_format": "TORCH_SCRIPT"},
                {"name": "neuralpipe/splade-tiny", "version": "1.0.0", "model_format": "TORCH_SCRIPT"},
            ]
            answers = await asyncio.gather(*(client.post("/_plugins/_ml/models/_register", json=b) for b in bodies))
            task_ids = [(await a.json())["task_id"] for a in answers]
            states = {}
            while len(states) < len(task_ids):
                for task_id in task_ids:
                    task = await (await client.get(f"/_plugins/_ml/tasks/{task_id}")).json()
                    if task["state"] not in ("CREATED", "RUNNING"):
                        states[task_id] = [task["state"], task.get("error")]
                await asyncio.sleep(0.1)
            print(json.dumps(list(states.values())))

    asyncio.run(main(sys.argv[1]))
    """
)


@pytest.mark.slow
def test_two_catalog_registrations_at_once_in_a_fresh_process(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-c", _TWO_AT_ONCE, str(tmp_path / "data")],
        capture_output=True,
        text=True,
        env=env,
        timeout=540,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    states = json.loads(result.stdout.strip().splitlines()[-1])
    assert states == [["COMPLETED", None], ["COMPLETED", None]], states
