"""The validation tab's per-example report (demo.ground_truth.example_report) against counts done by hand."""

import numpy as np

from demo.ground_truth import example_label, example_report
from task.classes import CLASS_NAMES, IGNORE_INDEX, label_id

NOT_A_CAT = label_id(frozenset({0, 1, 3}))  # feral-cats' partial label: background, plant or vehicle


def test_report_counts_single_class_pixels_and_judges_partial_ones_by_their_set() -> None:
    truth = np.array([[0, 0, 1, 1], [2, IGNORE_INDEX, NOT_A_CAT, 1]], dtype=np.uint8)
    prediction = np.array([[0, 1, 1, 1], [2, 0, 3, 3]], dtype=np.uint8)
    rgb = np.zeros((2, 4, 3), dtype=np.uint8)
    rows, summary = example_report("feral-cats__cat 7", rgb, truth, prediction, 0.25, CLASS_NAMES)
    # Six single-class pixels: background 1 right, 1 called plant; plant 2 right, 1 called vehicle; person/animal
    # 1 right. IoU: background 1/2, plant 2/(2+1+1), person/animal 1/1, vehicle 0/1 (one false positive).
    # Shares are of the 7 labelled pixels; the partial pixel predicted vehicle counts in the predicted share.
    assert rows == [
        ["background", "0.500", "28.6%", "14.3%"],
        ["plant", "0.500", "42.9%", "42.9%"],
        ["person/animal", "1.000", "14.3%", "14.3%"],
        ["vehicle", "0.000", "0.0%", "28.6%"],
    ]
    assert summary.startswith("**feral-cats: cat 7** (4×2): pixel accuracy **66.7%**, mIoU **0.500**")
    assert "12% of the pixels are not labelled" in summary
    assert '12% of the pixels have a partial label (hatched: background|plant|vehicle ("not a cat"))' in summary
    assert "0.0% of them are predicted as a class outside their set" in summary
    assert summary.endswith("Inference 0.25 s.")


def test_report_of_a_fully_labelled_example_says_nothing_of_partial_labels() -> None:
    truth = np.array([[0, 3], [3, 3]], dtype=np.uint8)
    prediction = np.array([[0, 3], [0, 3]], dtype=np.uint8)
    rows, summary = example_report("camvid__f1", np.zeros((2, 2, 3), np.uint8), truth, prediction, 1.0, CLASS_NAMES)
    assert [row[1] for row in rows] == ["0.500", "—", "—", "0.667"]
    assert "partial" not in summary and "0% of the pixels are not labelled" in summary
    assert example_label("camvid__0016E5_07959") == "camvid: 0016E5_07959"
