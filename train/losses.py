"""Cross-entropy that also learns from partial labels.

A partial label says only that a pixel belongs to one of a set S of classes ("not a cat" = any class but
person/animal). Such a pixel is trained with the cross-entropy of the merged probability,

    loss = -log sum_{c in S} p_c,

the standard partial-label (or marginal) likelihood: Jin & Ghahramani 2002 for classification, Cour et al. 2011
("Learning from partial labels"); in segmentation, the marginal cross-entropy of Shi et al. 2021 ("Marginal loss
and exclusion loss for partially supervised multi-organ segmentation"). For a single-class pixel, S = {y}, it is
the plain cross-entropy -log p_y; only the classes inside S receive a positive gradient share.

Both losses here take any number of classes C (the logits' channels). The partial label values (task.classes:
PARTIAL_BASE + a bit mask of the set) are defined for the task's NUM_CLASSES classes only; with another C, labels
are class ids 0..C-1 or IGNORE_INDEX, and every labelled pixel is a single-class one.
"""

import torch
import torch.nn.functional as F

from task.classes import IGNORE_INDEX, NUM_CLASSES, PARTIAL_BASE, admissible_table

_ADMISSIBLE = torch.from_numpy(admissible_table())


def check_labels(labels: torch.Tensor, num_classes: int) -> None:
    """Refuse label values that are no class id of ``num_classes`` classes, no IGNORE_INDEX and (with other than
    the task's NUM_CLASSES classes, for which every value has a meaning) no partial label."""
    if num_classes != NUM_CLASSES and not ((labels < num_classes) | (labels == IGNORE_INDEX)).all():
        raise ValueError(
            f"labels must be class ids below {num_classes} or {IGNORE_INDEX}: partial labels are defined for the "
            f"{NUM_CLASSES} task classes only"
        )


def admissible_mask(labels: torch.Tensor, num_classes: int = NUM_CLASSES) -> torch.Tensor:
    """(B, C, H, W) bool: the classes each pixel's label value admits (none for ignore), for ``num_classes``
    classes C (see the module docstring)."""
    if num_classes == NUM_CLASSES:
        return _ADMISSIBLE.to(labels.device)[labels.long()].movedim(-1, 1)
    check_labels(labels, num_classes)
    single = labels < num_classes
    one_hot = F.one_hot(torch.where(single, labels, 0).long(), num_classes).bool() & single[..., None]
    return one_hot.movedim(-1, 1)


def partial_cross_entropy(
    logits: torch.Tensor,
    labels: torch.Tensor,
    weight: torch.Tensor | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """-log sum_{c in S(label)} softmax(logits)_c per pixel; ignore pixels (empty S) are left out.

    ``logits`` (B, C, H, W), ``labels`` (B, H, W) holding task ids, partial label values
    (task.classes.PARTIAL_BASE + bit mask) or IGNORE_INDEX. ``weight`` (C,) weights a single-class pixel of
    class c by weight[c], as ``F.cross_entropy`` does (a (B, C) ``weight`` gives each image its own); a partial
    pixel has weight 1 (the mean weight of a training pixel, see train.train.class_weights). ``reduction`` 'mean'
    is the weighted mean over labelled pixels, as ``F.cross_entropy``'s; 'sum' the weighted sum.
    """
    num_classes = logits.shape[1]
    admissible = admissible_mask(labels, num_classes)
    labelled = admissible.any(1)
    # Ignored pixels admit every class (a finite loss of 0 whose gradient is 0), then drop out through the weight.
    admissible |= ~labelled[:, None]
    log_p = logits.float().log_softmax(1)
    losses = -torch.logsumexp(log_p.masked_fill(~admissible, float("-inf")), dim=1)  # (B, H, W)
    single = labels < num_classes
    pixel_weight = labelled.to(log_p.dtype)
    if weight is not None:
        per_image = weight.to(log_p).expand(labels.shape[0], num_classes)
        single_weight = per_image.gather(1, labels.clamp(max=num_classes - 1).flatten(1)).view_as(labels)
        pixel_weight = torch.where(single, single_weight, pixel_weight)
    total = (losses * pixel_weight).sum()
    if reduction == "sum":
        return total
    if reduction == "mean":
        return total / pixel_weight.sum()
    raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")


#: Which single-class labelled pixels teacher_kl gives the teacher's target (its ``on_labelled``).
ON_LABELLED = ("all", "agree", "none")


def teacher_kl(
    logits: torch.Tensor,
    labels: torch.Tensor,
    teacher: torch.Tensor,
    temperature: float = 1.0,
    on_labelled: str = "all",
) -> torch.Tensor:
    """Pixel-wise knowledge distillation, T^2 KL(q_T || p_T) averaged over the pixels that have a teacher target.

    Hinton et al. 2015, applied per pixel for segmentation as in Liu et al. (CVPR 2019, "Structured knowledge
    distillation for semantic segmentation"): p_T = softmax(logits / T) is the student's distribution and
    q_T ∝ q^(1/T) the teacher's ``teacher`` (B, C, H, W) probabilities at temperature T (softmax(log q / T)); T^2
    keeps the gradient's scale independent of T. Per pixel, q is the teacher's full distribution where the label is
    one class or ignored (a pixel nobody annotated learns from the teacher alone), and the teacher's distribution
    restricted to the admissible set, renormalised, where the label is partial: so that term too gives a positive
    gradient share only to the classes inside the set. A pixel whose teacher channels sum to 0 (crop padding) has
    no target. On a one-hot teacher at T = 1 the term is the cross-entropy -log p_y.

    ``on_labelled`` says which single-class pixels have a target: "all"; "agree", only those whose teacher's
    argmax is the label; or "none". With "agree" a labelled pixel the teacher gets wrong learns from its label
    alone, instead of being pulled toward the teacher's mistake (at the prepared scale the fused teachers call only
    45% of CamVid's pedestrian pixels person/animal); where it agrees, the teacher still passes on its shares of the
    other classes. With "none" every labelled pixel learns from its label alone, and the teacher teaches only what
    nobody labelled. Partial and unannotated pixels keep their target in every mode.
    """
    if teacher.shape != logits.shape:
        raise ValueError(f"teacher of shape {tuple(teacher.shape)} for logits of shape {tuple(logits.shape)}")
    if on_labelled not in ON_LABELLED:
        raise ValueError(f"on_labelled must be one of {', '.join(ON_LABELLED)}, got {on_labelled!r}")
    num_classes = logits.shape[1]
    valid = teacher.sum(1) > 0
    if on_labelled == "agree":
        valid &= (labels >= num_classes) | (teacher.argmax(1) == labels)
    elif on_labelled == "none":
        valid &= labels >= num_classes
    admissible = admissible_mask(labels, num_classes)
    # Partial labels exist for the task's NUM_CLASSES classes only: with more, ids >= PARTIAL_BASE are classes.
    partial = (labels >= PARTIAL_BASE) & (labels != IGNORE_INDEX) & (num_classes == NUM_CLASSES)
    admissible = torch.where(partial[:, None], admissible, torch.ones_like(admissible))
    q = teacher.float() * admissible
    # A partial pixel whose teacher puts no mass inside its set (after rounding) learns the set's uniform share.
    q = torch.where((q.sum(1) == 0)[:, None], admissible.float(), q)
    q_t = (q.log() / temperature).softmax(1)  # q^(1/T) normalised; a class the teacher rules out stays at 0
    log_p = (logits.float() / temperature).log_softmax(1)
    kl = (torch.special.xlogy(q_t, q_t) - q_t * log_p).sum(1)  # (B, H, W)
    return temperature**2 * (kl * valid).sum() / valid.sum().clamp(min=1)
