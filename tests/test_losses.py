"""Losses against brute-force computations written out element by element."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from cclm_hf.losses import contrastive_loss, gather_features, matching_loss, sample_hard_negatives


def normalized(rows: int, dim: int, seed: int) -> torch.Tensor:
    return F.normalize(
        torch.randn(rows, dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64), dim=-1
    )


def brute_force_contrastive(a, b, temperature, ids=None):
    n = a.shape[0]
    ids = list(range(n)) if ids is None else ids.tolist()
    total = 0.0
    for logits in ((a @ b.t()).tolist(), (b @ a.t()).tolist()):
        for i in range(n):
            log_norm = math.log(sum(math.exp(logits[i][j] / temperature) for j in range(n)))
            positives = [j for j in range(n) if ids[j] == ids[i]]
            total += -sum(logits[i][j] / temperature - log_norm for j in positives) / len(positives) / n
    return total / 2


def test_contrastive_loss_matches_brute_force():
    a, b = normalized(5, 8, 0), normalized(5, 8, 1)
    assert math.isclose(contrastive_loss(a, b, 0.07).item(), brute_force_contrastive(a, b, 0.07), rel_tol=1e-10)
    ids = torch.tensor([3, 7, 7, 1, 3])
    expected = brute_force_contrastive(a, b, 0.5, ids)
    assert math.isclose(contrastive_loss(a, b, 0.5, ids).item(), expected, rel_tol=1e-10)


def test_contrastive_loss_gradient_flows_to_both_sides_and_temperature():
    a, b = normalized(4, 6, 2).requires_grad_(), normalized(4, 6, 3).requires_grad_()
    temperature = torch.tensor(0.1, dtype=torch.float64, requires_grad=True)
    contrastive_loss(a, b, temperature).backward()
    assert all(t.grad is not None and t.grad.abs().sum() > 0 for t in (a, b, temperature))


def test_gather_is_identity_on_one_process():
    x = torch.randn(3, 4)
    assert gather_features(x) is x


def test_hard_negatives_follow_the_softmax_and_skip_positives():
    images, texts = normalized(4, 8, 4), normalized(4, 8, 5)
    ids = torch.tensor([0, 1, 1, 2])
    temperature = 0.5
    generator = torch.Generator().manual_seed(0)
    draws = 2000
    counts_image = torch.zeros(4, 4)  # [text, image]
    counts_text = torch.zeros(4, 4)  # [image, text]
    for _ in range(draws):
        negative_images, negative_texts = sample_hard_negatives(images, texts, temperature, ids, generator)
        counts_image[torch.arange(4), negative_images] += 1
        counts_text[torch.arange(4), negative_texts] += 1
    positives = ids.view(-1, 1) == ids.view(1, -1)
    assert counts_image[positives].sum() == 0 and counts_text[positives].sum() == 0
    # expected probabilities written out: softmax + 1e-5, positives removed, renormalised
    similarity = (images @ texts.t() / temperature).float()
    for counts, logits in ((counts_text, similarity), (counts_image, similarity.t())):
        weights = torch.softmax(logits, dim=1) + 1e-5
        weights[positives] = 0
        probabilities = weights / weights.sum(dim=1, keepdim=True)
        standard_error = (probabilities * (1 - probabilities) / draws).sqrt()
        assert ((counts / draws - probabilities).abs() <= 5 * standard_error + 1e-3).all()


def test_hard_negatives_without_ids_avoid_the_diagonal():
    a, b = normalized(6, 8, 6), normalized(6, 8, 7)
    for seed in range(20):
        neg_a, neg_b = sample_hard_negatives(a, b, 0.07, generator=torch.Generator().manual_seed(seed))
        assert (neg_a != torch.arange(6)).all() and (neg_b != torch.arange(6)).all()


def test_matching_loss_labels_positives_one_and_negatives_zero():
    positives, negatives = torch.randn(3, 2), torch.randn(6, 2)
    expected = -(torch.log_softmax(positives, dim=1)[:, 1].sum() + torch.log_softmax(negatives, dim=1)[:, 0].sum()) / 9
    torch.testing.assert_close(matching_loss(positives, negatives), expected)
