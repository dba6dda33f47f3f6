"""The hint stage: the MiT encoder learns EfficientNet-Lite0's ImageNet features (train.hints) before training.

    python -m train.distill --data data/4class-256 --out runs/distill --epochs 20 [--resume]
    python -m train.train --init runs/distill/last ...        (then train SegFormer from the distilled encoder)

``python -m train.distill FLAGS`` is ``python -m train.train --recipe distill FLAGS``: train.train's loop with the
segmentation loss at weight 0 and the hint loss at weight 1, over the training images of the given folders alone
(labels unused) through RandomResizedCrop (scale 0.25-1), flip and colour jitter (train.data.image_transform);
AdamW (weight decay 0.05 on weights, none on norms and biases), linear warmup then cosine decay. ``OUT/last`` is an
ordinary SegFormer checkpoint (the distilled encoder, a freshly initialised decoder) with no training history and a
``distillation`` record (teacher, recipe, losses per epoch); ``OUT/last-projections`` and ``OUT/last-optimizer``
hold the rest of the state, so that ``--resume`` continues exactly: 2 epochs == 1 epoch + resume 1 epoch.
"""

import sys
from collections.abc import Sequence

from train import train


def main(argv: Sequence[str] | None = None) -> None:
    """Run train.train's ``distill`` recipe with these flags (the flags of train.train)."""
    train.main(["--recipe", "distill", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    main()
