"""CCLM's training objectives as small pure functions.

Distributed gathering happens in exactly one place, `gather_features`. Every other function works on the tensors it
is given, so it can be tested against a brute-force computation on one process.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torchvision.ops import box_convert, generalized_box_iou_loss


class _AllGatherWithLocalGradient(torch.autograd.Function):
    """All-gather along dim 0 whose backward returns only this rank's slice of the incoming gradient.

    This is the ALBEF / X-VLM / CCLM convention (no cross-rank sum of the contrastive gradient). It is kept so that
    training reproduces the original; every rank computes the full loss, so each one owns the gradient of its slice.
    """

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        world_size = dist.get_world_size()
        ctx.rank = dist.get_rank()
        ctx.local_batch_size = tensor.shape[0]
        gathered = [torch.empty_like(tensor) for _ in range(world_size)]
        dist.all_gather(gathered, tensor.contiguous())
        return torch.cat(gathered, dim=0)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor) -> torch.Tensor:
        start = ctx.rank * ctx.local_batch_size
        return grad_output[start : start + ctx.local_batch_size]


def gather_features(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate `tensor` from every process along dim 0; the identity on a single process.

    All ranks must pass the same batch size. Integer tensors (ids) are gathered without autograd.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return tensor
    if not tensor.is_floating_point():
        gathered = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
        dist.all_gather(gathered, tensor.contiguous())
        return torch.cat(gathered, dim=0)
    return _AllGatherWithLocalGradient.apply(tensor)


def positive_pair_mask(ids: torch.Tensor) -> torch.Tensor:
    """`[N, N]` boolean mask of pairs that share an id (e.g. several captions of one image)."""
    ids = ids.view(-1, 1)
    return ids == ids.t()


def contrastive_loss(
    features_a: torch.Tensor,
    features_b: torch.Tensor,
    temperature: torch.Tensor | float,
    ids: torch.Tensor | None = None,
) -> torch.Tensor:
    """Symmetric InfoNCE between two views (ITC: image/caption, TTC: sentence/translation).

    Args:
        features_a, features_b: `[B, E]` L2-normalised features of this process; row `i` of both is a positive pair.
            They are gathered over all processes, so the logits are `[B * world, B * world]`.
        temperature: logits are `a @ b.T / temperature`.
        ids: optional `[B]` ids; every pair with equal ids is a positive and the target is spread evenly over them.

    Returns:
        `(CE(a->b) + CE(b->a)) / 2`, averaged over the global batch.
    """
    features_a = gather_features(features_a)
    features_b = gather_features(features_b)
    logits = features_a @ features_b.t() / temperature
    if ids is None:
        targets = torch.arange(logits.shape[0], device=logits.device)
        return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.t(), targets)) / 2
    positives = positive_pair_mask(gather_features(ids)).to(logits.dtype)
    targets = positives / positives.sum(dim=1, keepdim=True)
    # the positive mask is symmetric, so the same soft targets serve both directions
    loss_a2b = -(F.log_softmax(logits, dim=1) * targets).sum(dim=1).mean()
    loss_b2a = -(F.log_softmax(logits.t(), dim=1) * targets).sum(dim=1).mean()
    return (loss_a2b + loss_b2a) / 2


@torch.no_grad()
def sample_hard_negatives(
    features_a: torch.Tensor,
    features_b: torch.Tensor,
    temperature: torch.Tensor | float,
    ids: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw one hard negative per row from the local batch, in proportion to the contrastive softmax.

    The original adds 1e-5 to every weight (so a row whose other entries all underflow still samples) and zeroes
    the positives: the diagonal, or every pair sharing an id.

    Returns:
        `(negatives_a_for_b, negatives_b_for_a)`: for each row `j` of `features_b` the index of a negative row of
        `features_a` (for ITM: a negative image per text), and for each row `i` of `features_a` a negative row of
        `features_b` (a negative text per image). Both `[B]` int64.
    """
    similarity = features_a @ features_b.t() / temperature
    weights_a2b = F.softmax(similarity, dim=1) + 1e-5
    weights_b2a = F.softmax(similarity.t(), dim=1) + 1e-5
    if ids is None:
        positives = torch.eye(similarity.shape[0], dtype=torch.bool, device=similarity.device)
    else:
        positives = positive_pair_mask(ids)
    weights_a2b = weights_a2b.masked_fill(positives, 0)
    weights_b2a = weights_b2a.masked_fill(positives, 0)
    negatives_a_for_b = torch.multinomial(weights_b2a, 1, generator=generator).squeeze(1)
    negatives_b_for_a = torch.multinomial(weights_a2b, 1, generator=generator).squeeze(1)
    return negatives_a_for_b, negatives_b_for_a


def matching_loss(positive_logits: torch.Tensor, negative_logits: torch.Tensor) -> torch.Tensor:
    """Two-way cross-entropy of the matching head: positives are class 1, negatives class 0 (ITM / TTM)."""
    logits = torch.cat([positive_logits, negative_logits], dim=0)
    labels = torch.cat(
        [
            torch.ones(positive_logits.shape[0], dtype=torch.long, device=logits.device),
            torch.zeros(negative_logits.shape[0], dtype=torch.long, device=logits.device),
        ]
    )
    return F.cross_entropy(logits, labels)


def masked_lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over the masked slots `[B, M, V]` / `[B, M]`; padded slots carry the label -100."""
    return F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100)


def box_losses(
    predicted: torch.Tensor, target: torch.Tensor, is_whole_image: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """L1 and generalised-IoU losses of `(cx, cy, w, h)` boxes in `[0, 1]`, summed and divided by the region count.

    Rows with `is_whole_image == 1` (captions of the whole image inside a region batch) count in neither sum nor
    divisor. As in the original (X-VLM), if any box is degenerate the GIoU term is zero for the whole batch.
    """
    l1 = F.l1_loss(predicted, target, reduction="none").sum(dim=1)
    predicted_xyxy = box_convert(predicted, "cxcywh", "xyxy")
    target_xyxy = box_convert(target, "cxcywh", "xyxy")
    degenerate = (predicted_xyxy[:, 2:] < predicted_xyxy[:, :2]).any() or (
        target_xyxy[:, 2:] < target_xyxy[:, :2]
    ).any()
    if degenerate:
        giou = torch.zeros_like(l1)
    else:
        giou = generalized_box_iou_loss(predicted_xyxy, target_xyxy, reduction="none")
    if is_whole_image is None:
        num_regions = torch.tensor(float(target.shape[0]), device=target.device)
    else:
        weights = 1 - is_whole_image.to(l1.dtype)
        l1, giou, num_regions = l1 * weights, giou * weights, weights.sum()
    return l1.sum() / num_regions, giou.sum() / num_regions


__all__ = [
    "box_losses",
    "masked_lm_loss",
    "contrastive_loss",
    "gather_features",
    "matching_loss",
    "positive_pair_mask",
    "sample_hard_negatives",
]
