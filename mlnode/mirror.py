"""Copy pretrained models from an artifacts site into a folder laid out like it, for an ML node that cannot reach
OpenSearch's site (an air-gapped network): point its ``artifacts_base_url`` setting at the folder, or serve the
folder over http and point it at that.

``mirror(catalog, dest, names)`` downloads, for each named catalog entry (default: every entry with artifacts), each
version and format: ``dest/<name>/<version>/<format>/config.json`` byte for byte and the zip under its exact name,
each checked (the zip opens, its SHA-256 is the config's) before it is moved into place. What is already there and
checks out is kept, so an interrupted mirror resumes. Calls block.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mlnode.catalog import Catalog, CatalogEntry, UnknownPretrainedModel
from mlnode.packaging.core import sha256_file


@dataclass(frozen=True)
class Mirrored:
    name: str
    version: str
    model_format: str
    zip_path: Path
    downloaded: bool  # False: already in the folder with the right hash


def _entries(catalog: Catalog, names: Sequence[str]) -> list[CatalogEntry]:
    mirrorable = [catalog.entries[name] for name in catalog.names() if catalog.entries[name].artifacts]
    if not names:
        return mirrorable
    valid = [entry.name for entry in mirrorable]
    unknown = [name for name in names if name not in valid]
    if unknown:
        raise UnknownPretrainedModel(
            f"cannot mirror {unknown}: not catalog names with artifacts; valid names: {', '.join(valid)}", valid
        )
    return [catalog.entries[name] for name in dict.fromkeys(names)]


def _present(folder: Path, zip_name: str) -> bool:
    config_path, zip_path = folder / "config.json", folder / zip_name
    if not (config_path.is_file() and zip_path.is_file()):
        return False
    try:
        expected = json.loads(config_path.read_text(encoding="utf-8")).get("model_content_hash_value")
    except (UnicodeDecodeError, json.JSONDecodeError, AttributeError):
        return False
    return sha256_file(zip_path) == expected


def _mirror_one(catalog: Catalog, dest: Path, name: str, version: str, model_format: str) -> Mirrored:
    zip_name = catalog.artifact_urls(name, version, model_format)[1].rsplit("/", 1)[1]
    folder = dest.joinpath(*name.split("/"), version, model_format.lower())
    if _present(folder, zip_name):
        return Mirrored(name, version, model_format, folder / zip_name, downloaded=False)
    dest.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".mirror-", dir=dest))
    try:
        catalog.fetch_artifact(name, version, model_format, staging)
        shutil.rmtree(folder, ignore_errors=True)
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging.rename(folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return Mirrored(name, version, model_format, folder / zip_name, downloaded=True)


def mirror(catalog: Catalog, dest: Path, names: Sequence[str] = ()) -> list[Mirrored]:
    """Mirror ``names`` (default: every catalog entry with artifacts) from ``catalog.artifact_base_url`` into
    ``dest``; every version and format of each. Raises ``CatalogError`` (a download or check failed: what was
    mirrored before stays) or ``UnknownPretrainedModel`` (a name that cannot be mirrored, listing those that can)."""
    dest = Path(dest)
    done = []
    for entry in _entries(catalog, names):
        for version in entry.versions:
            for model_format in entry.model_formats:
                done.append(_mirror_one(catalog, dest, entry.name, version, model_format))
    return done
