"""Shared test setup. Fixture modules live in tests/fixtures, one per package that owns them."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

pytest_plugins = [
    "tests.fixtures.models",
    "tests.fixtures.mlnode",
    "tests.fixtures.datanode",
    "tests.fixtures.registry",
]
