"""Pre-training machinery: step schedule, optimizer groups, initialisation from XLM-R / Swin, the Trainer."""

from __future__ import annotations

import json

import pytest
import torch
from model_factories import tiny_config
from safetensors.torch import load_file
from transformers import SwinConfig, SwinModel, TrainingArguments, XLMRobertaConfig, XLMRobertaForMaskedLM

from cclm_hf import CCLMForPreTraining
from cclm_hf.conversion import config_from_original
from cclm_hf.training import (
    CHECKPOINT_COMPLETE_MARKER,
    CCLMPretrainingTrainer,
    PretrainingSchedule,
    init_text_from_xlm_roberta,
    init_vision_from_swin,
    last_complete_checkpoint,
    pretraining_parameter_groups,
)


def numbered(name: str, count: int | None = None):
    return [{"name": name, "index": i} for i in range(count or 3)]


def take(iterable, count):
    iterator = iter(iterable)
    return [next(iterator) for _ in range(count)]


def test_alternating_schedule_runs_parallel_then_image_or_region():
    schedule = PretrainingSchedule(
        image_batches=numbered("image"),
        region_batches=numbered("region"),
        parallel_batches=numbered("parallel"),
        seed=3,
    )
    items = take(schedule, 400)
    assert [item["step_type"] for item in items[::2]] == ["parallel"] * 200
    main_steps = [item["step_type"] for item in items[1::2]]
    assert set(main_steps) == {"image", "region"}
    assert abs(main_steps.count("region") / 200 - 0.5) < 5 * (0.25 / 200) ** 0.5
    # sources restart when they run out: batch indices cycle
    assert [item["index"] for item in items[::2]][:5] == [0, 1, 2, 0, 1]


def test_step_types_are_the_same_on_every_process_and_depend_on_the_seed():
    def choices(seed):
        schedule = PretrainingSchedule(image_batches=[{}], region_batches=[{}], parallel_batches=[{}], seed=seed)
        return [schedule.step_types(i) for i in range(64)]

    assert choices(1) == choices(1)  # what two processes with the same seed compute independently
    assert choices(1) != choices(2)


def test_summed_schedule_and_errors():
    schedule = PretrainingSchedule(
        image_batches=numbered("image"), parallel_batches=numbered("parallel"), mode="summed"
    )
    item = next(iter(schedule))
    assert item["step_type"] == "summed" and set(item["batches"]) == {"parallel", "image"}
    with pytest.raises(ValueError, match="at least one batch source"):
        PretrainingSchedule()
    with pytest.raises(ValueError, match="the image stream yields no batches"):
        next(iter(PretrainingSchedule(image_batches=[])))
    with pytest.raises(ValueError, match="mode must be"):
        PretrainingSchedule(image_batches=[{}], mode="mixed")


def test_parameter_groups_follow_the_original_rules():
    model = CCLMForPreTraining(tiny_config())
    groups = pretraining_parameter_groups(model, learning_rate=1e-4, weight_decay=0.01)
    setting = {id(p): (group["lr"], group["weight_decay"]) for group in groups for p in group["params"]}
    named = dict(model.named_parameters())

    def of(name):
        return setting[id(named[name])]

    assert sum(len(group["params"]) for group in groups) == len(named)
    assert of("cclm.text_model.layers.0.attention.self.query.weight") == (1e-4, 0.01)
    assert of("cclm.text_model.layers.0.attention.self.query.bias") == (1e-4, 0.0)
    assert of("cclm.text_model.embeddings.LayerNorm.weight") == (1e-4, 0.0)
    table = "cclm.vision_model.encoder.layers.0.blocks.0.attention.relative_position_bias.relative_position_bias_table"
    assert of(table) == (1e-4, 0.0)
    assert of("cclm.vision_model.encoder.layers.0.blocks.0.layernorm_before.weight") == (1e-4, 0.0)
    assert of("cclm.fusion_model.layers.0.crossattention.self.key.weight") == (2e-4, 0.01)
    assert of("cclm.fusion_model.layers.0.attention.self.key.weight") == (1e-4, 0.01)
    # as in the original, the heads' LayerNorm weights and the temperature are decayed
    assert of("itm_head.layer_norm.weight") == (2e-4, 0.01)
    assert of("cclm.temperature") == (2e-4, 0.01)
    assert of("mlm_head.layer_norm.weight") == (1e-4, 0.0)


def test_init_text_from_xlm_roberta_keeps_the_odd_layers():
    config = tiny_config()
    text = config.text_config
    xlmr = XLMRobertaForMaskedLM(
        XLMRobertaConfig(
            vocab_size=text.vocab_size,
            hidden_size=text.hidden_size,
            num_hidden_layers=2 * text.num_hidden_layers,
            num_attention_heads=text.num_attention_heads,
            intermediate_size=text.intermediate_size,
            max_position_embeddings=text.max_position_embeddings,
            type_vocab_size=1,
        )
    )
    model = CCLMForPreTraining(config)
    cross_before = model.cclm.fusion_model.layers[0].crossattention.self.key.weight.clone()
    missing = init_text_from_xlm_roberta(model, xlmr.state_dict())
    source_layers = xlmr.roberta.encoder.layer
    for k in range(text.num_text_layers):
        assert torch.equal(
            model.cclm.text_model.layers[k].output.dense.weight, source_layers[2 * k + 1].output.dense.weight
        )
    fusion = model.cclm.fusion_model.layers[1]
    assert torch.equal(
        fusion.attention.self.value.weight,
        source_layers[2 * (text.num_text_layers + 1) + 1].attention.self.value.weight,
    )
    assert torch.equal(model.cclm.fusion_model.layers[0].crossattention.self.key.weight, cross_before)
    assert torch.equal(model.mlm_head.dense.weight, xlmr.lm_head.dense.weight)
    assert model.mlm_head.decoder.weight is model.cclm.get_input_embeddings().weight
    assert torch.equal(model.mlm_head.decoder.weight, xlmr.roberta.embeddings.word_embeddings.weight)
    assert any("crossattention" in key for key in missing) and not any(".attention.self." in key for key in missing)
    with pytest.raises(ValueError, match="XLM-R has 3 layers"):
        xlmr.roberta.encoder.layer = xlmr.roberta.encoder.layer[:3]
        init_text_from_xlm_roberta(model, xlmr.state_dict())


def test_init_vision_from_a_microsoft_swin_checkpoint_matches_the_original(parity_dir):
    # the original retrieval fixture's vision encoder is a Microsoft-format Swin
    folder = parity_dir / "retrieval"
    meta = json.loads((folder / "config.json").read_text())
    config = config_from_original(meta["config"], meta["vision_config"], meta["text_config_json"])
    state_dict = load_file(folder / "original_state_dict.safetensors")
    swin = {k.removeprefix("vision_encoder."): v for k, v in state_dict.items() if k.startswith("vision_encoder.")}
    model = CCLMForPreTraining(config).eval()
    missing = init_vision_from_swin(model, swin)
    assert not any(key.startswith("cclm.vision_model.") for key in missing)
    expected = load_file(folder / "outputs.safetensors")["image_embeds"]
    with torch.no_grad():
        tokens = model.cclm.get_image_features(load_file(folder / "inputs.safetensors")["image"]).last_hidden_state
    torch.testing.assert_close(tokens, expected, atol=1e-5, rtol=1e-4)


def test_init_vision_from_a_transformers_swin_resizes_the_bias_tables(tmp_path):
    config = tiny_config()  # window 4
    swin = SwinModel(SwinConfig(image_size=32, embed_dim=24, depths=[1, 1], num_heads=[2, 2], window_size=3))
    swin.save_pretrained(tmp_path)
    model = CCLMForPreTraining(config)
    init_vision_from_swin(model, tmp_path)
    block = model.cclm.vision_model.encoder.layers[0].blocks[0]
    assert block.attention.relative_position_bias.relative_position_bias_table.shape == (49, 2)
    torch.testing.assert_close(
        model.cclm.vision_model.encoder.layers[1].blocks[0].mlp.fc1.weight,
        swin.encoder.layers[1].blocks[0].mlp.fc1.weight,
    )


def test_last_complete_checkpoint_ignores_unfinished_ones(tmp_path):
    for step, complete in ((10, True), (20, True), (30, False)):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        if complete:
            (folder / CHECKPOINT_COMPLETE_MARKER).write_text("{}")
    assert last_complete_checkpoint(tmp_path) == str(tmp_path / "checkpoint-20")
    assert last_complete_checkpoint(tmp_path / "missing") is None


def tiny_batches(config, kind: str, seed: int):
    generator = torch.Generator().manual_seed(seed)
    while True:
        input_ids = torch.randint(4, config.text_config.vocab_size - 1, (4, 7), generator=generator)
        input_ids[:, 0], input_ids[:, -1] = 0, 2
        mask = torch.ones_like(input_ids)
        batch = {
            "input_ids": input_ids,
            "attention_mask": mask,
            "masked_input_ids": input_ids.clone(),
            "masked_positions": torch.tensor([[1, 2]] * 4),
            "masked_labels": input_ids[:, 1:3].clone(),
        }
        if kind == "image":
            batch["pixel_values"] = torch.randn(4, 3, 32, 32, generator=generator)
        else:
            batch["input_ids_2"], batch["attention_mask_2"] = input_ids.flip(0), mask
        yield batch


def test_trainer_logs_the_loss_breakdown_and_marks_checkpoints(tmp_path):
    vision = {"image_size": 32, "embed_dim": 16, "depths": [1, 1], "num_heads": [2, 2], "window_size": 4}
    config = tiny_config(vision_config=vision)  # vision width 32 = text width: parallel batches can be fused
    model = CCLMForPreTraining(config)
    schedule = PretrainingSchedule(
        image_batches=tiny_batches(config, "image", 0), parallel_batches=tiny_batches(config, "parallel", 1)
    )
    args = TrainingArguments(
        output_dir=str(tmp_path),
        max_steps=6,
        logging_steps=2,
        save_steps=3,
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
        learning_rate=1e-3,
    )
    trainer = CCLMPretrainingTrainer(model=model, args=args, train_dataset=schedule)
    trainer.train()
    logs = [record for record in trainer.state.log_history if "loss" in record]
    assert {"image/itc_loss", "image/itm_loss", "image/mlm_loss", "parallel/ttc_loss", "parallel/ttm_loss"} <= set(
        logs[0]
    )
    assert logs[-1]["steps/image"] == logs[-1]["steps/parallel"] == 3
    assert (tmp_path / "checkpoint-3" / CHECKPOINT_COMPLETE_MARKER).is_file()
    assert last_complete_checkpoint(tmp_path) == str(tmp_path / "checkpoint-6")
    assert (
        trainer.optimizer.param_groups[0]["lr"] != trainer.optimizer.param_groups[-1]["lr"]
        or len({group["lr"] for group in trainer.optimizer.param_groups}) == 1
    )


def test_parallel_batches_need_equal_text_and_vision_widths():
    model = CCLMForPreTraining(tiny_config())  # text 32, vision 48
    batch = next(tiny_batches(model.config, "parallel", 0))
    with pytest.raises(ValueError, match=r"needs the text width \(32\) to equal the cross-attention input width \(48"):
        model(**batch)


def test_trainer_summed_steps_with_gradient_accumulation(tmp_path):
    vision = {"image_size": 32, "embed_dim": 16, "depths": [1, 1], "num_heads": [2, 2], "window_size": 4}
    config = tiny_config(vision_config=vision)
    schedule = PretrainingSchedule(
        image_batches=tiny_batches(config, "image", 0),
        parallel_batches=tiny_batches(config, "parallel", 1),
        mode="summed",
    )
    args = TrainingArguments(
        output_dir=str(tmp_path),
        max_steps=2,
        gradient_accumulation_steps=2,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
    )
    model = CCLMForPreTraining(config)
    before = model.cclm.fusion_model.layers[0].crossattention.self.key.weight.clone()
    trainer = CCLMPretrainingTrainer(model=model, args=args, train_dataset=schedule)
    trainer.train()
    logs = [record for record in trainer.state.log_history if "loss" in record]
    # each optimizer step accumulates two summed items, each with an image and a parallel-text batch
    assert logs[-1]["steps/summed"] == 4
    assert {"image/itc_loss", "parallel/ttm_loss"} <= set(logs[-1])
    assert not torch.equal(model.cclm.fusion_model.layers[0].crossattention.self.key.weight, before)


@pytest.mark.parametrize("value, clamped", [(1.0, 0.5), (1e-4, 1e-3), (0.07, 0.07)])
def test_pretraining_forward_clamps_the_temperature(value, clamped):
    vision = {"image_size": 32, "embed_dim": 16, "depths": [1, 1], "num_heads": [2, 2], "window_size": 4}
    model = CCLMForPreTraining(tiny_config(vision_config=vision))
    with torch.no_grad():
        model.cclm.temperature.fill_(value)
    model(**next(tiny_batches(model.config, "parallel", 0))).loss.backward()
    assert model.cclm.temperature.item() == pytest.approx(clamped)
    assert model.cclm.temperature.grad is not None
