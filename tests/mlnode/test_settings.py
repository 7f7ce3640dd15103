"""ML node settings: ML Commons' defaults, config file overrides, validation with OpenSearch's messages."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mlnode.catalog import Catalog
from mlnode.settings import DEFAULT_CONFIG, PREFIX, MLSettings, resolve_intra_op_threads, usable_cores
from opensearch_contract.errors import IllegalArgument
from opensearch_contract.settings import flatten_settings

pytestmark = [pytest.mark.unit]

ROOT = Path(__file__).resolve().parents[2]


def test_defaults_are_ml_commons_defaults(tmp_path):
    s = MLSettings.load(data_dir=tmp_path)
    assert s.get("allow_registering_model_via_url") is False
    assert s.get("allow_registering_model_via_local_file") is False
    assert s.get("native_memory_threshold") == 90
    assert s.get("max_model_on_node") == 10
    assert s.get("ml_task_timeout_in_seconds") == 600
    assert s.get("trusted_url_regex") == "^(https?|ftp|file)://[-a-zA-Z0-9+&@#/%?=~_|!:,.;]*[-a-zA-Z0-9+&@#/%=~_|]"
    assert s.get("only_run_on_ml_node") is True
    assert s.resolved_cache_dir == tmp_path / "cache"
    assert (s.batch_max_size, s.queue_capacity, s.max_zip_bytes) == (32, 256, 4 * 1024**3)


def test_config_file_and_overrides(tmp_path):
    config = tmp_path / "mlnode.yaml"
    config.write_text(
        "plugins.ml_commons:\n  allow_registering_model_via_url: true\n  max_model_on_node: 2\n"
        "neuralpipe:\n  queue_capacity: 9\n  cache_dir: /tmp/x\n"
    )
    s = MLSettings.load(config, data_dir=tmp_path, max_model_on_node=5, worker_threads=3)
    assert s.get("allow_registering_model_via_url") is True
    assert s.get("max_model_on_node") == 5 and s.queue_capacity == 9 and s.worker_threads == 3
    assert str(s.resolved_cache_dir) == "/tmp/x"
    nested = tmp_path / "nested.yaml"
    nested.write_text("plugins.ml_commons:\n  model_auto_redeploy:\n    enable: false\n")
    assert MLSettings.load(nested, data_dir=tmp_path).get("model_auto_redeploy.enable") is False


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("neuralpipe:\n  queue_size: 3\n", r"unknown neuralpipe setting \[queue_size\]"),
        ("plugins.ml_commons:\n  max_model_on_node: lots\n", r"Failed to parse value \[lots\]"),
        ("plugins.ml_commons:\n  no_such_thing: 1\n", r"not recognized"),
    ],
)
def test_bad_config_files(tmp_path, text, message):
    config = tmp_path / "bad.yaml"
    config.write_text(text)
    with pytest.raises((ValueError, IllegalArgument), match=message):
        MLSettings.load(config, data_dir=tmp_path)


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("allow_registering_model_via_url", "true", True),
        ("allow_registering_model_via_url", False, False),
        ("native_memory_threshold", "100", 100),
        ("trusted_url_regex", "^https://.*", "^https://.*"),
        ("max_model_on_node", None, 10),
    ],
)
def test_coerce(tmp_path, name, value, expected):
    assert MLSettings.load(data_dir=tmp_path).coerce(name, value) == expected


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("native_memory_threshold", 101, r"must be <= 100"),
        ("max_deploy_model_tasks_per_node", 11, r"must be <= 10"),
        ("ml_task_timeout_in_seconds", 0, r"must be >= 1"),
        ("allow_registering_model_via_url", "yes", r"as only \[true\] or \[false\] are allowed"),
        ("trusted_url_regex", "([", r"Failed to parse value"),
        ("foo", 1, r"persistent setting \[plugins.ml_commons.foo\], not recognized"),
    ],
)
def test_coerce_rejects(tmp_path, name, value, message):
    with pytest.raises(IllegalArgument, match=message):
        MLSettings.load(data_dir=tmp_path).coerce(name, value)


def test_flatten_settings():
    assert flatten_settings({"plugins": {"ml_commons": {"a": 1, "b": {"c": True}}}, "x.y": 2}) == {
        "plugins.ml_commons.a": 1,
        "plugins.ml_commons.b.c": True,
        "x.y": 2,
    }


@pytest.mark.parametrize(
    ("configured", "workers", "cores", "expected"),
    [(0, 2, 2, 1), (0, 1, 2, 2), (0, 4, 2, 1), (0, 2, 16, 8), (0, 3, 8, 2), (3, 2, 2, 3)],
)
def test_intra_op_threads_share_the_cores_among_workers(configured, workers, cores, expected):
    got = resolve_intra_op_threads(configured, workers, cores)
    assert got == expected
    if configured == 0 and workers <= cores:
        assert workers * got <= cores


def test_default_threads_never_exceed_this_machines_cores(tmp_path, monkeypatch):
    s = MLSettings.load(data_dir=tmp_path)
    assert (s.worker_threads, s.intra_op_threads) == (2, 0)  # configs/mlnode.yaml: 0 = auto
    cores = usable_cores()
    assert s.resolved_intra_op_threads == max(1, cores // 2)
    assert MLSettings.load(data_dir=tmp_path, intra_op_threads=3).resolved_intra_op_threads == 3


def test_every_extra_default_comes_from_the_packaged_file(tmp_path):
    """One home for the defaults: the ``neuralpipe`` section of mlnode/configs/mlnode.yaml sets every extra."""
    packaged = yaml.safe_load(DEFAULT_CONFIG.read_text(encoding="utf-8"))
    s = MLSettings.load(data_dir=tmp_path)
    for key, value in packaged["neuralpipe"].items():
        assert getattr(s, key) == (value if value is None or not isinstance(getattr(s, key), Path) else Path(value))
    assert s.defaults == {
        k.removeprefix(PREFIX): v
        for k, v in flatten_settings({"plugins.ml_commons": packaged["plugins.ml_commons"]}).items()
    }
    assert (ROOT / "configs" / "mlnode.yaml").read_text() == DEFAULT_CONFIG.read_text()  # the docs' path still works


@pytest.mark.slow
def test_a_non_editable_install_finds_its_settings_and_catalog(tmp_path):
    """``pip install .`` (not editable) copies mlnode/configs/*.yaml as package data; the installed node reads them
    from beside its own code, wherever it runs from."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for package in ("opensearch_contract", "processors", "mlnode", "datanode", "neuralpipe"):
        shutil.copytree(ROOT / package, src / package, ignore=shutil.ignore_patterns("__pycache__"))
    site = tmp_path / "site"
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target", str(site)]
    subprocess.run([*pip, str(src)], check=True, cwd=tmp_path, capture_output=True)
    probe = (
        "import json, mlnode, mlnode.catalog as c, mlnode.settings as s;"
        "m = s.MLSettings.load(data_dir='d');"
        "print(json.dumps([mlnode.__file__, m.queue_capacity, m.get('max_model_on_node'), c.Catalog.load().names()]))"
    )
    env = {**os.environ, "PYTHONPATH": str(site)}
    out = subprocess.run(
        [sys.executable, "-c", probe], check=True, cwd=tmp_path, env=env, capture_output=True, text=True
    )
    module_file, queue_capacity, max_models, names = json.loads(out.stdout)
    assert Path(module_file).is_relative_to(site)
    assert (queue_capacity, max_models) == (256, 10)
    assert names == Catalog.load().names() and "huggingface/sentence-transformers/all-MiniLM-L6-v2" in names
