"""A Hugging Face Hub cache folder written by hand, for the tests that load checkpoints offline from ``hf://``."""

import shutil
from pathlib import Path

from segformer.checkpoint import DEFAULT_CHECKPOINT

REVISION = "0123456789abcdef0123456789abcdef01234567"


def cache_checkpoint(cache: Path, repo_id: str, name: str) -> Path:
    """The shipped checkpoint as NAME.safetensors + NAME.json of the Hub repository ``repo_id`` (revision main) in
    the cache folder ``cache``; returns ``cache``."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / REVISION
    snapshot.mkdir(parents=True)
    for suffix in (".safetensors", ".json"):
        shutil.copyfile(DEFAULT_CHECKPOINT.with_name(DEFAULT_CHECKPOINT.name + suffix), snapshot / f"{name}{suffix}")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(REVISION)
    return cache
