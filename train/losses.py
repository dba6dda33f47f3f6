"""Cross-entropy that also learns from partial labels.

A partial label says only that a pixel belongs to one of a set S of classes ("not a cat" = any class but
person/animal). Such a pixel is trained with the cross-entropy of the merged probability,

    loss = -log sum_{c in S} p_c,

the standard partial-label (or marginal) likelihood: Jin & Ghahramani 2002 for classification, Cour et al. 2011
("Learning from partial labels"); in segmentation, the marginal cross-entropy of Shi et al. 2021 ("Marginal loss
and exclusion loss for partially supervised multi-organ segmentation"). For a single-class pixel, S = {y}, it is
the plain cross-entropy -log p_y; only the classes inside S receive a positive gradient share.
"""

import torch

from train.classes import NUM_CLASSES, admissible_table

_ADMISSIBLE = torch.from_numpy(admissible_table())


def partial_cross_entropy(
    logits: torch.Tensor,
    labels: torch.Tensor,
    weight: torch.Tensor | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """-log sum_{c in S(label)} softmax(logits)_c per pixel; ignore pixels (empty S) are left out.

    ``logits`` (B, C, H, W), ``labels`` (B, H, W) holding task ids, partial label values
    (train.classes.PARTIAL_BASE + bit mask) or IGNORE_INDEX. ``weight`` (C,) weights a single-class pixel of
    class c by weight[c], as ``F.cross_entropy`` does; a partial pixel has weight 1 (the mean weight of a training
    pixel, see train.train.class_weights). ``reduction`` 'mean' is the weighted mean over labelled pixels, as
    ``F.cross_entropy``'s; 'sum' the weighted sum.
    """
    if logits.shape[1] != NUM_CLASSES:
        raise ValueError(f"expected logits of {NUM_CLASSES} classes, got {logits.shape[1]}")
    admissible = _ADMISSIBLE.to(logits.device)[labels.long()].movedim(-1, 1)  # (B, C, H, W)
    labelled = admissible.any(1)
    # Ignored pixels admit every class (a finite loss of 0 whose gradient is 0), then drop out through the weight.
    admissible |= ~labelled[:, None]
    log_p = logits.float().log_softmax(1)
    losses = -torch.logsumexp(log_p.masked_fill(~admissible, float("-inf")), dim=1)  # (B, H, W)
    single = labels < NUM_CLASSES
    pixel_weight = labelled.to(log_p.dtype)
    if weight is not None:
        pixel_weight = torch.where(single, weight.to(log_p)[labels.clamp(max=NUM_CLASSES - 1)], pixel_weight)
    total = (losses * pixel_weight).sum()
    if reduction == "sum":
        return total
    if reduction == "mean":
        return total / pixel_weight.sum()
    raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
