"""The Hugging Face Hub: one function that fetches a file, and the two spellings of a Hub source.

- ``hf://ORG/REPO/NAME``: a checkpoint of this project (``NAME.safetensors`` + ``NAME.json``, see
  segformer.checkpoint) in the Hub repository ORG/REPO. Wherever a checkpoint is taken (the app, ``python -m
  segformer``, ``train.train --init``, ``train.evaluate``), it stands for a local checkpoint stem.
- ``transformers://ORG/REPO``: a repository in the transformers layout (``config.json`` + ``model.safetensors``,
  see segformer.transformers_weights), e.g. ``transformers://nvidia/mit-b0``, the paper's ImageNet-pretrained
  encoder; ``train.train --init`` takes its weights.

Files come through huggingface_hub's cache (``HF_HUB_CACHE``; offline with ``HF_HUB_OFFLINE=1`` once cached).
"""

from pathlib import Path

CHECKPOINT_PREFIX = "hf://"
TRANSFORMERS_PREFIX = "transformers://"


def hub_file(repo_id: str, filename: str, revision: str | None = None) -> Path:
    """The local path of ``filename`` of the Hub repository ``repo_id``, fetched into the cache if need be."""
    from huggingface_hub import hf_hub_download

    return Path(hf_hub_download(repo_id, filename, revision=revision))


def resolve_checkpoint(spec: str | Path) -> Path:
    """The local stem of a checkpoint given as a path or as ``hf://ORG/REPO/NAME`` (both of its files fetched:
    they land in the same snapshot folder of the cache)."""
    if not str(spec).startswith(CHECKPOINT_PREFIX):
        return Path(spec)
    parts = str(spec).removeprefix(CHECKPOINT_PREFIX).strip("/").split("/")
    if len(parts) < 3 or not all(parts):
        raise ValueError(
            f"{spec}: expected hf://ORG/REPO/NAME (NAME.safetensors and NAME.json in the repo); "
            f"a repository in the transformers layout is {TRANSFORMERS_PREFIX}ORG/REPO"
        )
    repo_id, name = "/".join(parts[:2]), "/".join(parts[2:]).removesuffix(".safetensors").removesuffix(".json")
    weights = hub_file(repo_id, f"{name}.safetensors")
    hub_file(repo_id, f"{name}.json")
    return weights.with_suffix("")
