"""Two-stage retrieval (contrastive top-k, ITM re-ranking) and recalls against brute-force loops."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from model_factories import random_batch, tiny_config

from cclm_hf import CCLMForImageTextRetrieval
from cclm_hf.evaluation import retrieval_metrics
from cclm_hf.retrieval import EncodedTexts, encode_images, encode_texts, itm_rerank, itm_scores


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
    metrics = retrieval_metrics(image_to_text, text_to_image, text_image_ids)
    expected = brute_force_recalls(image_to_text, text_to_image, text_image_ids.tolist())
    for key, value in expected.items():
        assert abs(metrics[key] - value) < 1e-6, key  # float32 means
    assert abs(metrics["r_mean"] - sum(expected.values()) / 6) < 1e-6


def test_perfect_scores_give_full_recall():
    text_image_ids = torch.tensor([0, 0, 1, 2, 2, 2])
    image_to_text = (text_image_ids[None, :] == torch.arange(3)[:, None]).float()
    metrics = retrieval_metrics(image_to_text, image_to_text.t(), text_image_ids)
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


# ---------------------------------------------------------------------------------------------------------------------
# the re-ranker that does no repeated work
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("attn_implementation", ["eager", "sdpa"])
def test_precomputed_cross_attention_equals_the_plain_path(attn_implementation):
    model = CCLMForImageTextRetrieval(tiny_config()).eval()
    model.set_attn_implementation(attn_implementation)
    input_ids, attention_mask, pixel_values = random_batch(tiny_config(), batch_size=5, seed=3)
    image_of_text = torch.tensor([0, 2, 2, 1, 0])
    with torch.no_grad():
        views = model.cclm.get_image_features(pixel_values[:3]).last_hidden_state  # [3, Lv, Dv]
        texts = model.cclm.get_text_features(input_ids, attention_mask).last_hidden_state
        key_values = model.cclm.precompute_cross_attention(views)
        config = model.config.text_config
        assert len(key_values) == config.num_fusion_layers
        head_dim = config.hidden_size // config.num_attention_heads
        for key, value in key_values:
            assert key.shape == value.shape == (3, config.num_attention_heads, views.shape[1], head_dim)
        expanded = tuple((key[image_of_text], value[image_of_text]) for key, value in key_values)
        view_mask = torch.ones(3, views.shape[1], dtype=torch.long)
        view_mask[1, 4:] = 0  # a region-style partial mask of one view
        for mask in (None, view_mask[image_of_text]):
            plain = model.cclm.fuse_views(texts, attention_mask, views[image_of_text], mask).last_hidden_state
            reused = model.cclm.fuse_views(texts, attention_mask, None, mask, cross_attention_key_values=expanded)
            torch.testing.assert_close(reused.last_hidden_state, plain, atol=1e-6, rtol=0)


def load_benchmark_baseline():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "rerank.py"
    spec = importlib.util.spec_from_file_location("rerank_benchmark", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.baseline_itm_rerank


def test_itm_rerank_equals_the_per_pair_reranker():
    """Same scores (<= 1e-5) and the same -100 pattern as the previous `itm_rerank`, kept as the benchmark baseline."""
    config = tiny_config()
    model = CCLMForImageTextRetrieval(config).eval()
    with torch.no_grad():
        model.itm_head.dense_out.weight.mul_(20)  # logits of a realistic spread
    input_ids, attention_mask, pixel_values = random_batch(config, batch_size=9, length=12, seed=4)
    attention_mask[3:, 6:] = 0  # texts of several lengths
    attention_mask[6:, 4:] = 0
    images = encode_images(model.cclm, pixel_values[:6])
    texts = encode_texts(model.cclm, input_ids, attention_mask)
    baseline_itm_rerank = load_benchmark_baseline()
    for k, batch_size in ((3, 5), (4, 128), (20, 7)):  # k beyond the number of images and of texts
        new = itm_rerank(model, images, texts, k=k, batch_size=batch_size)
        old = baseline_itm_rerank(model, images, texts, k=k, batch_size=batch_size)
        for new_scores, old_scores in zip(new, old, strict=True):
            assert new_scores.shape == old_scores.shape
            assert torch.equal(new_scores == -100, old_scores == -100)
            assert (new_scores - old_scores).abs().max() <= 1e-5


def test_itm_scores_fuse_each_pair_once_and_project_each_image_once(monkeypatch):
    config = tiny_config()
    model = CCLMForImageTextRetrieval(config).eval()
    input_ids, attention_mask, pixel_values = random_batch(config, batch_size=8, seed=5)
    for text, length in enumerate([7, 5, 7, 3, 4, 6, 3, 7]):  # no text uses the last two columns
        attention_mask[text, length:] = 0
    images = encode_images(model.cclm, pixel_values[:4])
    texts = encode_texts(model.cclm, input_ids, attention_mask)
    projected_rows, fused_rows, fused_columns = [], [], []
    precompute, fuse = model.cclm.precompute_cross_attention, model.cclm.fuse_views

    def counting_precompute(view):
        projected_rows.append(len(view))
        return precompute(view)

    def counting_fuse(states, mask, *args, **kwargs):
        fused_rows.append(len(states))
        fused_columns.append(states.shape[1])
        return fuse(states, mask, *args, **kwargs)

    monkeypatch.setattr(model.cclm, "precompute_cross_attention", counting_precompute)
    monkeypatch.setattr(model.cclm, "fuse_views", counting_fuse)
    image_to_text, text_to_image = itm_rerank(model, images, texts, k=3, batch_size=1000)
    candidates = (image_to_text != -100) | (text_to_image != -100).t()
    assert (
        sum(fused_rows) == int(candidates.sum()) < int((image_to_text != -100).sum() + (text_to_image != -100).sum())
    )
    assert projected_rows == [4]  # one chunk: each image's keys/values once
    assert max(fused_columns) == 7 and min(fused_columns) < 7  # texts fused in groups of similar length

    # the chunk size bounds the rows gathered at once; the scores do not depend on it
    image_index = torch.tensor([3, 0, 3, 1, 0, 2, 3])
    text_index = torch.tensor([0, 1, 2, 3, 4, 5, 6])
    fused_rows.clear()
    small_chunks = itm_scores(model, images, texts, image_index, text_index, chunk_size=2)
    assert max(fused_rows) <= 2
    torch.testing.assert_close(small_chunks, itm_scores(model, images, texts, image_index, text_index, chunk_size=64))


def test_itm_scores_read_rows_from_any_row_store():
    """The gallery may be memory-mapped shards: only `store[rows]` is used."""

    class RowsOnly:
        def __init__(self, tensor):
            self.tensor = tensor

        def __getitem__(self, rows):
            return self.tensor[rows]

    config = tiny_config()
    model = CCLMForImageTextRetrieval(config).eval()
    input_ids, attention_mask, pixel_values = random_batch(config, batch_size=4, seed=6)
    images = encode_images(model.cclm, pixel_values)
    texts = encode_texts(model.cclm, input_ids, attention_mask)
    rows_only = EncodedTexts(RowsOnly(texts.states), RowsOnly(texts.attention_mask), texts.embeds)
    image_index, text_index = torch.tensor([0, 1, 1, 3]), torch.tensor([2, 2, 0, 1])
    torch.testing.assert_close(
        itm_scores(model, images, rows_only, image_index, text_index),
        itm_scores(model, images, texts, image_index, text_index),
    )
