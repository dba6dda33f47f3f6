"""Where the pipeline finds what lies outside the repository, anchored on this package (not the working directory).

``SEGFORMER_SHARED`` names the folder that holds ``datasets/`` and ``models/`` (default: ``shared`` beside the
repository).
"""

import os
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("SEGFORMER_SHARED", REPO.parent / "shared"))
DATASETS_DIR = SHARED / "datasets"
MODELS_DIR = SHARED / "models"
