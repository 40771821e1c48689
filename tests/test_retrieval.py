"""Two-stage retrieval (contrastive top-k, ITM re-ranking) and recalls against brute-force loops."""

from __future__ import annotations

import torch
from model_factories import random_batch, tiny_config

from cclm_hf import CCLMForImageTextRetrieval
from cclm_hf.retrieval import encode_images, encode_texts, itm_rerank, retrieval_recalls


def brute_force_recalls(image_to_text, text_to_image, text_image_ids):
    metrics = {}
    for n in (1, 5, 10):
        hits = 0
        for image, row in enumerate(image_to_text.tolist()):
            top = sorted(range(len(row)), key=lambda j: -row[j])[:n]
            hits += any(text_image_ids[j] == image for j in top)
        metrics[f"txt_r{n}"] = hits / len(image_to_text)
        hits = 0
        for text, row in enumerate(text_to_image.tolist()):
            top = sorted(range(len(row)), key=lambda j: -row[j])[:n]
            hits += text_image_ids[text] in top
        metrics[f"img_r{n}"] = hits / len(text_to_image)
    return metrics


def test_recalls_match_brute_force():
    generator = torch.Generator().manual_seed(0)
    num_images, num_texts = 12, 30
    text_image_ids = torch.randint(0, num_images, (num_texts,), generator=generator)
    text_image_ids[:num_images] = torch.arange(num_images)  # every image has a caption
    image_to_text = torch.randn(num_images, num_texts, generator=generator)
    text_to_image = torch.randn(num_texts, num_images, generator=generator)
    metrics = retrieval_recalls(image_to_text, text_to_image, text_image_ids)
    expected = brute_force_recalls(image_to_text, text_to_image, text_image_ids.tolist())
    for key, value in expected.items():
        assert abs(metrics[key] - value) < 1e-6, key  # float32 means
    assert abs(metrics["r_mean"] - sum(expected.values()) / 6) < 1e-6


def test_perfect_scores_give_full_recall():
    text_image_ids = torch.tensor([0, 0, 1, 2, 2, 2])
    image_to_text = (text_image_ids[None, :] == torch.arange(3)[:, None]).float()
    metrics = retrieval_recalls(image_to_text, image_to_text.t(), text_image_ids)
    assert metrics["r_mean"] == 1.0


def test_itm_rerank_scores_exactly_the_top_k_candidates():
    config = tiny_config()
    model = CCLMForImageTextRetrieval(config).eval()
    input_ids, attention_mask, pixel_values = random_batch(config, batch_size=5, seed=1)
    images = encode_images(model.cclm, pixel_values, batch_size=2)
    texts = encode_texts(model.cclm, input_ids, attention_mask, batch_size=3)
    image_to_text, text_to_image = itm_rerank(model, images, texts, k=2, batch_size=3)

    similarity = images.embeds @ texts.embeds.t()
    with torch.no_grad():
        for i in range(5):
            for j in range(5):
                expected = model(
                    input_ids[j : j + 1], pixel_values[i : i + 1], attention_mask[j : j + 1], use_itm_head=True
                )
                itm = expected.itm_logits[0, 1]
                in_top_i2t = j in similarity[i].topk(2).indices.tolist()
                in_top_t2i = i in similarity[:, j].topk(2).indices.tolist()
                torch.testing.assert_close(image_to_text[i, j], itm if in_top_i2t else torch.tensor(-100.0))
                torch.testing.assert_close(text_to_image[j, i], itm if in_top_t2i else torch.tensor(-100.0))
