"""The two-image (NLVR2 / MaRVL) and question-answering (VQA / xGQA) heads beyond parity: initialisation from
pre-training (original checkpoints and this package's folders), shared key/value weights, answer ranking against a
brute force, losses against a hand computation, strictness of the converter, remote code, the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import torch
from model_factories import random_batch, tiny_config
from safetensors.torch import load_file

from cclm_hf import (
    CCLMAnswerCandidates,
    CCLMForImagesAndTextClassification,
    CCLMForPreTraining,
    CCLMForQuestionAnswering,
    CCLMForSequenceClassification,
)
from cclm_hf.cli import main as cli_main
from cclm_hf.conversion import (
    CheckpointConversionError,
    config_from_original,
    convert_original_checkpoint,
    init_task_model,
)


# vision width 32 = text width 32: the answer decoder can start from the fusion layers' cross-attention
VISION = {"image_size": 32, "embed_dim": 16, "depths": [1, 1], "num_heads": [2, 2], "window_size": 4}


def equal_width_config(**overrides):
    text = {**tiny_config().text_config.to_dict(), "cross_attention_hidden_size": None}
    text.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    config = tiny_config(vision_config={**VISION, "drop_path_rate": 0.0}, text_config=text, **overrides)
    config.num_answer_decoder_layers = 2
    return config


@pytest.fixture(scope="module")
def pretraining_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pretrained")
    torch.manual_seed(0)
    CCLMForPreTraining(equal_width_config()).save_pretrained(folder)
    return folder


def fixture_state(parity_dir, name):
    folder = parity_dir / name
    meta = json.loads((folder / "config.json").read_text())
    config = config_from_original(meta["config"], meta["vision_config"], meta["text_config_json"])
    return config, load_file(folder / "original_state_dict.safetensors")


def two_image_batch(config, batch_size=3):
    input_ids, attention_mask, _ = random_batch(config, batch_size=batch_size)
    pixel_values = torch.randn(batch_size, 2, 3, config.image_size, config.image_size)
    return input_ids, attention_mask, pixel_values


def one_step(model, loss_fn):
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    loss = loss_fn(model)
    loss.backward()
    optimizer.step()
    return loss, before


# ---- NLVR -----------------------------------------------------------------------------------------------------------


def test_nlvr_from_a_pretraining_folder_pairs_the_fusion_layers_and_trains(pretraining_folder, tmp_path):
    source = CCLMForPreTraining.from_pretrained(pretraining_folder)
    model, report = init_task_model(pretraining_folder, "nlvr")
    assert isinstance(model, CCLMForImagesAndTextClassification) and model.config.images_per_text == 2
    assert sorted({key.split(".")[0] for key in report.newly_initialized}) == ["classifier"]
    assert any(key.startswith("mlm_head.") for key in report.dropped_parts)
    fusion = model.cclm.fusion_model.layers
    for j, layer in enumerate(source.cclm.fusion_model.layers):
        for twin in (2 * j, 2 * j + 1):  # both layers of a pair start as the pre-trained layer
            assert torch.equal(fusion[twin].attention.self.query.weight, layer.attention.self.query.weight)
            assert torch.equal(fusion[twin].crossattention.self.key.weight, layer.crossattention.self.key.weight)

    input_ids, attention_mask, pixel_values = two_image_batch(model.config)
    labels = torch.tensor([1, 0, 1])
    loss, before = one_step(model, lambda m: m(input_ids, pixel_values, attention_mask, labels=labels).loss)
    assert torch.isfinite(loss)
    # one parameter per pair, before and after a step, and after saving and reloading
    assert fusion[1].crossattention.self.key.weight is fusion[0].crossattention.self.key.weight
    assert fusion[1].crossattention.self.value.bias is fusion[0].crossattention.self.value.bias
    assert not torch.equal(
        fusion[0].crossattention.self.key.weight, before["cclm.fusion_model.layers.0.crossattention.self.key.weight"]
    )
    assert not torch.equal(fusion[1].attention.self.query.weight, fusion[0].attention.self.query.weight)
    model.save_pretrained(tmp_path)
    saved = load_file(tmp_path / "model.safetensors")
    assert "cclm.fusion_model.layers.0.crossattention.self.key.weight" in saved
    assert "cclm.fusion_model.layers.1.crossattention.self.key.weight" not in saved
    reloaded = CCLMForImagesAndTextClassification.from_pretrained(tmp_path).eval()
    pairs = reloaded.cclm.fusion_model.layers
    assert pairs[1].crossattention.self.key.weight is pairs[0].crossattention.self.key.weight
    with torch.no_grad():
        torch.testing.assert_close(
            reloaded(input_ids, pixel_values, attention_mask).logits,
            model.eval()(input_ids, pixel_values, attention_mask).logits,
        )


def test_nlvr_loss_and_input_checks():
    model = CCLMForImagesAndTextClassification(equal_width_config(images_per_text=2)).eval()
    input_ids, attention_mask, pixel_values = two_image_batch(model.config)
    labels = torch.tensor([1, 0, 0])
    with torch.no_grad():
        out = model(input_ids, pixel_values, attention_mask, labels=labels)
        swapped = model(input_ids, pixel_values.flip(1), attention_mask).logits
    logits = out.logits
    by_hand = -(logits.log_softmax(-1)[torch.arange(3), labels]).mean()
    torch.testing.assert_close(out.loss, by_hand)
    assert not torch.allclose(swapped, logits)  # left and right are attended by different layers
    with pytest.raises(ValueError, match=r"pixel_values must be \[batch, 2, channels, height, width\]"):
        model(input_ids, pixel_values[:, 0], attention_mask)
    with pytest.raises(ValueError, match="set config.images_per_text=2"):
        CCLMForImagesAndTextClassification(equal_width_config())
    with pytest.raises(ValueError, match="fuses 2 images per text: use CCLMForImagesAndTextClassification"):
        CCLMForSequenceClassification(model.config)(input_ids, pixel_values[:, 0], attention_mask)


def test_original_pretraining_checkpoint_converts_to_nlvr_with_duplicated_layers(parity_dir):
    config, state_dict = fixture_state(parity_dir, "pretrain")
    model, report = convert_original_checkpoint(state_dict, config, head="nlvr")
    num_text = config.text_config.num_text_layers
    for j in range(config.text_config.num_fusion_layers):
        original = state_dict[f"text_encoder.bert.encoder.layer.{num_text + j}.crossattention.self.query.weight"]
        for twin in (2 * j, 2 * j + 1):
            layer = model.cclm.fusion_model.layers[twin]
            assert torch.equal(layer.crossattention.self.query.weight, original)
    assert {key.split(".")[0] for key in report.newly_initialized} == {"classifier"}


def test_nlvr_checkpoints_are_converted_strictly(parity_dir):
    config, state_dict = fixture_state(parity_dir, "nlvr")
    num_text = config.text_config.num_text_layers
    key = f"text_encoder.encoder.layer.{num_text + 1}.crossattention.self.key.weight"
    differing = {**state_dict, key: state_dict[key] + 1}
    with pytest.raises(CheckpointConversionError, match=r"crossattention\.self\.key\.weight must equal"):
        convert_original_checkpoint(differing, config, head="nlvr")
    missing = {k: v for k, v in state_dict.items() if not k.startswith(f"text_encoder.encoder.layer.{num_text + 2}.")}
    with pytest.raises(CheckpointConversionError, match="does not provide"):
        convert_original_checkpoint(missing, config, head="nlvr")
    unknown = {**state_dict, "text_encoder.encoder.extra.weight": torch.zeros(1)}
    with pytest.raises(CheckpointConversionError, match=r"does not know: \['text_encoder.encoder.extra.weight'\]"):
        convert_original_checkpoint(unknown, config, head="nlvr")
    misshaped = {**state_dict, "cls_head.3.weight": torch.zeros(3, 2 * config.text_config.hidden_size)}
    with pytest.raises(CheckpointConversionError, match=r"cls_head.3.weight: checkpoint \(3, 128\)"):
        convert_original_checkpoint(misshaped, config, head="nlvr")


def test_nlvr_domain_pretraining_checkpoint_converts_with_a_new_classifier(parity_dir):
    """`NLVRDomainPretrainModel`: the 18-layer stack, `vision_proj` and a 3-way `ta_head` instead of `cls_head`."""
    config, state_dict = fixture_state(parity_dir, "nlvr")
    hidden = config.text_config.hidden_size
    domain = {key: value for key, value in state_dict.items() if not key.startswith("cls_head.")}
    domain["ta_head.weight"], domain["ta_head.bias"] = torch.randn(3, hidden), torch.randn(3)
    domain["vision_proj.weight"], domain["vision_proj.bias"] = torch.randn(32, hidden), torch.randn(32)
    model, report = convert_original_checkpoint(domain, config, head="nlvr")
    assert sorted(report.dropped_parts) == ["ta_head.bias", "ta_head.weight"]
    assert {key.split(".")[0] for key in report.newly_initialized} == {"classifier", "cclm"}
    assert torch.equal(model.cclm.vision_projection.weight, domain["vision_proj.weight"])


# ---- VQA ------------------------------------------------------------------------------------------------------------


def qa_batch(config):
    input_ids, attention_mask, pixel_values = random_batch(config)
    answers = torch.tensor([[0, 5, 6, 2, 1], [0, 7, 2, 1, 1], [0, 8, 9, 10, 2], [0, 11, 2, 1, 1]])
    return {
        "input_ids": input_ids,
        "pixel_values": pixel_values,
        "attention_mask": attention_mask,
        "answer_input_ids": answers,
        "answer_attention_mask": (answers != 1).long(),
        "answer_weights": torch.tensor([0.5, 0.5, 1.0, 1.0]),
        "answers_per_question": torch.tensor([2, 1, 1]),
    }


def test_vqa_from_a_pretraining_folder_copies_the_fusion_layers_and_trains(pretraining_folder):
    source = CCLMForPreTraining.from_pretrained(pretraining_folder)
    model, report = init_task_model(pretraining_folder, "vqa")
    assert isinstance(model, CCLMForQuestionAnswering) and report.newly_initialized == []
    for j in range(model.config.num_answer_decoder_layers):
        decoder, fusion = model.answer_decoder.layers[j], source.cclm.fusion_model.layers[j]
        assert torch.equal(decoder.attention.self.value.weight, fusion.attention.self.value.weight)
        assert torch.equal(decoder.crossattention.self.key.weight, fusion.crossattention.self.key.weight)
    embeddings = source.cclm.text_model.embeddings.word_embeddings.weight
    assert torch.equal(model.answer_embeddings.word_embeddings.weight, embeddings)
    assert model.answer_embeddings.word_embeddings.weight is not model.cclm.get_input_embeddings().weight
    assert torch.equal(model.answer_head.dense.weight, source.mlm_head.dense.weight)
    assert model.answer_head.decoder.weight is model.answer_embeddings.word_embeddings.weight

    loss, _ = one_step(model, lambda m: m(**qa_batch(m.config)).loss)
    assert torch.isfinite(loss)
    assert model.answer_head.decoder.weight is model.answer_embeddings.word_embeddings.weight


def test_original_pretraining_checkpoint_converts_to_vqa(parity_dir):
    config, state_dict = fixture_state(parity_dir, "pretrain")
    config.num_answer_decoder_layers = config.text_config.num_fusion_layers
    model, report = convert_original_checkpoint(state_dict, config, head="vqa")
    num_text = config.text_config.num_text_layers
    for j in range(config.num_answer_decoder_layers):
        original = state_dict[f"text_encoder.bert.encoder.layer.{num_text + j}.intermediate.dense.weight"]
        assert torch.equal(model.answer_decoder.layers[j].intermediate.dense.weight, original)
    bias = state_dict["text_encoder.cls.predictions.bias"]
    assert torch.equal(model.answer_head.bias, bias)
    assert not report.newly_initialized or {key.split(".")[1] for key in report.newly_initialized} <= {
        "temperature",
        "vision_projection",
        "text_projection",
    }


def nll_by_hand(logits, ids, mask):
    """Summed `-log p(token t+1 | <= t)` over the real tokens after the first, one answer at a time."""
    total = []
    for row_logits, row_ids, row_mask in zip(logits, ids, mask, strict=True):
        log_probs = row_logits.log_softmax(-1)
        total.append(-sum(log_probs[t, row_ids[t + 1]] for t in range(len(row_ids) - 1) if row_mask[t + 1]))
    return torch.stack(total)


def test_vqa_loss_matches_a_hand_computation():
    config = equal_width_config()
    model = CCLMForQuestionAnswering(config).eval()
    batch = qa_batch(config)
    with torch.no_grad():
        out = model(**batch)
    nll = nll_by_hand(out.logits, batch["answer_input_ids"], batch["answer_attention_mask"])
    torch.testing.assert_close(out.answer_nll, nll)
    torch.testing.assert_close(out.loss, (batch["answer_weights"] * nll).sum() / 3)
    with pytest.raises(ValueError, match="answers_per_question sums to 3 but 4 answers"):
        model(**{**batch, "answers_per_question": torch.tensor([1, 1, 1])})


def test_rank_answers_matches_scoring_every_candidate_one_by_one():
    config = equal_width_config()
    torch.manual_seed(3)
    model = CCLMForQuestionAnswering(config).eval()
    input_ids, attention_mask, pixel_values = random_batch(config)
    answers = torch.tensor([[0, 5, 6, 2, 1], [0, 7, 2, 1, 1], [0, 8, 9, 10, 2], [0, 11, 2, 1, 1], [0, 12, 13, 2, 1]])
    candidates = CCLMAnswerCandidates([f"a{i}" for i in range(5)], answers, (answers != 1).long())
    k = 3
    with torch.no_grad():
        top_ids, top_probs = model.rank_answers(input_ids, pixel_values, attention_mask, candidates, k=k)
        question_states = model.encode_question(input_ids, pixel_values, attention_mask)[0]
        for q in range(3):
            states, mask = question_states[q : q + 1], attention_mask[q : q + 1]
            first = model.decode_answers(states, mask, answers[:1, :1])[0][0, 0].softmax(-1)
            first_probs = torch.stack([first[answers[a, 1]] for a in range(5)])
            kept = first_probs.argsort(descending=True)[:k]
            scores = []
            for a in kept.tolist():
                ids, answer_mask = answers[a : a + 1], candidates.attention_mask[a : a + 1]
                logits = model.decode_answers(states, mask, ids, answer_mask)[0]
                # the original adds log p(first token) although the NLL already contains it
                scores.append(first_probs[a].log() - nll_by_hand(logits, ids, answer_mask)[0])
            probabilities = torch.stack(scores).softmax(-1)
            order = probabilities.argsort(descending=True)
            assert top_ids[q].tolist() == kept[order].tolist()
            torch.testing.assert_close(top_probs[q], probabilities[order])
    assert model.rank_answers(input_ids, pixel_values, attention_mask, candidates, k=50)[0].shape == (3, 5)


def test_answer_candidates_are_tokenised_once(tiny_tokenizer):
    candidates = CCLMAnswerCandidates.from_answers(tiny_tokenizer, ["yes", "no", "two dogs"])
    assert candidates.input_ids.shape[0] == 3 and candidates.input_ids[:, 0].eq(tiny_tokenizer.bos_token_id).all()
    assert candidates.attention_mask.sum(1).tolist() == [
        len(tiny_tokenizer(answer)["input_ids"]) for answer in ["yes", "no", "two dogs"]
    ]
    with pytest.raises(ValueError, match="empty"):
        CCLMAnswerCandidates.from_answers(tiny_tokenizer, [])


# ---- loading without the package, CLI --------------------------------------------------------------------------------


def test_both_heads_load_with_remote_code_without_the_package(tmp_path):
    nlvr = CCLMForImagesAndTextClassification(equal_width_config(images_per_text=2)).eval()
    vqa = CCLMForQuestionAnswering(equal_width_config()).eval()
    nlvr.save_pretrained(tmp_path / "nlvr")
    vqa.save_pretrained(tmp_path / "vqa")
    input_ids, attention_mask, pixel_values = two_image_batch(nlvr.config)
    batch = qa_batch(vqa.config)
    with torch.no_grad():
        expected_nlvr = nlvr(input_ids, pixel_values, attention_mask).logits
        expected_vqa = vqa(**batch).loss
    torch.save(
        {"nlvr": (input_ids, attention_mask, pixel_values, expected_nlvr), "vqa": (batch, expected_vqa)},
        tmp_path / "batch.pt",
    )
    script = textwrap.dedent(
        f"""
        import sys
        sys.modules["cclm_hf"] = None  # the package is not installed
        import torch
        from transformers import AutoModelForVisualQuestionAnswering
        from transformers.dynamic_module_utils import get_class_from_dynamic_module
        data = torch.load({str(tmp_path / "batch.pt")!r})
        folder = {str(tmp_path)!r}
        vqa = AutoModelForVisualQuestionAnswering.from_pretrained(folder + "/vqa", trust_remote_code=True).eval()
        nlvr_class = get_class_from_dynamic_module(
            "modeling_cclm.CCLMForImagesAndTextClassification", folder + "/nlvr"
        )
        nlvr = nlvr_class.from_pretrained(folder + "/nlvr").eval()
        assert not type(vqa).__module__.startswith("cclm_hf") and not nlvr_class.__module__.startswith("cclm_hf")
        with torch.no_grad():
            ids, mask, pixels, logits = data["nlvr"]
            torch.testing.assert_close(nlvr(ids, pixels, mask).logits, logits)
            batch, loss = data["vqa"]
            torch.testing.assert_close(vqa(**batch).loss, loss)
        print("remote code OK")
        """
    )
    env = {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf_home"), "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "remote code OK" in result.stdout


def test_cli_lists_and_converts_the_new_heads(tmp_path, parity_dir, capsys):
    with pytest.raises(SystemExit):
        cli_main(["convert", "--help"])
    help_text = capsys.readouterr().out
    assert "nlvr" in help_text and "vqa" in help_text
    folder = parity_dir / "vqa"
    meta = json.loads((folder / "config.json").read_text())
    files = {}
    for name, content in (("task.yaml", meta["config"]), ("swin.json", meta["vision_config"])):
        files[name] = tmp_path / name
        files[name].write_text(json.dumps(content))
    (tmp_path / "xlmr").mkdir()
    (tmp_path / "xlmr" / "config.json").write_text(json.dumps(meta["text_config_json"]))
    arguments = ["convert", str(folder / "original_state_dict.safetensors"), str(tmp_path / "out")]
    arguments += ["--original-config", str(files["task.yaml"]), "--vision-config", str(files["swin.json"])]
    arguments += ["--text-config", str(tmp_path / "xlmr"), "--head", "vqa"]
    assert cli_main(arguments) == 0
    model = CCLMForQuestionAnswering.from_pretrained(tmp_path / "out")
    assert model.config.num_answer_decoder_layers == meta["config"]["num_dec_layers"]
    expected = load_file(folder / "outputs.safetensors")["image_embeds"]
    with torch.no_grad():
        tokens = model.cclm.get_image_features(load_file(folder / "inputs.safetensors")["image"]).last_hidden_state
    torch.testing.assert_close(tokens, expected, atol=1e-5, rtol=1e-4)
