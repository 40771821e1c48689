"""Converted models reproduce the tensors the ORIGINAL CCLM code produced (`$CCLM_PARITY_DIR/<fixture>/`).

Each fixture holds the original state dict, inputs and outputs (retrieval, classification, retrieval_resize, pretrain,
nlvr, vqa; shapes and counts are read from the fixture's own files). Every key of `outputs.safetensors` is compared:
floats with atol 1e-5 / rtol 1e-4, integers exactly. The models are checked right after conversion and after a
`save_pretrained` / Auto-class round trip, with eager and SDPA attention.
"""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModel, AutoModelForSequenceClassification, AutoModelForVisualQuestionAnswering

from cclm_hf import (
    CCLMAnswerCandidates,
    CCLMForImagesAndTextClassification,
    CCLMForImageTextRetrieval,
    CCLMForPreTraining,
    CCLMForQuestionAnswering,
    CCLMForSequenceClassification,
)
from cclm_hf.conversion import (
    config_from_original,
    convert_original_checkpoint,
    resize_relative_position_bias_table,
)
from cclm_hf.losses import contrastive_loss


ATOL, RTOL = 1e-5, 1e-4

# Outputs that record the original's random draws: the hard negatives come from the original's global RNG, so the
# test feeds them to our model as inputs and checks that the model used exactly those.
INJECTED = {
    "itm_neg_image_idx",
    "itm_neg_text_idx",
    "itm_neg_image_idx_noidx",
    "itm_neg_text_idx_noidx",
}


def load_fixture(parity_dir, name):
    folder = parity_dir / name
    meta = json.loads((folder / "config.json").read_text())
    config = config_from_original(meta["config"], meta["vision_config"], meta["text_config_json"])
    return (
        config,
        load_file(folder / "original_state_dict.safetensors"),
        load_file(folder / "inputs.safetensors"),
        load_file(folder / "outputs.safetensors"),
    )


def assert_all_outputs_match(expected: dict, produced: dict) -> None:
    not_produced = sorted(set(expected) - set(produced))
    assert not not_produced, f"fixture outputs the test does not compare: {not_produced}"
    for key, want in expected.items():
        got = produced[key].detach()
        assert got.shape == want.shape, f"{key}: shape {tuple(got.shape)} != {tuple(want.shape)}"
        if want.is_floating_point():
            torch.testing.assert_close(got.float(), want, atol=ATOL, rtol=RTOL, msg=lambda m, key=key: f"{key}: {m}")
        else:
            assert torch.equal(got.to(want.dtype), want), f"{key}: {got} != {want}"


def all_pairs_itm_logits(model: CCLMForImageTextRetrieval, image_tokens, text_states, text_mask) -> torch.Tensor:
    """`[B_img, B_txt, 2]` matching logits of every (image i, text j) pair."""
    num_images, num_texts = image_tokens.shape[0], text_states.shape[0]
    image_index = torch.arange(num_images).repeat_interleave(num_texts)
    text_index = torch.arange(num_texts).repeat(num_images)
    logits = model.get_itm_logits(image_tokens[image_index], text_states[text_index], text_mask[text_index])
    return logits.view(num_images, num_texts, 2)


def base_outputs(base_model, inputs) -> dict[str, torch.Tensor]:
    vision = base_model.get_image_features(inputs["image"])
    text = base_model.get_text_features(inputs["text_ids"], inputs["text_atts"])
    image_feat = torch.nn.functional.normalize(vision.pooler_output, dim=-1)
    text_feat = torch.nn.functional.normalize(text.pooler_output, dim=-1)
    return {
        "image_embeds": vision.last_hidden_state,
        # the original returns an all-ones mask; ours is implicit, so check its shape = number of image tokens
        "image_atts": torch.ones(vision.last_hidden_state.shape[:2], dtype=torch.long),
        "text_embeds": text.last_hidden_state,
        "image_feat": image_feat,
        "text_feat": text_feat,
        "sim_i2t": image_feat @ text_feat.t(),
        "temp": base_model.temperature,
        "cross_embeds": base_model.fuse_views(
            text.last_hidden_state, inputs["text_atts"], vision.last_hidden_state
        ).last_hidden_state,
    }


def retrieval_outputs(model: CCLMForImageTextRetrieval, inputs, expected) -> dict[str, torch.Tensor]:
    produced = base_outputs(model.cclm, inputs)
    vision = model.cclm.get_image_features(inputs["image"])
    text = model.cclm.get_text_features(inputs["text_ids"], inputs["text_atts"])
    produced["itm_logits_all_pairs"] = all_pairs_itm_logits(
        model, vision.last_hidden_state, text.last_hidden_state, inputs["text_atts"]
    )
    if "loss_itc" not in expected:  # the resize fixture records the encoders only
        return produced
    for suffix, image_ids in (("", inputs["idx"]), ("_noidx", None)):
        out = model(
            inputs["text_ids"],
            inputs["image"],
            inputs["text_atts"],
            return_loss=True,
            image_ids=image_ids,
            negative_image_indices=expected[f"itm_neg_image_idx{suffix}"],
            negative_text_indices=expected[f"itm_neg_text_idx{suffix}"],
        )
        produced[f"loss_itc{suffix}"] = out.itc_loss
        produced[f"loss_itm{suffix}"] = out.itm_loss
        produced[f"itm_logits_for_loss{suffix}"] = torch.cat([out.itm_logits, out.itm_negative_logits])
        produced[f"itm_neg_image_idx{suffix}"] = out.negative_image_indices
        produced[f"itm_neg_text_idx{suffix}"] = out.negative_text_indices
        if suffix == "":
            produced["itc_logits_i2t"] = out.logits_per_image
    return produced


def reload(model, tmp_path, auto_class, attn_implementation=None):
    model.save_pretrained(tmp_path)
    return auto_class.from_pretrained(tmp_path, attn_implementation=attn_implementation).eval()


@pytest.mark.parametrize("attn_implementation", ["eager", "sdpa"])
@pytest.mark.parametrize("reloaded", [False, True], ids=["converted", "reloaded"])
def test_retrieval_parity(parity_dir, tmp_path, attn_implementation, reloaded):
    config, state_dict, inputs, expected = load_fixture(parity_dir, "retrieval")
    config._attn_implementation = attn_implementation
    model, _ = convert_original_checkpoint(state_dict, config, head="retrieval")
    if reloaded:
        model = reload(model, tmp_path, CCLMForImageTextRetrieval, attn_implementation)
    assert model.config.text_config._attn_implementation == attn_implementation
    with torch.no_grad():
        produced = retrieval_outputs(model, inputs, expected)
    assert set(INJECTED) <= set(expected)
    assert_all_outputs_match(expected, produced)


def test_retrieval_base_model_through_automodel(parity_dir, tmp_path):
    config, state_dict, inputs, expected = load_fixture(parity_dir, "retrieval")
    model, _ = convert_original_checkpoint(state_dict, config, head="retrieval")
    base = reload(model, tmp_path, AutoModel)
    assert type(base).__name__ == "CCLMModel"
    with torch.no_grad():
        produced = base_outputs(base, inputs)
        out = base(inputs["text_ids"], inputs["image"], inputs["text_atts"], return_loss=True)
    assert_all_outputs_match({key: expected[key] for key in produced}, produced)
    torch.testing.assert_close(out.logits_per_image, expected["itc_logits_i2t"], atol=ATOL, rtol=RTOL)
    torch.testing.assert_close(out.loss, expected["loss_itc_noidx"], atol=ATOL, rtol=RTOL)


@pytest.mark.parametrize("attn_implementation", ["eager", "sdpa"])
@pytest.mark.parametrize("reloaded", [False, True], ids=["converted", "reloaded"])
def test_classification_parity(parity_dir, tmp_path, attn_implementation, reloaded):
    config, state_dict, inputs, expected = load_fixture(parity_dir, "classification")
    config._attn_implementation = attn_implementation
    model, report = convert_original_checkpoint(state_dict, config, head="classification")
    # the original XVNLI model has no contrastive projections; ours keeps them unused
    unused = ["temperature", "vision_projection.weight", "vision_projection.bias", "text_projection.weight"]
    unused.append("text_projection.bias")
    assert sorted(report.newly_initialized) == sorted(f"cclm.{name}" for name in unused)
    if reloaded:
        model = reload(model, tmp_path, AutoModelForSequenceClassification, attn_implementation)
        assert isinstance(model, CCLMForSequenceClassification)
    assert model.config.text_config._attn_implementation == attn_implementation
    with torch.no_grad():
        image_tokens = model.cclm.get_image_features(inputs["image"]).last_hidden_state
        text_states = model.cclm.get_text_features(inputs["text_ids"], inputs["text_atts"]).last_hidden_state
        out = model(inputs["text_ids"], inputs["image"], inputs["text_atts"], labels=inputs["targets"])
        produced = {
            "image_embeds": image_tokens,
            "text_embeds": text_states,
            "cross_embeds": model.cclm.fuse_views(text_states, inputs["text_atts"], image_tokens).last_hidden_state,
            "logits": out.logits,
            "loss": out.loss,
        }
    assert_all_outputs_match(expected, produced)


def swin_block(model, original_key):
    """The Swin block of our model that an original `vision_encoder.layers.i.blocks.j...` key belongs to."""
    parts = original_key.split(".")
    return model.cclm.vision_model.encoder.layers[int(parts[2])].blocks[int(parts[4])]


@pytest.mark.parametrize("reloaded", [False, True], ids=["converted", "reloaded"])
def test_retrieval_resize_parity(parity_dir, tmp_path, reloaded):
    config, state_dict, inputs, expected = load_fixture(parity_dir, "retrieval_resize")
    assert config.image_size == 80 and config.vision_config.window_size == 5
    model, report = convert_original_checkpoint(state_dict, config, head="retrieval")
    assert len(report.resized) == 4
    if reloaded:
        model = reload(model, tmp_path, CCLMForImageTextRetrieval)
    with torch.no_grad():
        produced = retrieval_outputs(model, inputs, expected)
    stage_sides = {0: 20, 1: 10}  # 80 px / patch 4, then one patch merging
    for key in expected:
        if not key.startswith("vision_encoder."):
            continue
        block = swin_block(model, key)
        window_area = block.window_size**2
        if key.endswith("relative_position_bias_table"):
            produced[key] = block.attention.relative_position_bias.relative_position_bias_table
        elif key.endswith("relative_position_index"):
            produced[key] = block.attention.relative_position_bias.relative_position_index.view(window_area, -1)
        elif key.endswith("attn_mask"):
            side = stage_sides[int(key.split(".")[2])]
            produced[key] = block.get_attn_mask(side, side, dtype=torch.float32, device=torch.device("cpu"))
    for source, target in (("w7", "w7_to_w12"), ("w7", "w7_to_w7"), ("w4", "w4_to_w6")):
        wanted_rows = expected[f"relpos_table_{target}"].shape[0]
        produced[f"relpos_table_{target}"] = resize_relative_position_bias_table(
            inputs[f"relpos_table_{source}"], wanted_rows
        )
    assert_all_outputs_match(expected, produced)


def pretraining_outputs(model: CCLMForPreTraining, inputs, expected) -> dict[str, torch.Tensor]:
    """Everything the `pretrain` fixture records, from the four batch types of the original."""
    produced = {"temp": model.cclm.temperature}
    normalize = torch.nn.functional.normalize

    # image-caption batch with a second caption (ITC averaged over both, TTC between them)
    image = model.cclm.get_image_features(inputs["mm_image"]).last_hidden_state
    text = model.cclm.get_text_features(inputs["mm_text_ids"], inputs["mm_text_atts"]).last_hidden_state
    text_2 = model.cclm.get_text_features(inputs["mm_text_ids_2"], inputs["mm_text_atts_2"]).last_hidden_state
    image_feat = normalize(model.cclm.vision_projection(image[:, 0]), dim=-1)
    text_feat = normalize(model.cclm.text_projection(text[:, 0]), dim=-1)
    text_feat_2 = normalize(model.cclm.text_projection(text_2[:, 0]), dim=-1)
    produced.update(
        mm_image_embeds=image,
        mm_text_embeds=text,
        mm_text_embeds_2=text_2,
        mm_image_feat=image_feat,
        mm_text_feat=text_feat,
        mm_text_feat_2=text_feat_2,
        mm_sim_i2t=image_feat @ text_feat.t(),
        mm_sim_t2t2=text_feat @ text_feat_2.t(),
        mm_itm_logits_all_pairs=all_pairs_itm_logits(model, image, text, inputs["mm_text_atts"]),
        mm_loss_itc_image_text=contrastive_loss(image_feat, text_feat, model.cclm.temperature),
        mm_loss_itc_image_text2=contrastive_loss(image_feat, text_feat_2, model.cclm.temperature),
    )
    out = model(
        inputs["mm_text_ids"],
        inputs["mm_text_atts"],
        masked_input_ids=inputs["mm_text_ids_masked"],
        masked_positions=inputs["mm_masked_pos"],
        masked_labels=inputs["mm_masked_ids"],
        pixel_values=inputs["mm_image"],
        input_ids_2=inputs["mm_text_ids_2"],
        attention_mask_2=inputs["mm_text_atts_2"],
        negative_image_indices=expected["mm_itm_neg_image_idx"],
        negative_text_indices=expected["mm_itm_neg_text_idx"],
    )
    produced.update(
        mm_mlm_logits=out.mlm_logits,
        mm_loss_itc=out.itc_loss,
        mm_loss_itm=out.itm_loss,
        mm_loss_mlm=out.mlm_loss,
        mm_loss_ttc=out.ttc_loss,
        mm_itm_neg_image_idx=out.negative_image_indices,
        mm_itm_neg_text_idx=out.negative_text_indices,
        mm_itm_logits_for_loss=out.itm_logits,
    )
    torch.testing.assert_close(out.loss, out.itc_loss + out.itm_loss + out.mlm_loss + out.ttc_loss)

    # region batch: region-pooled tokens, region cross-attention masks, box regression
    region, whole = model.get_region_features(
        inputs["rg_image"], inputs["rg_idx_to_group_img"], inputs["rg_image_atts"]
    )
    region_text = model.cclm.get_text_features(inputs["rg_text_ids"], inputs["rg_text_atts"]).last_hidden_state
    out = model(
        inputs["rg_text_ids"],
        inputs["rg_text_atts"],
        masked_input_ids=inputs["rg_text_ids_masked"],
        masked_positions=inputs["rg_masked_pos"],
        masked_labels=inputs["rg_masked_ids"],
        pixel_values=inputs["rg_image"],
        image_index=inputs["rg_idx_to_group_img"],
        region_mask=inputs["rg_image_atts"],
        target_boxes=inputs["rg_target_bbox"],
        is_whole_image=inputs["rg_is_image"],
        negative_image_indices=expected["rg_itm_neg_image_idx"],
        negative_text_indices=expected["rg_itm_neg_text_idx"],
    )
    produced.update(
        rg_image_embeds=region,
        rg_image_embeds_fullatts=whole,
        rg_text_embeds=region_text,
        rg_image_feat=normalize(model.cclm.vision_projection(region[:, 0]), dim=-1),
        rg_text_feat=normalize(model.cclm.text_projection(region_text[:, 0]), dim=-1),
        rg_output_coord=out.predicted_boxes,
        rg_loss_itc=out.itc_loss,
        rg_loss_itm=out.itm_loss,
        rg_loss_mlm=out.mlm_loss,
        rg_loss_bbox=out.bbox_loss,
        rg_loss_giou=out.giou_loss,
        rg_itm_neg_image_idx=out.negative_image_indices,
        rg_itm_neg_text_idx=out.negative_text_indices,
        rg_itm_logits_for_loss=out.itm_logits,
    )

    # parallel-text batch: TTC + TTM + MLM conditioned on the translation
    sentence = model.cclm.get_text_features(inputs["pt_text_ids"], inputs["pt_text_atts"]).last_hidden_state
    translation = model.cclm.get_text_features(inputs["pt_text_ids_2"], inputs["pt_text_atts_2"]).last_hidden_state
    out = model(
        inputs["pt_text_ids"],
        inputs["pt_text_atts"],
        masked_input_ids=inputs["pt_text_ids_masked"],
        masked_positions=inputs["pt_masked_pos"],
        masked_labels=inputs["pt_masked_ids"],
        input_ids_2=inputs["pt_text_ids_2"],
        attention_mask_2=inputs["pt_text_atts_2"],
        negative_image_indices=expected["pt_ttm_neg_text_idx"],
        negative_text_indices=expected["pt_ttm_neg_text2_idx"],
    )
    produced.update(
        pt_text_embeds=sentence,
        pt_text_embeds_2=translation,
        pt_text_feat=normalize(model.cclm.text_projection(sentence[:, 0]), dim=-1),
        pt_text_feat_2=normalize(model.cclm.text_projection(translation[:, 0]), dim=-1),
        pt_mlm_logits=out.mlm_logits,
        pt_loss_ttc=out.ttc_loss,
        pt_loss_ttm=out.ttm_loss,
        pt_loss_mlm=out.mlm_loss,
        pt_ttm_neg_text_idx=out.negative_image_indices,
        pt_ttm_neg_text2_idx=out.negative_text_indices,
        pt_ttm_logits_for_loss=out.itm_logits,
    )

    # translation-LM variant: the masked pair is one sequence through all layers, no cross-attention
    out = model(
        inputs["tlm_text_ids"],
        inputs["tlm_text_atts"],
        masked_input_ids=inputs["tlm_text_ids_masked"],
        masked_positions=inputs["tlm_masked_pos"],
        masked_labels=inputs["tlm_masked_ids"],
        masked_attention_mask=inputs["tlm_text_atts_masked"],
        input_ids_2=inputs["tlm_text_ids_2"],
        attention_mask_2=inputs["tlm_text_atts_2"],
    )
    assert out.ttm_loss is None and out.itm_logits is None
    produced.update(tlm_mlm_logits=out.mlm_logits, tlm_loss_ttc=out.ttc_loss, tlm_loss_mlm=out.mlm_loss)
    return produced


@pytest.mark.parametrize("attn_implementation", ["eager", "sdpa"])
@pytest.mark.parametrize("reloaded", [False, True], ids=["converted", "reloaded"])
def test_pretraining_parity(parity_dir, tmp_path, attn_implementation, reloaded):
    config, state_dict, inputs, expected = load_fixture(parity_dir, "pretrain")
    config._attn_implementation = attn_implementation
    model, report = convert_original_checkpoint(state_dict, config, head="pretraining")
    assert sorted(report.dropped_tied) == [
        "text_encoder.cls.predictions.decoder.bias",
        "text_encoder.cls.predictions.decoder.weight",
    ]
    if reloaded:
        model = reload(model, tmp_path, CCLMForPreTraining, attn_implementation)
    assert model.mlm_head.decoder.weight is model.cclm.get_input_embeddings().weight
    with torch.no_grad():
        produced = pretraining_outputs(model, inputs, expected)
    assert_all_outputs_match(expected, produced)


def nlvr_outputs(model, inputs) -> dict[str, torch.Tensor]:
    """The `nlvr` fixture's image rows are [left images of the B pairs; right images]; ours are [B, 2, ...]."""
    images = inputs["image"]
    batch_size = images.shape[0] // 2
    pixel_values = torch.stack([images[:batch_size], images[batch_size:]], dim=1)
    image_tokens = model.cclm.get_image_features(images).last_hidden_state
    text_states = model.cclm.get_text_features(inputs["text_ids"], inputs["text_atts"]).last_hidden_state
    views = [image_tokens[:batch_size], image_tokens[batch_size:]]
    out = model(inputs["text_ids"], pixel_values, inputs["text_atts"], labels=inputs["targets"])
    return {
        "image_embeds": image_tokens,
        "text_embeds": text_states,
        "cross_embeds": model.cclm.fuse_views(text_states, inputs["text_atts"], views).last_hidden_state,
        "logits": out.logits,
        "loss": out.loss,
    }


@pytest.mark.parametrize("attn_implementation", ["eager", "sdpa"])
@pytest.mark.parametrize("reloaded", [False, True], ids=["converted", "reloaded"])
def test_nlvr_parity(parity_dir, tmp_path, attn_implementation, reloaded):
    config, state_dict, inputs, expected = load_fixture(parity_dir, "nlvr")
    config._attn_implementation = attn_implementation
    model, report = convert_original_checkpoint(state_dict, config, head="nlvr")
    assert model.config.images_per_text == 2
    # the original NLVR model has no contrastive projections; ours keeps them unused
    assert {key.split(".")[1] for key in report.newly_initialized} == {
        "temperature",
        "vision_projection",
        "text_projection",
    }
    if reloaded:
        model = reload(model, tmp_path, CCLMForImagesAndTextClassification, attn_implementation)
    layers = model.cclm.fusion_model.layers
    assert layers[1].crossattention.self.key.weight is layers[0].crossattention.self.key.weight
    assert model.config.text_config._attn_implementation == attn_implementation
    with torch.no_grad():
        produced = nlvr_outputs(model, inputs)
    assert_all_outputs_match(expected, produced)


def vqa_outputs(model: CCLMForQuestionAnswering, inputs) -> dict[str, torch.Tensor]:
    question_ids, question_mask = inputs["question_ids"], inputs["question_atts"]
    answer_ids, answer_mask = inputs["answer_list_ids"], inputs["answer_list_atts"]
    question_states = model.encode_question(question_ids, inputs["image"], question_mask)[0]
    num_questions, num_answers = question_ids.shape[0], answer_ids.shape[0]
    start = answer_ids[:1, :1].expand(num_questions, 1)
    start_logits = model.decode_answers(question_states, question_mask, start)[0][:, 0]
    # every (question, answer) pair, teacher-forced
    question_index = torch.arange(num_questions).repeat_interleave(num_answers)
    pair_ids, pair_mask = answer_ids.repeat(num_questions, 1), answer_mask.repeat(num_questions, 1)
    logits = model.decode_answers(question_states[question_index], question_mask[question_index], pair_ids, pair_mask)[
        0
    ]
    nll = CCLMForQuestionAnswering.answer_nll(logits, pair_ids, pair_mask)
    candidates = CCLMAnswerCandidates([str(i) for i in range(num_answers)], answer_ids, answer_mask)
    topk_ids, topk_probs = model.rank_answers(
        question_ids, inputs["image"], question_mask, candidates, k=int(inputs["k_test"])
    )
    train = model(
        question_ids,
        inputs["image"],
        question_mask,
        answer_input_ids=inputs["train_answer_ids"],
        answer_attention_mask=inputs["train_answer_atts"],
        answer_weights=inputs["train_weights"],
        answers_per_question=inputs["train_k"],
    )
    return {
        "image_embeds": model.cclm.get_image_features(inputs["image"]).last_hidden_state,
        "question_states": question_states,
        "start_logits": start_logits,
        "answer_nll_all": nll.view(num_questions, num_answers),
        "answer_decoder_logits_all": logits.view(num_questions, num_answers, *logits.shape[1:]),
        "topk_ids": topk_ids,
        "topk_probs": topk_probs,
        "loss_train": train.loss,
    }


@pytest.mark.parametrize("attn_implementation", ["eager", "sdpa"])
@pytest.mark.parametrize("reloaded", [False, True], ids=["converted", "reloaded"])
def test_vqa_parity(parity_dir, tmp_path, attn_implementation, reloaded):
    config, state_dict, inputs, expected = load_fixture(parity_dir, "vqa")
    config._attn_implementation = attn_implementation
    model, report = convert_original_checkpoint(state_dict, config, head="vqa")
    assert sorted(report.dropped_tied) == [
        "text_decoder.cls.predictions.decoder.bias",
        "text_decoder.cls.predictions.decoder.weight",
    ]
    if reloaded:
        model = reload(model, tmp_path, AutoModelForVisualQuestionAnswering, attn_implementation)
        assert isinstance(model, CCLMForQuestionAnswering)
    assert model.answer_head.decoder.weight is model.answer_embeddings.word_embeddings.weight
    assert model.answer_decoder.config._attn_implementation == attn_implementation
    with torch.no_grad():
        produced = vqa_outputs(model, inputs)
    assert_all_outputs_match(expected, produced)
