"""CCLMModel and its heads: shapes, configuration rules, attention back-ends, Auto classes, remote code."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import torch
from model_factories import random_batch, tiny_config
from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification, pipeline
from transformers.models.xlm_roberta.modeling_xlm_roberta import XLMRobertaEmbeddings

from cclm_hf import (
    CCLMConfig,
    CCLMForImageTextRetrieval,
    CCLMForSequenceClassification,
    CCLMImageProcessor,
    CCLMModel,
    CCLMProcessor,
    CCLMTextConfig,
)


def test_shapes_and_cross_attention_width():
    config = tiny_config()
    assert config.text_config.cross_attention_hidden_size == 48
    model = CCLMModel(config).eval()
    input_ids, attention_mask, pixel_values = random_batch(config)
    with torch.no_grad():
        image = model.get_image_features(pixel_values)
        text = model.get_text_features(input_ids, attention_mask)
        fused = model.fuse_views(text.last_hidden_state, attention_mask, image.last_hidden_state)
        out = model(input_ids, pixel_values, attention_mask, return_loss=True)
    assert image.last_hidden_state.shape == (3, config.num_image_tokens, 48) == (3, 1 + 4 * 4, 48)
    # the first image token is the mean of the patch tokens
    torch.testing.assert_close(image.last_hidden_state[:, 0], image.last_hidden_state[:, 1:].mean(1))
    assert text.last_hidden_state.shape == (3, 9, 32) and fused.last_hidden_state.shape == (3, 9, 32)
    assert out.logits_per_image.shape == (3, 3) and out.loss.ndim == 0
    torch.testing.assert_close(out.image_embeds.norm(dim=-1), torch.ones(3))
    torch.testing.assert_close(out.logits_per_image, out.image_embeds @ out.text_embeds.t() / 0.07)


def test_sdpa_matches_eager_with_padding_and_partial_cross_mask():
    config = tiny_config()
    torch.manual_seed(0)
    eager = CCLMForImageTextRetrieval(tiny_config()).eval()
    eager.set_attn_implementation("eager")
    sdpa = CCLMForImageTextRetrieval(config).eval()
    sdpa.load_state_dict(eager.state_dict())
    assert sdpa.config.text_config._attn_implementation == "sdpa"
    assert eager.config.text_config._attn_implementation == "eager"
    input_ids, attention_mask, pixel_values = random_batch(config)
    image_mask = torch.ones(3, config.num_image_tokens, dtype=torch.long)
    image_mask[0, 5:] = 0  # e.g. a region: the pooled token and a few patches
    negatives = {"negative_image_indices": torch.tensor([1, 2, 0]), "negative_text_indices": torch.tensor([2, 0, 1])}
    results = []
    for model in (eager, sdpa):
        with torch.no_grad():
            image = model.cclm.get_image_features(pixel_values).last_hidden_state
            text = model.cclm.get_text_features(input_ids, attention_mask).last_hidden_state
            itm_logits = model.get_itm_logits(image, text, attention_mask, image_mask)
            loss = model(input_ids, pixel_values, attention_mask, return_loss=True, **negatives).loss
        results.append((image, text, itm_logits, loss))
    for eager_result, sdpa_result in zip(*results, strict=True):
        torch.testing.assert_close(sdpa_result, eager_result, atol=1e-5, rtol=1e-5)


def test_cross_attention_mask_is_respected():
    """Changing image tokens that the cross mask hides must not change the fused states."""
    config = tiny_config()
    model = CCLMModel(config).eval()
    input_ids, attention_mask, pixel_values = random_batch(config)
    with torch.no_grad():
        image = model.get_image_features(pixel_values).last_hidden_state
        text = model.get_text_features(input_ids, attention_mask).last_hidden_state
        mask = torch.ones(image.shape[:2], dtype=torch.long)
        mask[:, 6:] = 0
        changed = image.clone()
        changed[:, 6:] += 5.0
        first = model.fuse_views(text, attention_mask, image, mask).last_hidden_state
        second = model.fuse_views(text, attention_mask, changed, mask).last_hidden_state
        unmasked = model.fuse_views(text, attention_mask, changed).last_hidden_state
    torch.testing.assert_close(first, second)
    assert not torch.allclose(first, unmasked)


@pytest.mark.parametrize("scheme", ["zero_based", "padding_offset"])
def test_position_id_schemes(scheme):
    config = tiny_config(text_config={**tiny_config().text_config.to_dict(), "position_id_scheme": scheme})
    embeddings = CCLMModel(config).text_model.embeddings
    input_ids = torch.tensor([[0, 7, 8, 2, 1, 1], [0, 9, 2, 1, 1, 1]])
    positions = embeddings.create_position_ids(input_ids)
    if scheme == "zero_based":
        assert positions.tolist() == [[0, 1, 2, 3, 4, 5]] * 2
    else:  # XLM-R's own rule is the reference
        assert torch.equal(positions, XLMRobertaEmbeddings.create_position_ids_from_input_ids(input_ids, 1))
    # position 1 (= pad id) is a trainable position in the zero-based scheme
    assert embeddings.position_embeddings.padding_idx is None


def test_config_validation():
    with pytest.raises(ValueError, match="cross_attention_hidden_size=32 must equal the vision width 48"):
        tiny_config(text_config={**tiny_config().text_config.to_dict(), "cross_attention_hidden_size": 32})
    with pytest.raises(ValueError, match="window_size=8 is larger than the last Swin stage"):
        tiny_config(vision_config={**tiny_config().vision_config.to_dict(), "window_size": 8})
    stale_width = {**tiny_config().vision_config.to_dict(), "embed_dim": 16}  # hidden_size 48 copied along
    with pytest.raises(ValueError, match="vision_config.hidden_size=48 but embed_dim=16 with 2 stages gives 32"):
        tiny_config(vision_config=stale_width)
    with pytest.raises(ValueError, match="num_fusion_layers=5"):
        CCLMTextConfig(num_hidden_layers=4, num_fusion_layers=5)
    with pytest.raises(ValueError, match="preset 'cclm-huge'"):
        CCLMConfig.from_preset("cclm-huge")


@pytest.mark.parametrize("preset, expected_millions", [("cclm-base", 522.3), ("cclm-base-384", 522.4)])
def test_preset_parameter_counts_match_the_original(preset, expected_millions):
    # RetrievalModel sizes computed analytically from the original's shapes (reference dossier, section 1.6)
    with torch.device("meta"):
        model = CCLMForImageTextRetrieval(CCLMConfig.from_preset(preset))
    assert round(sum(p.numel() for p in model.parameters()) / 1e6, 1) == expected_millions


def test_classification_loss_and_labels():
    config = tiny_config()
    model = CCLMForSequenceClassification(config).eval()
    input_ids, attention_mask, pixel_values = random_batch(config)
    labels = torch.tensor([0, 2, 1])
    out = model(input_ids, pixel_values, attention_mask, labels=labels)
    assert out.logits.shape == (3, 3)
    torch.testing.assert_close(out.loss, torch.nn.functional.cross_entropy(out.logits, labels))


def test_retrieval_training_step_with_gradient_checkpointing():
    config = tiny_config()
    model = CCLMForImageTextRetrieval(config).train()
    model.activation_checkpointing_enable()
    input_ids, attention_mask, pixel_values = random_batch(config)
    out = model(input_ids, pixel_values, attention_mask, return_loss=True, image_ids=torch.tensor([0, 1, 1]))
    out.loss.backward()
    # sampled negatives are never positives: texts 1 and 2 share image 1
    for text, image in enumerate(out.negative_image_indices.tolist()):
        assert image != text and {text, image} != {1, 2}
    grads = {name: p.grad for name, p in model.named_parameters()}
    trained = [
        "itm_head.dense_out.weight",
        "cclm.temperature",
        "cclm.fusion_model.layers.0.crossattention.self.key.weight",
        "cclm.vision_model.embeddings.patch_embeddings.projection.weight",
    ]
    for name in trained:
        assert grads[name] is not None and grads[name].abs().sum() > 0, name
    with pytest.raises(ValueError, match="Pass both"):
        model(
            input_ids, pixel_values, attention_mask, return_loss=True, negative_image_indices=torch.tensor([1, 2, 0])
        )


def test_auto_class_round_trip(tmp_path):
    config = tiny_config()
    model = CCLMForSequenceClassification(config).eval()
    model.save_pretrained(tmp_path)
    assert isinstance(AutoConfig.from_pretrained(tmp_path), CCLMConfig)
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    base = AutoModel.from_pretrained(tmp_path).eval()
    assert isinstance(reloaded, CCLMForSequenceClassification) and isinstance(base, CCLMModel)
    input_ids, attention_mask, pixel_values = random_batch(config)
    with torch.no_grad():
        torch.testing.assert_close(
            reloaded(input_ids, pixel_values, attention_mask).logits,
            model(input_ids, pixel_values, attention_mask).logits,
        )
        torch.testing.assert_close(
            base(input_ids, pixel_values, attention_mask).logits_per_image,
            model.cclm(input_ids, pixel_values, attention_mask).logits_per_image,
        )


def test_saved_folder_loads_with_remote_code_without_the_package(tmp_path):
    config = tiny_config()
    model = CCLMForSequenceClassification(config).eval()
    model.save_pretrained(tmp_path / "model")
    input_ids, attention_mask, pixel_values = random_batch(config)
    with torch.no_grad():
        expected = model(input_ids, pixel_values, attention_mask).logits
    batch = {"input_ids": input_ids, "attention_mask": attention_mask, "pixel_values": pixel_values}
    torch.save({**batch, "expected": expected}, tmp_path / "batch.pt")
    script = textwrap.dedent(
        f"""
        import sys
        sys.modules["cclm_hf"] = None  # the package is not installed
        import torch
        from transformers import AutoModelForSequenceClassification
        model = AutoModelForSequenceClassification.from_pretrained({str(tmp_path / "model")!r}, trust_remote_code=True)
        assert not type(model).__module__.startswith("cclm_hf"), type(model).__module__
        batch = torch.load({str(tmp_path / "batch.pt")!r})
        with torch.no_grad():
            logits = model.eval()(batch["input_ids"], batch["pixel_values"], batch["attention_mask"]).logits
        torch.testing.assert_close(logits, batch["expected"])
        print("remote code OK", type(model).__module__)
        """
    )
    env = {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf_home"), "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "remote code OK transformers_modules" in result.stdout


def test_every_saved_head_lists_all_auto_classes_for_remote_code(tmp_path):
    model = CCLMForImageTextRetrieval(tiny_config())
    model.save_pretrained(tmp_path)
    auto_map = json.loads((tmp_path / "config.json").read_text())["auto_map"]
    assert auto_map["AutoModel"] == "modeling_cclm.CCLMModel"
    assert auto_map["AutoModelForZeroShotImageClassification"] == "modeling_cclm.CCLMForImageTextRetrieval"
    assert {"modeling_cclm.py", "configuration_cclm.py", "losses.py"} <= {p.name for p in tmp_path.iterdir()}


def test_zero_shot_image_classification_pipeline(tmp_path, tiny_tokenizer, natural_image):
    config = tiny_config(text_config={**tiny_config().text_config.to_dict(), "vocab_size": len(tiny_tokenizer)})
    CCLMForImageTextRetrieval(config).save_pretrained(tmp_path)
    processor = CCLMProcessor(CCLMImageProcessor(size={"height": 32, "width": 32}), tiny_tokenizer)
    processor.save_pretrained(tmp_path)
    classifier = pipeline("zero-shot-image-classification", model=str(tmp_path))
    assert isinstance(classifier.model, CCLMForImageTextRetrieval)
    image = natural_image(40, 50)
    labels = ["dog", "cat", "boat"]
    result = classifier(image, candidate_labels=labels)

    model = CCLMForImageTextRetrieval.from_pretrained(tmp_path).eval()
    inputs = processor(
        images=image, text=[f"This is a photo of {label}." for label in labels], padding=True, return_tensors="pt"
    )
    with torch.no_grad():
        probabilities = model(**inputs).logits_per_image.softmax(dim=-1)[0]
    assert {entry["label"]: entry["score"] for entry in result} == pytest.approx(
        dict(zip(labels, probabilities.tolist(), strict=True)), abs=1e-5
    )
