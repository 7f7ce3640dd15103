"""Issue 11, ML node registration: the URL gate (normalised URLs, every redirect hop, file:// confined), download
timeouts and a minimum rate, zip limits (entries, compression ratio, lying headers), total_chunks bounded.

The malicious URLs are served by a real aiohttp server on loopback in the test's own loop; zip bombs are built in the
test (small on disk) and the limits are small test settings, so every test takes seconds."""

from __future__ import annotations

import asyncio
import hashlib
import io
import struct
import zipfile
import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from mlnode import urlgate
from mlnode.settings import MLSettings
from mlnode.zipcheck import ZipCheckError, validate_and_extract
from tests.fixtures.mlnode import api_client, api_wait_task, fake_backends

pytestmark = [pytest.mark.integration]
ML = "/_plugins/_ml"
UNTRUSTED = "URL can't match trusted url regex"
MODEL_CONFIG = {"model_type": "bert", "embedding_dimension": 2, "framework_type": "sentence_transformers"}


def _settings(tmp_path: Path, **overrides) -> MLSettings:
    base = {
        "allow_registering_model_via_url": True,
        "allow_registering_model_via_local_file": True,
        "native_memory_threshold": 100,
        "file_url_folders": [str(tmp_path / "allowed")],
    }
    base.update(overrides)
    return MLSettings.load(data_dir=tmp_path / "data", **base)


def zip_bytes(files: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    return buffer.getvalue()


GOOD_ZIP = zip_bytes({"model.pt": b"weights", "tokenizer.json": b"{}"})


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def register_body(url: str, data: bytes = GOOD_ZIP, name: str = "gate-model") -> dict:
    return {
        "name": name,
        "version": "1.0.0",
        "function_name": "TEXT_EMBEDDING",
        "model_format": "TORCH_SCRIPT",
        "model_content_hash_value": sha(data),
        "model_config": MODEL_CONFIG,
        "url": url,
    }


@asynccontextmanager
async def hostile_site(payloads: dict[str, bytes]) -> AsyncIterator[TestServer]:
    """/<name> serves payloads[name]; /redirect?to=URL answers 302; /loop redirects to itself; /drip/<name> sends
    one byte every 20 ms; /endless streams 16 KB every 5 ms forever."""

    async def payload(request: web.Request) -> web.Response:
        return web.Response(body=payloads[request.match_info["name"]], content_type="application/zip")

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound(request.query["to"])

    async def loop(request: web.Request) -> web.Response:
        raise web.HTTPFound("/loop")

    async def drip(request: web.Request) -> web.StreamResponse:
        data = payloads[request.match_info["name"]]
        response = web.StreamResponse(headers={"Content-Length": str(len(data))})
        await response.prepare(request)
        for byte in data:
            await response.write(bytes([byte]))
            await asyncio.sleep(0.02)
        return response

    async def endless(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        while True:
            await response.write(b"\0" * 16384)
            await asyncio.sleep(0.005)

    app = web.Application()
    app.router.add_get("/redirect", redirect)
    app.router.add_get("/loop", loop)
    app.router.add_get("/drip/{name}", drip)
    app.router.add_get("/endless", endless)
    app.router.add_get("/{name}", payload)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield server
    finally:
        await server.close()


async def _register(client, body: dict) -> tuple[int, dict]:
    resp = await client.post(f"{ML}/models/_register", json=body)
    return resp.status, await resp.json()


async def _task(client, body: dict, timeout: float = 30.0) -> dict:
    status, answer = await _register(client, body)
    assert status == 200, answer
    return await api_wait_task(client, answer["task_id"], timeout=timeout)


# ---- item 7: the URL gate -----------------------------------------------------------------------------------------


@pytest.mark.unit
@pytest.mark.parametrize(
    ("url", "normalized"),
    [
        ("HTTPS://Example.COM:443/a/b", "https://example.com/a/b"),
        ("http://example.com:80", "http://example.com/"),
        ("http://example.com:8080/x", "http://example.com:8080/x"),
        ("http://example.com./allowed/../x", "http://example.com/x"),
        ("http://example.com/allowed/%2e%2e/x", "http://example.com/x"),
        ("http://example.com/allowed/%2E%2e/%2e/x", "http://example.com/x"),
        ("http://example.com/%7euser/%41%2f%3a", "http://example.com/~user/A%2F%3A"),
        ("http://example.com/../../etc", "http://example.com/etc"),
        ("http://example.com/a/b/..", "http://example.com/a/"),
        ("http://example.com/a?q=%41#frag", "http://example.com/a?q=A"),
        ("file:///srv/models/../../etc/passwd", "file:///etc/passwd"),
        ("http://[::1]:9200/m.zip", "http://[::1]:9200/m.zip"),
    ],
)
def test_urls_are_normalised_before_the_regex(url, normalized):
    assert urlgate.normalize(url) == normalized


@pytest.mark.unit
@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("https://allowed.example.com@evil.example/m.zip", "userinfo"),
        ("https://user:pw@allowed.example.com/m.zip", "userinfo"),
        ("https://allowed.example.com\\@evil.example/m.zip", "backslash"),
        ("https://allowed.example.com/m .zip", "whitespace"),
        ("https://allowed.example.com:99999/m.zip", "not a valid URL"),
        ("file://evil.example/etc/passwd", "names a host"),
    ],
)
def test_ambiguous_urls_are_refused(url, why):
    with pytest.raises(urlgate.UntrustedUrl, match=why) as info:
        urlgate.check(url, r"^https://allowed\.example\.com")
    assert info.value.reason.startswith(UNTRUSTED) and info.value.status == 400


@pytest.mark.parametrize(
    ("path", "regex"),
    [
        ("/allowed/../model.zip", "^http://127\\.0\\.0\\.1:{port}/allowed/"),
        ("/allowed/%2e%2e/model.zip", "^http://127\\.0\\.0\\.1:{port}/allowed/"),
    ],
)
async def test_dot_segments_cannot_leave_an_allowed_path(tmp_path, path, regex):
    async with hostile_site({"model.zip": GOOD_ZIP}) as site:
        settings = _settings(tmp_path, trusted_url_regex=regex.format(port=site.port))
        async with api_client(settings, fake_backends(tmp_path)) as client:
            status, answer = await _register(client, register_body(f"http://127.0.0.1:{site.port}{path}"))
            assert status == 400, answer
            assert answer["error"]["type"] == "illegal_argument_exception"
            assert answer["error"]["reason"] == f"{UNTRUSTED}: [http://127.0.0.1:{site.port}/model.zip]"
            assert (await (await client.get(f"{ML}/models/_search")).json())["hits"]["total"]["value"] == 0


async def test_userinfo_cannot_smuggle_another_host_past_the_regex(tmp_path):
    async with hostile_site({"model.zip": GOOD_ZIP}) as site:
        # the regex has no trailing slash: "127.0.0.1@localhost" starts like the trusted host
        settings = _settings(tmp_path, trusted_url_regex=r"^http://127\.0\.0\.1")
        async with api_client(settings, fake_backends(tmp_path)) as client:
            status, answer = await _register(client, register_body(f"http://127.0.0.1@localhost:{site.port}/model.zip"))
            assert status == 400, answer
            assert answer["error"]["reason"].startswith(UNTRUSTED) and "userinfo" in answer["error"]["reason"]


async def test_every_redirect_hop_is_checked(tmp_path):
    async with hostile_site({"model.zip": GOOD_ZIP}) as site:
        port = site.port
        settings = _settings(tmp_path, trusted_url_regex=rf"^http://127\.0\.0\.1:{port}/")
        async with api_client(settings, fake_backends(tmp_path)) as client:
            # to a host the regex does not trust (the same server under another name)
            evil = f"http://localhost:{port}/model.zip"
            task = await _task(client, register_body(f"http://127.0.0.1:{port}/redirect?to={evil}"))
            assert task["state"] == "FAILED"
            assert task["error"] == f"{UNTRUSTED}: [http://127.0.0.1:{port}/redirect?to={evil}] redirects to [{evil}]"
            assert (await client.get(f"{ML}/models/{task['model_id']}")).status == 404
            # a chain: trusted -> trusted -> untrusted fails at the last hop
            hop = f"http://127.0.0.1:{port}/redirect?to={evil}"
            task = await _task(client, register_body(f"http://127.0.0.1:{port}/redirect?to={hop}"))
            assert task["state"] == "FAILED" and task["error"].endswith(f"redirects to [{evil}]")
            # a redirect cannot send the node to a local file either
            target = f"file://{tmp_path}/allowed/model.zip"
            task = await _task(client, register_body(f"http://127.0.0.1:{port}/redirect?to={target}"))
            assert task["state"] == "FAILED" and "redirects may go to http(s) only" in task["error"]
            # redirects within the trusted space are followed
            task = await _task(client, register_body(f"http://127.0.0.1:{port}/redirect?to=/model.zip"))
            assert task["state"] == "COMPLETED", task


async def test_redirect_loops_stop_at_the_limit(tmp_path):
    async with hostile_site({}) as site:
        settings = _settings(tmp_path, download_max_redirects=3)
        async with api_client(settings, fake_backends(tmp_path)) as client:
            loop_url = f"http://127.0.0.1:{site.port}/loop"
            task = await _task(client, register_body(loop_url))
            assert task["state"] == "FAILED"
            assert "more than 3 redirects (setting download_max_redirects)" in task["error"], task


# ---- item 10: file:// confined to folders -------------------------------------------------------------------------


async def test_file_urls_outside_the_allowed_folders_look_missing(tmp_path):
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    (allowed / "model.zip").write_bytes(GOOD_ZIP)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "model.zip").write_bytes(GOOD_ZIP)  # a real zip whose hash the caller knows
    (allowed / "link.zip").symlink_to(outside / "model.zip")
    async with api_client(_settings(tmp_path), fake_backends(tmp_path)) as client:
        errors = {}
        for label, path in {
            "outside, hash right": outside / "model.zip",
            "outside, hash wrong": Path("/etc/hostname"),
            "symlink out": allowed / "link.zip",
            "dot segments out": allowed / ".." / "outside" / "model.zip",
            "missing": allowed / "nothing.zip",
            "a folder": allowed,
        }.items():
            url = "file://" + str(path)
            task = await _task(client, register_body(url, name=label.replace(" ", "-").replace(",", "")))
            assert task["state"] == "FAILED", (label, task)
            errors[label] = task["error"].replace(urlgate.normalize(url), "<url>")
        assert set(errors.values()) == {"Model file not found at url [<url>]"}, errors
        task = await _task(client, register_body((allowed / "model.zip").as_uri(), name="inside"))
        assert task["state"] == "COMPLETED", task


@pytest.mark.unit
def test_file_urls_default_to_the_data_dir(tmp_path):
    settings = MLSettings.load(data_dir=tmp_path / "data", allow_registering_model_via_url=True)
    assert settings.resolved_file_url_folders == ((tmp_path / "data").resolve(),)
    # neuralpipe's layout: the ML node in <data-dir>/ml may not read the data node's files in <data-dir>/data
    settings = MLSettings.load(data_dir=tmp_path / "np" / "ml")
    assert settings.resolved_file_url_folders == ((tmp_path / "np" / "ml").resolve(),)
    settings = MLSettings.load(data_dir=tmp_path / "data", file_url_folders=[str(tmp_path / "a"), "~/models"])
    assert settings.resolved_file_url_folders == ((tmp_path / "a").resolve(), (Path.home() / "models").resolve())


# ---- item 9: download timeouts and a minimum rate -----------------------------------------------------------------


async def test_a_trickling_url_fails_at_the_minimum_rate_and_frees_its_slot(tmp_path):
    async with hostile_site({"model.zip": GOOD_ZIP}) as site:
        settings = _settings(
            tmp_path,
            download_min_bytes_per_second=1000,
            download_min_rate_window_seconds=0.3,
            max_register_model_tasks_per_node=2,
        )
        async with api_client(settings, fake_backends(tmp_path)) as client:
            url = f"http://127.0.0.1:{site.port}/drip/model.zip"  # 50 bytes/s
            answers = [await _register(client, register_body(url, name=f"slow-{i}")) for i in range(2)]
            assert [status for status, _ in answers] == [200, 200]
            busy, answer = await _register(client, register_body(url, name="third"))
            assert busy == 429, answer  # both slots taken while they trickle...
            for _, answer in answers:
                task = await api_wait_task(client, answer["task_id"], timeout=30)
                assert task["state"] == "FAILED", task
                assert task["error"].startswith(f"Failed to download model from [{url}]: "), task
                assert "less than the minimum of 1000 bytes per second (setting download_min_bytes_per_second)" in (
                    task["error"]
                )
            status, answer = await _register(client, register_body(f"http://127.0.0.1:{site.port}/model.zip"))
            assert status == 200, answer  # ...and free once they failed
            assert (await api_wait_task(client, answer["task_id"]))["state"] == "COMPLETED"


async def test_a_download_that_never_ends_fails_at_the_total_timeout(tmp_path):
    async with hostile_site({}) as site:
        settings = _settings(tmp_path, download_total_timeout_seconds=0.5, download_min_bytes_per_second=0)
        async with api_client(settings, fake_backends(tmp_path)) as client:
            url = f"http://127.0.0.1:{site.port}/endless"
            task = await _task(client, register_body(url))
            assert task["state"] == "FAILED"
            assert task["error"] == (
                f"Failed to download model from [{url}]: not finished within 0.5 seconds "
                "(setting download_total_timeout_seconds)"
            )
            assert list((tmp_path / "data" / "tmp").iterdir()) == []


# ---- item 8: zip entries, compression ratio, lying headers ----------------------------------------------------------


async def test_zip_with_too_many_entries_is_refused(tmp_path):
    files = {"model.pt": b"w", "tokenizer.json": b"{}", **{f"extra/{i}.txt": b"x" for i in range(60)}}
    data = zip_bytes(files)
    async with hostile_site({"many.zip": data}) as site:
        async with api_client(_settings(tmp_path, max_zip_entries=50), fake_backends(tmp_path)) as client:
            task = await _task(client, register_body(f"http://127.0.0.1:{site.port}/many.zip", data))
            assert task["state"] == "FAILED"
            assert task["error"] == "Model zip has 62 entries, more than the limit of 50 (setting max_zip_entries)"
            assert (await client.get(f"{ML}/models/{task['model_id']}")).status == 404


async def test_zip_bomb_under_the_size_cap_is_refused_for_its_ratio(tmp_path):
    bomb = zip_bytes({"model.pt": bytes(64 << 20), "tokenizer.json": b"{}"})  # 64 MB of zeros in ~65 KB
    assert len(bomb) < 100_000
    async with hostile_site({"bomb.zip": bomb}) as site:
        async with api_client(_settings(tmp_path), fake_backends(tmp_path)) as client:
            task = await _task(client, register_body(f"http://127.0.0.1:{site.port}/bomb.zip", bomb))
            assert task["state"] == "FAILED"
            assert task["error"].startswith("Model zip entry [model.pt] unpacks to 67108864 bytes from ")
            assert task["error"].endswith(
                "a compression ratio above the limit of 100 (setting max_zip_compression_ratio)"
            )
            leftovers = [p for p in (tmp_path / "data").rglob("*") if p.is_file() and p.suffix != ".json"]
            assert leftovers == []


def _lying_zip(content: bytes, declared: int) -> bytes:
    """A zip whose headers (local and central) declare ``declared`` bytes for model.pt, with the CRC of that many
    leading bytes, while its deflate stream unpacks to all of ``content``."""
    data = bytearray(zip_bytes({"model.pt": content, "tokenizer.json": b"{}"}))
    crc = zlib.crc32(content[:declared])
    local = data.index(b"PK\x03\x04")
    struct.pack_into("<I", data, local + 14, crc)
    struct.pack_into("<I", data, local + 22, declared)
    central = data.index(b"PK\x01\x02")
    struct.pack_into("<I", data, central + 16, crc)
    struct.pack_into("<I", data, central + 24, declared)
    return bytes(data)


@pytest.mark.unit
def test_a_lying_size_header_does_not_pass(tmp_path):
    content = bytes(range(256)) * 4096  # 1 MB
    zip_path = tmp_path / "liar.zip"
    zip_path.write_bytes(_lying_zip(content, 1000))
    with zipfile.ZipFile(zip_path) as archive:
        assert archive.getinfo("model.pt").file_size == 1000  # what the central directory says
    with pytest.raises(ZipCheckError, match=r"entry \[model.pt\] unpacks to more than the 1000 bytes its header"):
        validate_and_extract(
            zip_path,
            tmp_path / "out",
            model_format="TORCH_SCRIPT",
            function_name="TEXT_EMBEDDING",
            expected_hash=sha(zip_path.read_bytes()),
            max_bytes=1 << 30,
        )
    assert not (tmp_path / "out").exists() and [p.name for p in tmp_path.iterdir()] == ["liar.zip"]


@pytest.mark.unit
def test_a_truncated_member_does_not_pass(tmp_path):
    data = bytearray(zip_bytes({"model.pt": bytes(range(256)) * 64, "tokenizer.json": b"{}"}))
    central = data.index(b"PK\x01\x02")
    size = struct.unpack_from("<I", data, central + 24)[0]
    struct.pack_into("<I", data, central + 24, size + 10)  # claims more than the stream holds
    zip_path = tmp_path / "short.zip"
    zip_path.write_bytes(bytes(data))
    with pytest.raises(ZipCheckError, match=r"entry \[model.pt\] is corrupt"):
        validate_and_extract(
            zip_path,
            tmp_path / "out",
            model_format="TORCH_SCRIPT",
            function_name="TEXT_EMBEDDING",
            expected_hash=sha(bytes(data)),
            max_bytes=1 << 30,
        )


# ---- item 6: total_chunks bounded -----------------------------------------------------------------------------------


async def test_total_chunks_is_bounded_by_the_model_size_limit(tmp_path):
    meta = {
        "name": "chunked",
        "version": "1.0.0",
        "function_name": "TEXT_EMBEDDING",
        "model_format": "TORCH_SCRIPT",
        "model_content_hash_value": sha(GOOD_ZIP),
        "model_config": MODEL_CONFIG,
    }
    async with api_client(_settings(tmp_path, max_zip_bytes=25_000_000), fake_backends(tmp_path)) as client:
        resp = await client.post(f"{ML}/models/_register_meta", json={**meta, "total_chunks": 10**7})
        body = await resp.json()
        assert resp.status == 400, body
        assert body["error"]["type"] == "illegal_argument_exception"
        assert body["error"]["reason"] == (
            "Model file size exceeds the limit of 25000000 bytes: [total_chunks] is 10000000, but chunks hold at most "
            "10000000 bytes, so a model has at most 3 chunks"
        )
        resp = await client.post(f"{ML}/models/_register_meta", json={**meta, "total_chunks": 4})
        assert resp.status == 400
        resp = await client.post(
            f"{ML}/models/_register_meta",
            json={**meta, "total_chunks": 1, "model_content_size_in_bytes": 25_000_001},
        )
        assert (await resp.json())["error"]["reason"] == "Model file size exceeds the limit of 25000000 bytes: 25000001"
        assert (await (await client.get(f"{ML}/models/_search")).json())["hits"]["total"]["value"] == 0
        resp = await client.post(f"{ML}/models/_register_meta", json={**meta, "total_chunks": 3})
        assert resp.status == 200, await resp.text()


async def test_default_limit_allows_430_chunks_of_ml_commons_size(tmp_path):
    settings = MLSettings.load(data_dir=tmp_path / "data")
    assert settings.max_zip_bytes == 4 * 1024**3
    async with api_client(_settings(tmp_path), fake_backends(tmp_path)) as client:
        meta = {
            "name": "big",
            "version": "1.0.0",
            "function_name": "SPARSE_TOKENIZE",
            "model_format": "TORCH_SCRIPT",
            "model_content_hash_value": sha(GOOD_ZIP),
        }
        ok = await client.post(f"{ML}/models/_register_meta", json={**meta, "total_chunks": 430})
        assert ok.status == 200, await ok.text()
        too_many = await client.post(f"{ML}/models/_register_meta", json={**meta, "total_chunks": 431})
        assert too_many.status == 400
        assert "a model has at most 430 chunks" in (await too_many.json())["error"]["reason"]
        chunk = await client.post(f"{ML}/models/{(await ok.json())['model_id']}/upload_chunk/0", data=b"x" * 10_000_001)
        assert chunk.status == 400 and (await chunk.json())["error"]["reason"] == "Chunk size exceeds 10MB"


@pytest.mark.unit
@pytest.mark.parametrize("entries", [1500, 70_000])  # 70,000 > 65,535: the count is in the zip64 record
def test_entry_count_is_read_before_the_directory_is_parsed(tmp_path, monkeypatch, entries):
    zip_path = tmp_path / "many.zip"
    with zipfile.ZipFile(zip_path, "w") as archive:
        archive.writestr("model.pt", b"w")
        archive.writestr("tokenizer.json", b"{}")
        for i in range(entries - 2):
            archive.writestr(f"e/{i}", b"")

    def no_parse(*args, **kwargs):
        raise AssertionError("the central directory was parsed")

    monkeypatch.setattr("mlnode.zipcheck.zipfile.ZipFile", no_parse)
    with pytest.raises(ZipCheckError) as info:
        validate_and_extract(
            zip_path,
            tmp_path / "out",
            model_format="TORCH_SCRIPT",
            function_name="TEXT_EMBEDDING",
            expected_hash=sha(zip_path.read_bytes()),
            max_bytes=1 << 30,
        )
    assert str(info.value) == f"Model zip has {entries} entries, more than the limit of 1000 (setting max_zip_entries)"
