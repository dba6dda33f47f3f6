"""The app's checkpoint: a local path or ``hf://ORG/REPO/NAME`` (segformer.hub), loaded once as a
``segformer.Segmenter``, the object that segments as the app does."""

from dataclasses import replace

from huggingface_hub.errors import EntryNotFoundError

from segformer.hub import resolve_checkpoint
from segformer.segmenter import Segmenter


class CheckpointError(ValueError):
    """A checkpoint that is missing, unreachable or unfit for the app; the message names it."""


def load_model(spec: str) -> Segmenter:
    """The checkpoint ``spec`` (a path or ``hf://ORG/REPO/NAME``) with the preprocessing of its metadata, checked
    to fit its model; CheckpointError, naming ``spec``, when it cannot be fetched, read or used."""
    try:
        path = resolve_checkpoint(spec)
    except (EntryNotFoundError, OSError) as err:
        raise CheckpointError(f"cannot fetch checkpoint {spec} from the Hugging Face Hub: {err}") from err
    except ValueError as err:  # not of the form hf://ORG/REPO/NAME
        raise CheckpointError(str(err)) from err
    try:
        segmenter = Segmenter.from_checkpoint(path)
    except (FileNotFoundError, ValueError, TypeError, KeyError, AttributeError) as err:
        raise CheckpointError(f"cannot load checkpoint {spec}: {err}") from err
    return replace(segmenter, source=spec)
