"""What the Training curves tab says about a checkpoint, read from its JSON metadata.

A checkpoint written by ``train/train.py`` carries ``history`` (one record per epoch: losses, validation mIoU,
pixel accuracy and per-class IoU on the prepared val split) and ``recipe`` (the run's arguments); one continued
from another (``--init``) also carries ``inherited_epochs``, the start's epochs at the head of its history; an
average of checkpoints (``train/soup.py``) carries ``soup``, each ingredient with its own history, and the history
of its first ingredient. ``recipe`` of a run taught by the segmentation teachers has a
``teacher_weight`` above 0. Each function returns None when the metadata has nothing for it to say.
"""


def soup_note(meta: dict) -> str | None:
    """Which checkpoints were averaged into these weights, each with its last epoch's validation mIoU."""
    soup = meta.get("soup")
    if not soup:
        return None
    parts = ", ".join(
        f"`{part['checkpoint']}` (epoch {part['history'][-1]['epoch']}, validation mIoU "
        f"{part['history'][-1]['val_miou']:.3f})"
        for part in soup
        if part.get("history")
    )
    return (
        f"These weights are the **average of {len(soup)} checkpoints** (a model soup, `train/soup.py`): {parts}. An "
        "average was not trained itself, so it has no curve of its own."
    )


def history_note(meta: dict) -> str | None:
    """Whose curves are shown (the run's, or the first ingredient's of an average) and where they ended: the last
    epoch's validation scores and losses, and the best validation mIoU with its epoch."""
    history = meta.get("history")
    if not history:
        return None
    last = history[-1]
    best = max(history, key=lambda record: record["val_miou"])
    soup = meta.get("soup")
    whose = (
        f"the first of the {len(soup)} checkpoints averaged into these weights, `{soup[0]['checkpoint']}`"
        if soup
        else "the run that trained these weights"
    )
    return (
        f"The curves are those of {whose}: after epoch **{last['epoch']}**, validation mIoU {last['val_miou']:.3f}, "
        f"pixel accuracy {last['val_pixel_acc']:.1%}, validation loss {last['val_loss']:.3f} (train loss "
        f"{last['train_loss']:.3f}); best validation mIoU {best['val_miou']:.3f} at epoch {best['epoch']}. "
        "Validation here is the prepared val split (short side 256)."
    )


def last_epoch_rows(meta: dict) -> list[list[str]]:
    """[class, IoU] rows of the history's last epoch ("—" for a class absent from the val split); [] without one."""
    history = meta.get("history")
    if not history:
        return []
    return [[name, "—" if iou is None else f"{iou:.3f}"] for name, iou in history[-1]["val_per_class_iou"].items()]


def continued_note(meta: dict) -> str | None:
    """For a run continued from another checkpoint: which epochs of the curves are the start's, which the recipe's."""
    recipe, inherited = meta.get("recipe") or {}, meta.get("inherited_epochs")
    if not (meta.get("history") and inherited and isinstance(recipe.get("epochs"), int)):
        return None
    return (
        f"The recipe below is that run's last stage: it continued from `{recipe.get('init')}`, whose {inherited} "
        f'epochs are the start of the curves, for `"epochs": {recipe["epochs"]}` more (epochs {inherited + 1}–'
        f"{inherited + recipe['epochs']}). The Design questions tab names the model it measured, which may be an "
        "earlier one."
    )


#: What each teacher_on_labelled mode of train.train (train.losses.ON_LABELLED) leaves the teachers.
TEACHER_PIXELS = {
    "all": "every pixel",
    "agree": "the pixels nobody labelled and the labelled ones where the teacher's argmax agrees with the label",
    "none": "only the pixels nobody labelled (each labelled pixel learned from its label alone)",
}


def teacher_note(meta: dict) -> str | None:
    """For a last stage that learned from the segmentation teachers' stored targets: the fusion, the KL's weight and
    temperature, and which pixels the teachers taught."""
    recipe = meta.get("recipe") or {}
    weight = recipe.get("teacher_weight")
    if not (isinstance(weight, (int, float)) and weight > 0):
        return None
    pixels = TEACHER_PIXELS.get(recipe.get("teacher_on_labelled", "all"), "pixels the recipe names")
    return (
        "The last stage of training also learned from **the segmentation teachers' targets** (`train.teach`: "
        f"DeepLabV3-MobileNetV2 on ADE20K and on PASCAL VOC, fused by `{recipe.get('teacher')}`), {weight:g} x the KL "
        f"to them at temperature {recipe.get('teacher_temperature', 1.0):g}, on {pixels}. The teachers are not part "
        "of the model."
    )
