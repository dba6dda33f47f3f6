"""The selection rule's figures (train.standing) against values computed by hand from small confusion matrices."""

import json
from pathlib import Path

import pytest
import torch

from task.classes import CLASS_NAMES, PARTIAL_IDS, label_id
from task.metrics import scores
from train.standing import main, rule_figures, teacher_figures

NOT_A_CAT = PARTIAL_IDS.index(label_id(frozenset({0, 1, 3})))


def source(diagonal: list[int], wrong: dict[tuple[int, int], int], not_a_cat: list[int] | None = None) -> dict:
    """A train.evaluate result of one source: its confusion (truth x prediction) and partial-label counts."""
    confusion = torch.diag(torch.tensor(diagonal))
    for (truth, predicted), count in wrong.items():
        confusion[truth, predicted] = count
    partial = torch.zeros(len(PARTIAL_IDS), len(CLASS_NAMES), dtype=torch.int64)
    if not_a_cat:
        partial[NOT_A_CAT] = torch.tensor(not_a_cat)
    result = scores(confusion, CLASS_NAMES, partial)
    return {**result, "loss": 0.1, "images": 1, "confusion": confusion.tolist(), "partial": partial.tolist()}


REPORT = {
    "per_source": {
        "raw/sift-flow": source([10, 5, 0, 2], {(2, 0): 2}),  # two person/animal pixels called background
        "raw/msrc-v2": source([4, 4, 3, 1], {(3, 0): 1}),  # a vehicle pixel called background
        "raw/camvid": source([6, 1, 1, 3], {}),
        # A background pixel called an animal, and of 4 "not a cat" pixels 2 predicted as an animal.
        "raw/feral-cats": source([5, 0, 3, 0], {(0, 2): 1}, not_a_cat=[2, 0, 2, 0]),
    }
}


def test_three_sources_pooled_and_the_cats_apart() -> None:
    figures = rule_figures(REPORT)
    # Pooled diagonal 20 / 10 / 4 / 6; background has 3 false positives. IoU 20/23, 10/10, 4/6, 6/7.
    assert figures["3-source mIoU"] == pytest.approx((20 / 23 + 1 + 4 / 6 + 6 / 7) / 4)
    assert figures["person/animal"] == pytest.approx(4 / 6)
    assert figures["vehicle"] == pytest.approx(6 / 7)
    # The cat IoU: 3 right, 1 background pixel and 2 "not a cat" pixels predicted as an animal: 3 / 6.
    assert figures["cat IoU"] == pytest.approx(0.5)


def test_a_report_without_the_cats_is_refused() -> None:
    report = {"per_source": {k: v for k, v in REPORT["per_source"].items() if "feral" not in k}}
    with pytest.raises(ValueError, match="feral-cats"):
        rule_figures(report)


def test_the_command_prints_one_row_per_report(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "stage-x.json").write_text(json.dumps(REPORT))
    main([str(tmp_path / "stage-x.json")])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "| report | 3-source mIoU | person/animal | vehicle | cat IoU | people IoU | pets IoU |"
    assert lines[2] == "| stage-x | 0.848 | 0.667 | 0.857 | 0.500 | - | - |"


NOT_A_PERSON = NOT_A_CAT  # ccp-people's and oxford-pets' unannotated surroundings score as {background, plant, vehicle}


def test_people_and_pets_count_predictions_around_the_one_person_as_false_positives() -> None:
    # ccp-people: 6 person pixels right, 2 missed (called background); of 10 surrounding pixels 3 called a person.
    # oxford-pets: 4 pet pixels right, none missed; of 8 surrounding pixels 1 called an animal.
    people = source([0, 0, 6, 0], {(2, 0): 2}, not_a_cat=[7, 0, 3, 0])
    pets = source([0, 0, 4, 0], {}, not_a_cat=[7, 0, 1, 0])
    report = {"per_source": {**REPORT["per_source"], "raw/ccp-people": people, "raw/oxford-pets": pets}}
    figures = rule_figures(report)
    assert figures["people IoU"] == pytest.approx(6 / 11)
    assert figures["pets IoU"] == pytest.approx(4 / 5)
    assert figures["3-source mIoU"] == rule_figures(REPORT)["3-source mIoU"]  # the one-class sources stay apart


def test_the_teachers_scores_give_one_row_per_fusion_rule() -> None:
    pooled = {**source([20, 10, 4, 6], {(2, 0): 2, (3, 0): 1}), "sources": ["camvid", "msrc-v2", "sift-flow"]}
    cats = {**REPORT["per_source"]["raw/feral-cats"], "sources": ["feral-cats"]}
    scored = {rule: {"4class": pooled, "cats": cats} for rule in ("ade20k", "max-person")}
    rows = teacher_figures(scored)
    assert list(rows) == ["teachers, ade20k", "teachers, max-person"]
    assert rows["teachers, max-person"] == {**rule_figures(REPORT), "people IoU": None, "pets IoU": None}
