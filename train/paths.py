"""Where the pipeline finds its files, anchored on this package (not the working directory).

``SEGFORMER_SHARED`` names the folder that holds ``datasets/`` and ``models/`` (default: ``shared`` beside the
repository). Inside the repository: the prepared data (``data/``), the run folders (``runs/``) and the page of the
design questions with its figures and committed results (``docs/discussion/``).
"""

import os
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("SEGFORMER_SHARED", REPO.parent / "shared"))
DATASETS_DIR = SHARED / "datasets"
MODELS_DIR = SHARED / "models"
DATA_DIR = REPO / "data"
RUNS_DIR = REPO / "runs"
DISCUSSION_DIR = REPO / "docs" / "discussion"
ARMS_DIR = DISCUSSION_DIR / "results" / "arms"  # one small JSON per training arm and seed (experiments.ablate)


def repo_relative(path: str | Path) -> str:
    """``path`` as written relative to the repository when it lies inside it (as the recipes and records spell
    it), else absolute; a relative ``path`` is taken from the working directory."""
    resolved = Path(path).resolve()
    return str(resolved.relative_to(REPO)) if resolved.is_relative_to(REPO) else str(resolved)
