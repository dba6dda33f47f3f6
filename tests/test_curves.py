"""The Training curves tab's texts (demo.curves) on metadata written out by hand, and on the shipped checkpoint's."""

import re

from demo.curves import TEACHER_PIXELS, continued_note, history_note, last_epoch_rows, soup_note, teacher_note
from segformer.checkpoint import DEFAULT_CHECKPOINT, read_metadata
from train.losses import ON_LABELLED


def record(epoch: int, miou: float) -> dict:
    return {
        "epoch": epoch,
        "val_miou": miou,
        "val_pixel_acc": 0.9,
        "val_loss": 0.25,
        "train_loss": 0.3,
        "val_per_class_iou": {"background": 0.9, "plant": None},
    }


#: How far a figure the tab shows with three decimals may be from the value it rounds.
SHOWN = 5e-4 + 1e-9

RUN = {"history": [record(1, 0.40), record(2, 0.55), record(3, 0.50)], "recipe": {"epochs": 2, "init": "runs/a"}}


def test_history_note_gives_the_last_epoch_and_the_best_one() -> None:
    note = history_note(RUN)
    assert note.startswith("The curves are those of the run that trained these weights: after epoch **3**")
    assert "validation mIoU 0.500, pixel accuracy 90.0%, validation loss 0.250 (train loss 0.300)" in note
    assert "best validation mIoU 0.550 at epoch 2" in note
    assert last_epoch_rows(RUN) == [["background", "0.900"], ["plant", "—"]]
    assert soup_note(RUN) is None and continued_note(RUN) is None  # not an average, not continued


def test_a_continued_run_says_which_epochs_are_its_own() -> None:
    note = continued_note({**RUN, "inherited_epochs": 1})
    assert "continued from `runs/a`, whose 1 epochs are the start of the curves" in note
    assert '`"epochs": 2` more (epochs 2–3)' in note


def test_an_average_names_its_ingredients_and_whose_curves_are_shown() -> None:
    soup = {**RUN, "soup": [{"checkpoint": "runs/a/last", "history": RUN["history"]}, {"checkpoint": "start"}]}
    assert "**average of 2 checkpoints**" in soup_note(soup)
    assert "`runs/a/last` (epoch 3, validation mIoU 0.500)" in soup_note(soup)
    assert "`start`" not in soup_note(soup)  # an ingredient without a history is not described
    assert "the first of the 2 checkpoints averaged into these weights, `runs/a/last`" in history_note(soup)


def test_a_taught_stage_says_what_the_teachers_taught() -> None:
    recipe = {"teacher_weight": 0.5, "teacher": "max-person", "teacher_temperature": 2.0, "teacher_on_labelled": "none"}
    note = teacher_note({"recipe": recipe})
    assert "fused by `max-person`), 0.5 x the KL to them at temperature 2, on only the pixels nobody labelled" in note
    assert "where the teacher's argmax agrees" in teacher_note({"recipe": {**recipe, "teacher_on_labelled": "agree"}})
    assert teacher_note({"recipe": {**recipe, "teacher_weight": 0.0}}) is None and teacher_note(RUN) is None


def test_every_mode_of_the_loss_has_its_sentence() -> None:
    """One sentence for each on_labelled mode of train.losses (demo/ may not import train/, so a test ties them)."""
    assert set(TEACHER_PIXELS) == set(ON_LABELLED)


def test_without_a_history_there_is_nothing_to_say() -> None:
    assert history_note({}) is None and last_epoch_rows({}) == [] and soup_note({}) is None
    assert continued_note({"recipe": {"epochs": 2}, "inherited_epochs": 3}) is None


def test_the_shipped_checkpoint_has_curves_of_its_own_last_epoch() -> None:
    """The shipped weights are the last epoch of a run that continued its start's history for the recipe's epochs, so
    the history ends at the start's epochs plus the recipe's, one record an epoch. The tab's note and class rows,
    read back as numbers, are that record's, to the digits shown, and match no other epoch's."""
    meta = read_metadata(DEFAULT_CHECKPOINT)
    history = meta["history"]
    last = history[-1]
    epochs = meta.get("inherited_epochs", 0) + meta["recipe"]["epochs"]
    assert [h["epoch"] for h in history] == list(range(1, epochs + 1))
    epoch, miou = re.search(r"after epoch \*\*(\d+)\*\*, validation mIoU ([\d.]+)", history_note(meta)).groups()
    assert int(epoch) == last["epoch"] and abs(float(miou) - last["val_miou"]) <= SHOWN
    shown = {name: float(iou) for name, iou in last_epoch_rows(meta)}

    def matches(record: dict) -> bool:
        ious = record["val_per_class_iou"]
        return shown.keys() == ious.keys() and all(abs(shown[name] - ious[name]) <= SHOWN for name in shown)

    assert [h["epoch"] for h in history if matches(h)] == [last["epoch"]]
