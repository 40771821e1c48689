"""ONNX export: the graphs run in onnxruntime with other batch sizes and text lengths than they were exported with,
and give what the PyTorch model (loaded separately, default attention) gives."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime
import pytest
import torch
from model_factories import tiny_config

from cclm_hf import (
    CCLMForImageTextRetrieval,
    CCLMForPreTraining,
    CCLMForSequenceClassification,
    CCLMImageProcessor,
    CCLMModel,
)
from cclm_hf.cli import main as cli_main
from cclm_hf.onnx_export import export_onnx, load_for_export


TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def retrieval_export(tmp_path_factory, tiny_tokenizer):
    from cclm_hf import CCLMProcessor

    tmp_path = tmp_path_factory.mktemp("onnx")
    torch.manual_seed(0)
    config = tiny_config(text_config={**tiny_config().text_config.to_dict(), "vocab_size": len(tiny_tokenizer)})
    model = CCLMForImageTextRetrieval(config).eval()
    model.save_pretrained(tmp_path / "model")
    processor = CCLMProcessor(CCLMImageProcessor(size={"height": 32, "width": 32}), tiny_tokenizer)
    processor.save_pretrained(tmp_path / "model")
    assert cli_main(["export", "onnx", str(tmp_path / "model"), str(tmp_path / "onnx")]) == 0
    return tmp_path / "model", tmp_path / "onnx"


def _session(path):
    return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _texts(vocab_size: int, batch_size: int, length: int, seed: int):
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(4, vocab_size, (batch_size, length), generator=generator)
    input_ids[:, 0] = 0
    attention_mask = torch.ones_like(input_ids)
    attention_mask[0, max(1, length - 3) :] = 0  # padding in the first row
    input_ids[attention_mask == 0] = 1
    return input_ids, attention_mask


@pytest.mark.parametrize("batch_size, length", [(4, 6), (1, 13)])
def test_onnx_graphs_match_pytorch(retrieval_export, batch_size, length):
    folder, onnx_dir = retrieval_export
    model = CCLMForImageTextRetrieval.from_pretrained(folder).eval()  # SDPA: not the eager copy that was exported
    config = model.config
    pixel_values = torch.randn(
        batch_size, 3, config.image_size, config.image_size, generator=torch.Generator().manual_seed(5)
    )
    input_ids, attention_mask = _texts(config.text_config.vocab_size, batch_size, length, seed=6)

    image_embeds, image_tokens = _session(onnx_dir / "image_encoder.onnx").run(
        None, {"pixel_values": pixel_values.numpy()}
    )
    text_embeds, text_states = _session(onnx_dir / "text_encoder.onnx").run(
        None, {"input_ids": input_ids.numpy(), "attention_mask": attention_mask.numpy()}
    )
    (itm_logits,) = _session(onnx_dir / "itm_scorer.onnx").run(
        None, {"image_tokens": image_tokens, "text_states": text_states, "text_attention_mask": attention_mask.numpy()}
    )
    with torch.no_grad():
        outputs = model(
            input_ids=input_ids, pixel_values=pixel_values, attention_mask=attention_mask, use_itm_head=True
        )
        expected_tokens = model.cclm.get_image_features(pixel_values).last_hidden_state
        expected_states = model.cclm.get_text_features(input_ids, attention_mask).last_hidden_state

    differences = {
        "image_embeds": np.abs(image_embeds - outputs.image_embeds.numpy()).max(),
        "image_tokens": np.abs(image_tokens - expected_tokens.numpy()).max(),
        "text_embeds": np.abs(text_embeds - outputs.text_embeds.numpy()).max(),
        "text_states": np.abs(text_states - expected_states.numpy()).max(),
        "itm_logits": np.abs(itm_logits - outputs.itm_logits.numpy()).max(),
    }
    print(f"onnxruntime vs PyTorch, batch {batch_size}, length {length}: max abs diff {differences}")
    assert max(differences.values()) < TOLERANCE, differences
    # normalised embeddings: their products over the temperature are the model's contrastive logits
    np.testing.assert_allclose(np.linalg.norm(image_embeds, axis=-1), 1.0, atol=1e-5)
    similarity = image_embeds @ text_embeds.T / model.cclm.temperature.detach().item()
    np.testing.assert_allclose(similarity, outputs.logits_per_image.numpy(), atol=1e-3, rtol=1e-4)


def test_graphs_have_dynamic_batch_and_sequence_axes_and_a_record(retrieval_export):
    folder, onnx_dir = retrieval_export
    text = _session(onnx_dir / "text_encoder.onnx")
    assert [(node.name, node.shape) for node in text.get_inputs()] == [
        ("input_ids", ["batch", "sequence"]),
        ("attention_mask", ["batch", "sequence"]),
    ]
    image = _session(onnx_dir / "image_encoder.onnx")
    assert image.get_inputs()[0].shape == ["batch", 3, 32, 32]
    assert [node.name for node in image.get_outputs()] == ["image_embeds", "image_tokens"]
    itm = _session(onnx_dir / "itm_scorer.onnx")
    assert [node.name for node in itm.get_inputs()] == ["image_tokens", "text_states", "text_attention_mask"]
    assert itm.get_outputs()[0].shape == ["batch", 2]

    record = json.loads((onnx_dir / "onnx_export.json").read_text())
    assert set(record["graphs"]) == {"image_encoder", "text_encoder", "itm_scorer"}
    assert all(graph["max_abs_diff"] < TOLERANCE for graph in record["graphs"].values())
    assert (onnx_dir / "processor_config.json").is_file() and (onnx_dir / "tokenizer_config.json").is_file()


def test_base_model_exports_the_encoders_only(tmp_path):
    CCLMModel(tiny_config()).save_pretrained(tmp_path / "model")
    export = export_onnx(tmp_path / "model", tmp_path / "onnx", verify=True)
    assert set(export.graphs) == {"image_encoder", "text_encoder"}
    assert not (tmp_path / "onnx" / "itm_scorer.onnx").exists()
    assert all(graph.max_abs_diff < TOLERANCE for graph in export.graphs.values())


def test_classification_folders_are_refused_in_one_line(tmp_path, capsys):
    CCLMForSequenceClassification(tiny_config()).save_pretrained(tmp_path / "model")
    capsys.readouterr()
    assert cli_main(["export", "onnx", str(tmp_path / "model"), str(tmp_path / "onnx")]) == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "CCLMForSequenceClassification is not exported to ONNX" in error
    assert not (tmp_path / "onnx").exists()


def test_pretraining_folders_export_their_encoders_and_matching_head(tmp_path):
    torch.manual_seed(0)
    pretraining = CCLMForPreTraining(tiny_config()).eval()
    pretraining.save_pretrained(tmp_path / "model")
    model = load_for_export(tmp_path / "model")
    assert isinstance(model, CCLMForImageTextRetrieval)
    saved = pretraining.state_dict()
    loaded = model.state_dict()
    assert loaded.keys() <= saved.keys() and any(key.startswith("itm_head.") for key in loaded)
    for key, value in loaded.items():
        torch.testing.assert_close(value, saved[key], rtol=0, atol=0, msg=key)
