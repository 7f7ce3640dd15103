"""Model zip validation: each bad zip gets ML Commons' message (or ours) and leaves nothing behind."""

from __future__ import annotations

import hashlib
import stat
import zipfile
from pathlib import Path

import pytest

from mlnode.zipcheck import HASH_REQUIRED, ZipCheckError, validate_and_extract

pytestmark = [pytest.mark.unit]

TOKENIZER = b'{"version": "1.0", "model": {}}'


def make_zip(path: Path, members: dict[str, bytes], *, symlinks: tuple[str, ...] = ()) -> str:
    with zipfile.ZipFile(path, "w") as archive:
        for name, content in members.items():
            info = zipfile.ZipInfo(name)
            if name in symlinks:
                info.create_system = 3
                info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, content)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def check(
    tmp_path: Path,
    members: dict[str, bytes],
    *,
    model_format: str = "TORCH_SCRIPT",
    function_name: str = "TEXT_EMBEDDING",
    max_bytes: int = 1 << 20,
    symlinks: tuple[str, ...] = (),
    expected_hash: str | None = "match",
) -> Path:
    zip_path = tmp_path / "model.zip"
    digest = make_zip(zip_path, members, symlinks=symlinks)
    return validate_and_extract(
        zip_path,
        tmp_path / "store" / "model",
        model_format=model_format,
        function_name=function_name,
        expected_hash=digest if expected_hash == "match" else expected_hash,
        max_bytes=max_bytes,
    )


def test_valid_zip_is_extracted(tmp_path):
    folder = check(tmp_path, {"m.pt": b"weights", "tokenizer.json": TOKENIZER, "sub/notes.txt": b"hi"})
    assert folder == tmp_path / "store" / "model"
    assert (folder / "m.pt").read_bytes() == b"weights"
    assert (folder / "sub" / "notes.txt").read_bytes() == b"hi"
    assert sorted(p.name for p in (tmp_path / "store").iterdir()) == ["model"]


def test_sparse_tokenize_needs_no_model_file(tmp_path):
    folder = check(tmp_path, {"tokenizer.json": TOKENIZER, "idf.json": b"{}"}, function_name="SPARSE_TOKENIZE")
    assert (folder / "idf.json").exists()


@pytest.mark.parametrize(
    ("members", "options", "message"),
    [
        (
            {"a.pt": b"1", "b.pt": b"2", "tokenizer.json": TOKENIZER},
            {},
            "Find multiple model files, but expected only one",
        ),
        ({"a.onnx": b"1", "tokenizer.json": TOKENIZER}, {}, "Model format is TORCH_SCRIPT, but find .onnx file"),
        (
            {"a.pt": b"1", "tokenizer.json": TOKENIZER},
            {"model_format": "ONNX"},
            "Model format is ONNX, but find .pt file",
        ),
        ({"tokenizer.json": TOKENIZER}, {}, "Can't find model file"),
        ({"a.pt": b"1"}, {}, "No tokenizer file"),
        ({"a.pt": b"1", "sub/tokenizer.json": TOKENIZER}, {}, "No tokenizer file"),
        ({"a.pt": b"1", "tokenizer.json": TOKENIZER, "../x": b"evil"}, {}, r"entry \[../x\] points outside"),
        ({"a.pt": b"1", "tokenizer.json": TOKENIZER, "/etc/x": b"evil"}, {}, r"entry \[/etc/x\] points outside"),
        ({"a.pt": b"1", "tokenizer.json": TOKENIZER, "C:/x": b"evil"}, {}, "points outside"),
        (
            {"a.pt": b"1", "tokenizer.json": TOKENIZER, "link": b"/etc/passwd"},
            {"symlinks": ("link",)},
            r"\[link\] points outside",
        ),
        ({"a.pt": b"1", "tokenizer.json": TOKENIZER, "run.sh": b"echo"}, {}, r"\[run.sh\] is an executable"),
        ({"a.pt": b"1", "tokenizer.json": TOKENIZER, "data": b"\x7fELF\x02"}, {}, r"\[data\] is an executable"),
        ({"a.pt": b"1", "tokenizer.json": TOKENIZER}, {"expected_hash": "0" * 64}, "^model content changed$"),
        ({"a.pt": b"1", "tokenizer.json": TOKENIZER}, {"expected_hash": None}, HASH_REQUIRED),
        ({"a.pt": b"0" * 4096, "tokenizer.json": TOKENIZER}, {"max_bytes": 2048}, "more than the limit of 2048 bytes"),
    ],
)
def test_bad_zip_is_rejected_and_nothing_is_left(tmp_path, members, options, message):
    with pytest.raises(ZipCheckError, match=message) as info:
        check(tmp_path, members, **options)
    assert info.value.status == 400
    assert not (tmp_path / "store").exists() or not any((tmp_path / "store").iterdir())


def test_zip_bomb_counts_uncompressed_size(tmp_path):
    zip_path = tmp_path / "bomb.zip"
    with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("a.pt", b"\0" * (8 << 20))
        archive.writestr("tokenizer.json", TOKENIZER)
    assert zip_path.stat().st_size < (1 << 20)
    digest = hashlib.sha256(zip_path.read_bytes()).hexdigest()
    with pytest.raises(ZipCheckError, match="unpacks to"):
        validate_and_extract(
            zip_path,
            tmp_path / "out",
            model_format="TORCH_SCRIPT",
            function_name="TEXT_EMBEDDING",
            expected_hash=digest,
            max_bytes=1 << 20,
        )


def test_not_a_zip(tmp_path):
    path = tmp_path / "model.zip"
    path.write_bytes(b"not a zip")
    with pytest.raises(ZipCheckError, match="not a zip"):
        validate_and_extract(
            path,
            tmp_path / "out",
            model_format="ONNX",
            function_name="TEXT_EMBEDDING",
            expected_hash=hashlib.sha256(b"not a zip").hexdigest(),
            max_bytes=1 << 20,
        )


def test_existing_model_folder_is_not_overwritten(tmp_path):
    (tmp_path / "store" / "model").mkdir(parents=True)
    (tmp_path / "store" / "model" / "keep.txt").write_text("registered earlier")
    with pytest.raises(ZipCheckError, match="already holds files"):
        check(tmp_path, {"m.pt": b"w", "tokenizer.json": TOKENIZER})
    assert (tmp_path / "store" / "model" / "keep.txt").read_text() == "registered earlier"


@pytest.mark.integration
def test_packaged_zips_pass(model_zips, tmp_path):
    for key in ("tokenizer", "tiny-qa-torchscript"):
        model = model_zips[key]
        folder = validate_and_extract(
            model.zip_path,
            tmp_path / key,
            model_format=model.config["model_format"],
            function_name=model.config["function_name"],
            expected_hash=model.hash,
            max_bytes=1 << 30,
        )
        assert (folder / "tokenizer.json").exists()
