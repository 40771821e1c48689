"""The transformers v5 forward contract on every CCLM forward, the configurable fusion stack, the objectives' batch
kinds, the optimizer groups read from the models, and Trainer's loss scaling under gradient accumulation."""

from __future__ import annotations

import re

import pytest
import torch
from datasets import Dataset
from model_factories import random_batch, tiny_config
from transformers import Trainer, TrainingArguments
from transformers.utils import ModelOutput

from cclm_hf import (
    CCLMForImageTextRetrieval,
    CCLMForPreTraining,
    CCLMForSequenceClassification,
    CCLMModel,
)
from cclm_hf.modeling_cclm import CCLMFusionModel
from cclm_hf.training import CCLMPretrainingTrainer, PretrainingSchedule


# text width 32 = vision width 32, so that parallel-text batches can be fused too; no dropout anywhere
VISION = {
    "image_size": 32,
    "embed_dim": 16,
    "depths": [1, 1],
    "num_heads": [2, 2],
    "window_size": 4,
    "drop_path_rate": 0.0,
}


def contract_config(**overrides):
    text = {**tiny_config().text_config.to_dict(), "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}
    text["cross_attention_hidden_size"] = None  # the vision width
    config = tiny_config(vision_config=VISION, text_config=text, **overrides)
    config._attn_implementation = "eager"  # attention maps need the eager path
    return config


def pretraining_batches(config):
    """One batch of each kind, with inputs the collators would produce."""
    input_ids, attention_mask, pixel_values = random_batch(config)
    masked = {
        "masked_input_ids": input_ids.clone(),
        "masked_positions": torch.tensor([[1, 2]] * 3),
        "masked_labels": input_ids[:, 1:3].clone(),
    }
    grid = config.num_image_tokens
    region_mask = torch.ones(3, grid, dtype=torch.long)
    region_mask[1, 3:] = 0
    return {
        "image": {"input_ids": input_ids, "attention_mask": attention_mask, "pixel_values": pixel_values, **masked},
        "region": {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "pixel_values": pixel_values[:2],
            "image_index": torch.tensor([0, 1, 1]),
            "region_mask": region_mask,
            "target_boxes": torch.tensor([[0.5, 0.5, 0.4, 0.4], [0.3, 0.3, 0.2, 0.2], [0.5, 0.5, 1.0, 1.0]]),
            "is_whole_image": torch.tensor([0, 0, 1]),
            **masked,
        },
        "parallel": {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "input_ids_2": input_ids.flip(0),
            "attention_mask_2": attention_mask.flip(0),
            **masked,
        },
    }


def assert_vision_output(output, config, batch_size):
    depths = len(config.vision_config.depths)
    assert len(output.hidden_states) == depths + 1 and len(output.attentions) == depths
    assert output.hidden_states[0].shape[0] == batch_size
    assert output.last_hidden_state.shape == (batch_size, config.num_image_tokens, VISION["embed_dim"] * 2)


def assert_text_output(output, config, batch_size, length):
    text = config.text_config
    heads = text.num_attention_heads
    assert len(output.hidden_states) == text.num_text_layers + 1
    assert all(state.shape == (batch_size, length, text.hidden_size) for state in output.hidden_states)
    assert len(output.attentions) == text.num_text_layers
    assert all(weights.shape == (batch_size, heads, length, length) for weights in output.attentions)
    torch.testing.assert_close(output.hidden_states[-1], output.last_hidden_state)


def assert_fusion_output(output, config, batch_size, length, view_length):
    text = config.text_config
    heads = text.num_attention_heads
    assert len(output.hidden_states) == text.num_fusion_layers + 1
    assert all(state.shape == (batch_size, length, text.hidden_size) for state in output.hidden_states)
    assert len(output.attentions) == len(output.cross_attentions) == text.num_fusion_layers
    assert all(weights.shape == (batch_size, heads, length, length) for weights in output.attentions)
    assert all(weights.shape == (batch_size, heads, length, view_length) for weights in output.cross_attentions)
    # attention maps are distributions over the keys
    torch.testing.assert_close(output.cross_attentions[0].sum(-1), torch.ones(batch_size, heads, length))


def as_nested_tuple(output: ModelOutput) -> tuple:
    return tuple(as_nested_tuple(v) if isinstance(v, ModelOutput) else v for v in output.values())


def assert_same_structure(actual, expected):
    assert type(actual) is tuple and len(actual) == len(expected)
    for got, want in zip(actual, expected, strict=True):
        if isinstance(want, tuple):
            assert_same_structure(got, want)
        elif want is None:
            assert got is None
        else:
            torch.testing.assert_close(got, want)


def head_calls(config):
    """(name, model, call) for every public forward; `call(model, **flags)` runs it on a fixed batch."""
    input_ids, attention_mask, pixel_values = random_batch(config)
    negatives = {"negative_image_indices": torch.tensor([1, 2, 0]), "negative_text_indices": torch.tensor([2, 0, 1])}
    torch.manual_seed(0)
    pretraining = CCLMForPreTraining(config).eval()
    batches = pretraining_batches(config)
    calls = [
        ("base", CCLMModel(config), lambda m, **f: m(input_ids, pixel_values, attention_mask, return_loss=True, **f)),
        (
            "retrieval-itm",
            CCLMForImageTextRetrieval(config),
            lambda m, **f: m(input_ids, pixel_values, attention_mask, use_itm_head=True, **f),
        ),
        (
            "retrieval-loss",
            CCLMForImageTextRetrieval(config),
            lambda m, **f: m(input_ids, pixel_values, attention_mask, return_loss=True, **negatives, **f),
        ),
        (
            "classification",
            CCLMForSequenceClassification(config),
            lambda m, **f: m(input_ids, pixel_values, attention_mask, labels=torch.tensor([0, 2, 1]), **f),
        ),
    ]
    for kind, batch in batches.items():
        calls.append((f"pretraining-{kind}", pretraining, lambda m, b=batch, **f: m(**b, **negatives, **f)))
    return calls


FORWARDS = [
    "base",
    "retrieval-itm",
    "retrieval-loss",
    "classification",
    "pretraining-image",
    "pretraining-region",
    "pretraining-parallel",
]


@pytest.mark.parametrize("name", FORWARDS)
def test_every_forward_returns_hidden_states_attentions_and_tuples(name):
    config = contract_config()
    calls = {call_name: (model, call) for call_name, model, call in head_calls(config)}
    assert list(calls) == FORWARDS
    model, call = calls[name]
    model.eval()
    with torch.no_grad():
        plain = call(model)
        full = call(model, output_hidden_states=True, output_attentions=True)
        as_tuple = call(model, output_hidden_states=True, output_attentions=True, return_dict=False)
    length = 9

    assert plain.text_model_output.hidden_states is None and plain.text_model_output.attentions is None
    assert_text_output(full.text_model_output, config, 3, length)
    if name != "pretraining-parallel":
        images = 2 if name == "pretraining-region" else 3
        assert_vision_output(full.vision_model_output, config, images)
    else:
        assert full.vision_model_output is None
    if name not in ("base",):
        view_length = length if name == "pretraining-parallel" else config.num_image_tokens
        assert_fusion_output(full.fusion_model_output, config, 3, length, view_length)
    # the flags add outputs, they change none
    for key, value in plain.items():
        if isinstance(value, torch.Tensor):
            torch.testing.assert_close(full[key], value, msg=f"{name}: {key}")
    # return_dict=False: the fields in field order (unset ones left out), nested outputs as tuples
    assert list(full.keys()) == [field for field in type(full).__dataclass_fields__ if full.get(field) is not None]
    assert_same_structure(as_tuple, as_nested_tuple(full))


def test_interpolate_pos_encoding_reaches_the_vision_tower(monkeypatch):
    config = contract_config()
    model = CCLMForSequenceClassification(config).eval()
    input_ids, attention_mask, pixel_values = random_batch(config)
    seen = []
    vision_forward = model.cclm.vision_model.forward

    def spy(*args, **kwargs):
        seen.append(kwargs["interpolate_pos_encoding"])
        return vision_forward(*args, **kwargs)

    monkeypatch.setattr(model.cclm.vision_model, "forward", spy)
    with torch.no_grad():
        model(input_ids, pixel_values, attention_mask, interpolate_pos_encoding=True)
        larger = model.cclm.get_image_features(torch.randn(1, 3, 64, 64), interpolate_pos_encoding=True)
    assert seen == [True, True]
    assert larger.last_hidden_state.shape == (1, 1 + 8 * 8, 32)  # twice the side, four times the tokens


def test_each_tower_resolves_its_attention_implementation():
    config = tiny_config()
    model = CCLMForImageTextRetrieval(config)
    towers = (model.cclm.vision_model, model.cclm.text_model, model.cclm.fusion_model)
    assert {tower.config._attn_implementation for tower in towers} == {"sdpa"}
    model.set_attn_implementation("eager")
    assert {tower.config._attn_implementation for tower in towers} == {"eager"}


def test_fusion_stack_with_two_views_and_precomputed_keys_and_values():
    config = contract_config().text_config
    torch.manual_seed(0)
    single = CCLMFusionModel(config, num_layers=4).eval()
    paired = CCLMFusionModel(config, num_layers=4, layer_views=(0, 1, 0, 1)).eval()
    paired.load_state_dict(single.state_dict())
    text = torch.randn(2, 5, config.hidden_size)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    view_a = torch.randn(2, 7, config.cross_attention_hidden_size)
    view_b = torch.randn(2, 7, config.cross_attention_hidden_size)
    with torch.no_grad():
        # the same view twice is the single-view stack
        torch.testing.assert_close(
            paired(text, mask, [view_a, view_a]).last_hidden_state, single(text, mask, view_a).last_hidden_state
        )
        # layer k attends to view layer_views[k]: by hand, one layer at a time
        expected = text
        self_mask = paired._self_attention_mask(text, mask)
        for layer, view in zip(paired.layers, (view_a, view_b, view_a, view_b), strict=True):
            expected = layer(expected, self_mask, view, None)
        torch.testing.assert_close(paired(text, mask, [view_a, view_b]).last_hidden_state, expected)
        # keys/values of each image computed once and indexed for its texts equal the plain path
        views = torch.randn(3, 7, config.cross_attention_hidden_size)
        view_mask = torch.ones(3, 7, dtype=torch.long)
        view_mask[2, 4:] = 0
        rows = torch.tensor([2, 0])
        key_values = [(k[rows], v[rows]) for k, v in single.precompute_cross_attention(views)]
        torch.testing.assert_close(
            single(text, mask, None, view_mask[rows], cross_attention_key_values=key_values).last_hidden_state,
            single(text, mask, views[rows], view_mask[rows]).last_hidden_state,
        )


def test_causal_fusion_stack_does_not_look_ahead():
    config = contract_config().text_config
    for implementation in ("eager", "sdpa"):
        config._attn_implementation = implementation
        decoder = CCLMFusionModel(config, num_layers=2, is_causal=True).eval()
        text = torch.randn(2, 6, config.hidden_size)
        changed = text.clone()
        changed[:, 4:] += 3.0
        view = torch.randn(2, 5, config.cross_attention_hidden_size)
        mask = torch.ones(2, 6, dtype=torch.long)
        with torch.no_grad():
            first = decoder(text, mask, view).last_hidden_state
            second = decoder(changed, mask, view).last_hidden_state
        torch.testing.assert_close(first[:, :4], second[:, :4])
        assert not torch.allclose(first[:, 4:], second[:, 4:])


def test_batch_kind_is_explicit_or_inferred():
    config = contract_config()
    model = CCLMForPreTraining(config).eval()
    batches = pretraining_batches(config)
    assert CCLMForPreTraining.infer_batch_kind(
        batches["region"]["pixel_values"], batches["region"]["region_mask"]
    ) == ("region")
    with torch.no_grad():
        region = model(**batches["region"], batch_kind="region")
        assert region.bbox_loss is not None and region.ttm_loss is None
        with pytest.raises(ValueError, match="batch_kind must be one of"):
            model(**batches["image"], batch_kind="video")
        with pytest.raises(ValueError, match="A parallel-text batch has input_ids_2"):
            model(**batches["image"], batch_kind="parallel")
        with pytest.raises(ValueError, match="A region batch needs pixel_values and image_index / region_mask"):
            model(**batches["image"], batch_kind="region")


def test_pretraining_image_ids_make_duplicates_positives():
    config = contract_config()
    model = CCLMForPreTraining(config).eval()
    batch = pretraining_batches(config)["image"]
    image_ids = torch.tensor([0, 1, 1])
    with torch.no_grad():
        out = model(**batch, image_ids=image_ids)
    # texts 1 and 2 describe the same image: neither is drawn as the other's negative
    for text, image in enumerate(out.negative_image_indices.tolist()):
        assert image != text and {text, image} != {1, 2}


def original_skips_weight_decay(name: str) -> bool:
    """The original's substring rule, on the original name of each parameter where the norms are named differently
    (Swin's `norm1`/`norm2`, the MLP heads' `nn.Sequential` index 1)."""
    original = name.replace("layernorm_before", "norm1").replace("layernorm_after", "norm2")
    original = re.sub(r"^(itm_head|bbox_head|classifier)\.layer_norm\.", r"\1.1.", original)
    return any(part in original for part in ("bias", "LayerNorm.", "norm.", "norm1.", "norm2."))


def test_no_weight_decay_follows_the_original_rule_and_heads_name_their_new_parameters():
    model = CCLMForPreTraining(tiny_config())
    names = dict(model.named_parameters())
    assert model.no_weight_decay() == {name for name in names if original_skips_weight_decay(name)}
    assert "cclm.temperature" not in model.no_weight_decay()
    new = model.new_parameters()
    assert {name for name in new if not name.startswith("cclm.fusion_model.")} == {
        name
        for name in names
        if name.startswith(("itm_head.", "bbox_head.", "cclm.vision_projection.", "cclm.text_projection."))
        or name == "cclm.temperature"
    }
    assert all(".crossattention." in name for name in new if name.startswith("cclm.fusion_model."))
    classifier = CCLMForSequenceClassification(tiny_config())
    assert classifier.new_parameters() == {name for name, _ in classifier.named_parameters() if "classifier." in name}
    assert CCLMForImageTextRetrieval(tiny_config()).new_parameters() == set()


def classification_dataset(config, size=4):
    generator = torch.Generator().manual_seed(1)
    input_ids = torch.randint(4, config.text_config.vocab_size, (size, 7), generator=generator)
    rows = {
        "input_ids": input_ids,
        "attention_mask": torch.ones_like(input_ids),
        "pixel_values": torch.randn(size, 3, 32, 32, generator=generator),
        "labels": torch.tensor([0, 1, 2, 1][:size]),
    }
    return Dataset.from_dict({key: value.tolist() for key, value in rows.items()}).with_format("torch")


def test_gradient_accumulation_two_equals_a_batch_twice_as_large(tmp_path):
    """Trainer must divide our mean losses by the accumulation steps (`accepts_loss_kwargs = False`)."""

    def train(batch_size, steps):
        torch.manual_seed(0)
        model = CCLMForSequenceClassification(contract_config())
        args = TrainingArguments(
            output_dir=str(tmp_path / f"run{batch_size}"),
            per_device_train_batch_size=batch_size,
            gradient_accumulation_steps=steps,
            max_steps=1,
            optim="sgd",  # the update is proportional to the gradient (Adam's first step is about its sign)
            learning_rate=1.0,
            max_grad_norm=0.0,
            lr_scheduler_type="constant",
            report_to=[],
            use_cpu=True,
            save_strategy="no",
            disable_tqdm=True,
            dataloader_drop_last=True,
        )
        trainer = Trainer(model=model, args=args, train_dataset=classification_dataset(model.config))
        assert trainer.model_accepts_loss_kwargs is False
        trainer.train()
        return model

    accumulated = train(batch_size=2, steps=2)
    single = train(batch_size=4, steps=1)
    for (name, got), want in zip(accumulated.named_parameters(), single.parameters(), strict=True):
        torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-5, msg=name)


def test_pretraining_trainer_keeps_dividing_by_the_accumulation_steps(tmp_path):
    model = CCLMForPreTraining(contract_config())
    schedule = PretrainingSchedule(image_batches=[pretraining_batches(model.config)["image"]])
    args = TrainingArguments(output_dir=str(tmp_path), max_steps=1, report_to=[], use_cpu=True)
    assert CCLMPretrainingTrainer(model=model, args=args, train_dataset=schedule).model_accepts_loss_kwargs is False
