"""demo.masks: the Segment tab's downloadable masks, named safely, written whole, and only the last few kept."""

import numpy as np
import pytest
from PIL import Image

from demo.masks import MaskFiles, mask_stem
from task.classes import PALETTE


@pytest.mark.parametrize(
    ("upload", "stem"),
    [
        ("holiday photo.jpg", "holiday_photo"),
        ("../../etc/passwd", "passwd"),
        ("..\\..\\boot.ini", "_.._boot"),
        ("..jpg", "photo"),
        (None, "photo"),
        ("a" * 300 + ".png", "a" * 80),
    ],
)
def test_a_masks_name_keeps_only_safe_characters_of_the_uploads_stem(upload: str | None, stem: str) -> None:
    assert mask_stem(upload) == stem


def test_masks_are_class_id_pngs_in_their_folder_and_only_the_last_are_kept() -> None:
    files = MaskFiles(kept=2, palette=np.asarray(PALETTE, dtype=np.uint8))
    masks = [np.arange(12, dtype=np.uint8).reshape(3, 4) % 4, np.full((5, 2), 3, np.uint8), np.eye(4, dtype=np.uint8)]
    paths = [files.save(mask, f"../up load {i}.jpg") for i, mask in enumerate(masks)]
    assert [p.name for p in paths] == ["up_load_0-mask.png", "up_load_1-mask.png", "up_load_2-mask.png"]
    assert all(p.parent.parent == files.root for p in paths)
    assert not paths[0].exists() and not paths[0].parent.exists()  # the oldest beyond kept=2 is gone
    for path, mask in zip(paths[1:], masks[1:], strict=True):
        assert sorted(q.name for q in path.parent.iterdir()) == [path.name]  # no temporary file left beside it
        with Image.open(path) as image:
            assert image.mode == "P"
            np.testing.assert_array_equal(np.asarray(image), mask)
            assert image.getpalette()[: 3 * len(PALETTE)] == [c for colour in PALETTE for c in colour]
