"""How much absolute position a frozen encoder's features hold (Q4): a linear read-out of each token's place.

Islam et al. (ICLR 2020, "How much position information do convolutional neural networks encode?") froze a
network and trained a small read-out to predict a position map from its features; what the read-out recovers is
position the features carry, and zero padding is where a convolutional network gets it. This is the linear form of
that probe: for every stage i, a ridge regression from a token's C_i features to its centre's coordinates (x, y)
in [0, 1], fitted on the tokens of ``fit`` crops and scored on those of other crops as R^2 (1: position read off
exactly; 0: no better than the mean place). A network that knows where it is in the crop scores high; one that
sees only content, low.
"""

from collections.abc import Sequence

import torch

from segformer import IMAGENET_MEAN, IMAGENET_STD, SegFormer
from segformer.predict import normalise

RIDGE = 1e-2  # the regression's L2 penalty per token, on standardised features


def token_coordinates(height: int, width: int) -> torch.Tensor:
    """(height * width, 2) centres of a height x width token grid as (x, y) in [0, 1], row-major."""
    ys = (torch.arange(height, dtype=torch.float64) + 0.5) / height
    xs = (torch.arange(width, dtype=torch.float64) + 0.5) / width
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([grid_x.flatten(), grid_y.flatten()], dim=1)


@torch.inference_mode()
def stage_tokens(model: SegFormer, crops: Sequence[torch.Tensor]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per stage, (features (N, C), coordinates (N, 2)) of every token of every uint8 crop (3, S, S), in float64."""
    model.eval()
    per_stage: list[list[tuple[torch.Tensor, torch.Tensor]]] = [[] for _ in range(4)]
    for crop in crops:
        features, _ = model.encoder(normalise(crop[None], IMAGENET_MEAN, IMAGENET_STD))
        for stage, feature in enumerate(features):
            _, channels, height, width = feature.shape
            tokens = feature[0].reshape(channels, -1).T.double()
            per_stage[stage].append((tokens, token_coordinates(height, width)))
    return [(torch.cat([f for f, _ in parts]), torch.cat([c for _, c in parts])) for parts in per_stage]


def fit_ridge(features: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Ridge regression on standardised features: (mean, std, weights with a bias row) mapping features to targets."""
    mean, std = features.mean(0), features.std(0).clamp(min=1e-8)
    x = torch.cat([(features - mean) / std, torch.ones(len(features), 1, dtype=features.dtype)], dim=1)
    penalty = RIDGE * len(features) * torch.eye(x.shape[1], dtype=x.dtype)
    penalty[-1, -1] = 0  # the bias is not penalised
    weights = torch.linalg.solve(x.T @ x + penalty, x.T @ targets)
    return mean, std, weights


def r_squared(predicted: torch.Tensor, targets: torch.Tensor) -> float:
    """1 - residual / total sum of squares, pooled over the target columns."""
    residual = ((predicted - targets) ** 2).sum()
    total = ((targets - targets.mean(0)) ** 2).sum()
    return (1 - residual / total).item()


def probe(model: SegFormer, fit: Sequence[torch.Tensor], test: Sequence[torch.Tensor]) -> list[float]:
    """R^2 of the linear position read-out at each of the four stages: fitted on ``fit`` crops, scored on ``test``."""
    scores = []
    for (fit_x, fit_y), (test_x, test_y) in zip(stage_tokens(model, fit), stage_tokens(model, test), strict=True):
        mean, std, weights = fit_ridge(fit_x, fit_y)
        x = torch.cat([(test_x - mean) / std, torch.ones(len(test_x), 1, dtype=test_x.dtype)], dim=1)
        scores.append(r_squared(x @ weights, test_y))
    return scores
