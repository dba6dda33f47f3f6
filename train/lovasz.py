"""The Lovász-softmax loss (Berman, Rannen Triki and Blaschko, CVPR 2018), a surrogate of the mean IoU.

For class c, let m_i = |[y_i = c] - p_i(c)| be pixel i's error (p_i(c) its softmax probability) and
Delta_c(M) = 1 - |{y = c} minus M| / |{y = c} union M| the Jaccard loss of mispredicting the pixels in M
(1 - IoU of class c). The Lovász extension of Delta_c (the paper's Definition 2), a convex, piecewise-linear function
that equals Delta_c at every binary error vector (the indicator of M), is

    loss_c(m) = sum_k m_(k) * (Delta_c({1..k}) - Delta_c({1..k-1})),

with the errors sorted in decreasing order (m_(1) >= m_(2) >= ...) and {1..k} the pixels of the k largest. The loss
is its mean over the classes present in the labels, as the reference code's default (``classes='present'``), over
all the pixels of a batch together (its ``per_image=False``). For confident predictions (one-hot probabilities) it
is exactly 1 - the batch's mean IoU over those classes.

Only single-class pixels count: IGNORE_INDEX and partial labels (values >= C, ``task.classes``) are left out, since
a pixel that is "one of several classes" belongs to no class's ground-truth set. Any number of classes C is taken;
partial labels only with the task's (train.losses.check_labels).
"""

import torch
import torch.nn.functional as F

from train.losses import check_labels


def jaccard_steps(foreground: torch.Tensor) -> torch.Tensor:
    """Delta({1..k}) - Delta({1..k-1}) for k = 1..N, per column of ``foreground`` (N, classes): the ground truth of
    the pixels in decreasing order of their errors (g_k of Berman et al.'s Definition 2)."""
    total = foreground.sum(0)
    intersection = total - foreground.cumsum(0)
    union = total + (1 - foreground).cumsum(0)
    jaccard = 1 - intersection / union
    return torch.cat([jaccard[:1], jaccard[1:] - jaccard[:-1]])


def lovasz_softmax(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Lovász-softmax loss of ``logits`` (B, C, H, W) against ``labels`` (B, H, W), a scalar in [0, 1].

    ``labels`` hold task ids, partial label values or IGNORE_INDEX; only task ids count (see the module docstring).
    Computed in float32 on the softmax of the logits. With no labelled pixel it is 0 (with a zero gradient).
    """
    num_classes = logits.shape[1]
    if logits.shape[-2:] != labels.shape[-2:]:
        raise ValueError(f"logits of size {tuple(logits.shape[-2:])} for labels of size {tuple(labels.shape[-2:])}")
    check_labels(labels, num_classes)
    probs = logits.float().softmax(1).movedim(1, -1).reshape(-1, num_classes)
    labels = labels.reshape(-1).long()
    single = labels < num_classes
    probs, labels = probs[single], labels[single]
    present = labels.unique()
    if present.numel() == 0:
        return probs.sum() * 0.0
    foreground = F.one_hot(labels, num_classes).to(probs.dtype)[:, present]
    errors, order = (foreground - probs[:, present]).abs().sort(0, descending=True)
    return (errors * jaccard_steps(foreground.gather(0, order))).sum(0).mean()
