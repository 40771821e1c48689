"""The converter: strictness, safe loading, original config files, the CLI."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys

import pytest
import torch
import yaml
from huggingface_hub import ModelCard
from safetensors.torch import load_file, save_file
from transformers import AutoModelForSequenceClassification, AutoProcessor

from cclm_hf import CCLMConfig, CCLMForImageTextRetrieval, CCLMProcessor
from cclm_hf.cli import main as cli_main
from cclm_hf.conversion import (
    CheckpointConversionError,
    config_from_original,
    convert_original_checkpoint,
    load_original_state_dict,
    with_image_size,
)


@pytest.fixture(scope="module")
def retrieval_fixture(parity_dir):
    folder = parity_dir / "retrieval"
    meta = json.loads((folder / "config.json").read_text())
    config = config_from_original(meta["config"], meta["vision_config"], meta["text_config_json"])
    return meta, config, load_file(folder / "original_state_dict.safetensors")


def as_pretraining_checkpoint(state_dict: dict[str, torch.Tensor], vocab_size: int) -> dict[str, torch.Tensor]:
    """The retrieval fixture laid out like a pre-training checkpoint: `bert.` level, MLM head (tied), box head."""
    out = {}
    for key, tensor in state_dict.items():
        out[key.replace("text_encoder.", "text_encoder.bert.", 1) if key.startswith("text_encoder.") else key] = tensor
    hidden = out["text_encoder.bert.embeddings.word_embeddings.weight"].shape[1]
    out["text_encoder.cls.predictions.bias"] = torch.randn(vocab_size)
    out["text_encoder.cls.predictions.decoder.bias"] = out["text_encoder.cls.predictions.bias"].clone()
    out["text_encoder.cls.predictions.decoder.weight"] = out["text_encoder.bert.embeddings.word_embeddings.weight"]
    out["text_encoder.cls.predictions.transform.dense.weight"] = torch.randn(hidden, hidden)
    out["text_encoder.cls.predictions.transform.dense.bias"] = torch.randn(hidden)
    out["text_encoder.cls.predictions.transform.LayerNorm.weight"] = torch.randn(hidden)
    out["text_encoder.cls.predictions.transform.LayerNorm.bias"] = torch.randn(hidden)
    for index, shape in (("0", (2 * hidden, hidden)), ("1", (2 * hidden,)), ("3", (4, 2 * hidden))):
        out[f"bbox_head.{index}.weight"] = torch.randn(shape)
    return out


def test_pretraining_layout_converts_to_the_same_model(retrieval_fixture, parity_dir):
    _, config, state_dict = retrieval_fixture
    pretraining = as_pretraining_checkpoint(state_dict, config.text_config.vocab_size)
    model, report = convert_original_checkpoint(pretraining, config, head="retrieval")
    reference, _ = convert_original_checkpoint(state_dict, config, head="retrieval")
    assert any(key.startswith("bbox_head.") for key in report.dropped_parts)
    assert any(key.startswith("text_encoder.cls.") for key in report.dropped_parts)
    for key, tensor in reference.state_dict().items():
        assert torch.equal(model.state_dict()[key], tensor), key


def test_pretraining_checkpoint_into_classification_initialises_the_classifier(retrieval_fixture):
    _, config, state_dict = retrieval_fixture
    config = CCLMConfig.from_dict({**config.to_dict(), "num_labels": 3})
    model, report = convert_original_checkpoint(state_dict, config, head="classification")
    assert sorted(report.newly_initialized) == sorted(
        f"classifier.{part}.{param}"
        for part in ("dense_in", "layer_norm", "dense_out")
        for param in ("weight", "bias")
    )
    assert any(key.startswith("itm_head.") for key in report.dropped_parts)
    assert model.classifier.dense_out.out_features == 3


def test_unknown_key_is_an_error(retrieval_fixture):
    _, config, state_dict = retrieval_fixture
    with pytest.raises(CheckpointConversionError, match="does not know.*mystery_head.weight"):
        convert_original_checkpoint({**state_dict, "mystery_head.weight": torch.zeros(2)}, config)


def test_missing_key_is_an_error(retrieval_fixture):
    _, config, state_dict = retrieval_fixture
    key = "text_encoder.encoder.layer.4.crossattention.self.key.weight"
    broken = {k: v for k, v in state_dict.items() if k != key}
    with pytest.raises(CheckpointConversionError, match=r"does not provide.*fusion_model\.layers\.1\.crossattention"):
        convert_original_checkpoint(broken, config)


def test_half_present_head_is_an_error(retrieval_fixture):
    # a retrieval checkpoint without its ITM head cannot silently get a random one
    _, config, state_dict = retrieval_fixture
    broken = {k: v for k, v in state_dict.items() if k != "itm_head.3.bias"}
    with pytest.raises(CheckpointConversionError, match=r"does not provide.*\['itm_head.dense_out.bias'\]"):
        convert_original_checkpoint(broken, config)


def test_shape_mismatch_is_an_error(retrieval_fixture):
    _, config, state_dict = retrieval_fixture
    wrong = config.to_dict()
    wrong["projection_dim"] = 16
    with pytest.raises(
        CheckpointConversionError, match=r"shape mismatches.*vision_proj.weight: checkpoint \(32, 64\)"
    ):
        convert_original_checkpoint(state_dict, CCLMConfig.from_dict(wrong))


def test_too_many_layers_is_an_error(retrieval_fixture):
    _, config, state_dict = retrieval_fixture
    smaller = config.to_dict()
    smaller["text_config"].update(num_hidden_layers=4, num_fusion_layers=2)
    with pytest.raises(CheckpointConversionError, match=r"does not have.*fusion_model\.layers\.2"):
        convert_original_checkpoint(state_dict, CCLMConfig.from_dict(smaller))


def test_untied_mlm_decoder_is_an_error(retrieval_fixture):
    _, config, state_dict = retrieval_fixture
    pretraining = as_pretraining_checkpoint(state_dict, config.text_config.vocab_size)
    pretraining["text_encoder.cls.predictions.decoder.weight"] = torch.randn_like(
        pretraining["text_encoder.cls.predictions.decoder.weight"]
    )
    with pytest.raises(CheckpointConversionError, match="decoder.weight differs"):
        convert_original_checkpoint(pretraining, config)


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_that_runs_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.th"
    with open(path, "wb") as handle:
        pickle.dump({"model": {"x": _RunsCode(marker)}}, handle, protocol=2)
    with pytest.raises(CheckpointConversionError, match="refusing to unpickle"):
        load_original_state_dict(path)
    assert not marker.exists()


def test_original_checkpoint_files(tmp_path, retrieval_fixture):
    _, _, state_dict = retrieval_fixture
    torch.save({"model": state_dict, "config": {"embed_dim": 32, "temp": 0.07}}, tmp_path / "wrapped.th")
    torch.save({f"module.{k}": v for k, v in state_dict.items()}, tmp_path / "ddp.pth")
    save_file(state_dict, tmp_path / "plain.safetensors")
    for name in ("wrapped.th", "ddp.pth", "plain.safetensors"):
        loaded = load_original_state_dict(tmp_path / name)
        assert loaded.keys() == state_dict.keys(), name
        assert all(torch.equal(loaded[k], state_dict[k]) for k in state_dict), name
    with pytest.raises(FileNotFoundError, match="missing.th"):
        load_original_state_dict(tmp_path / "missing.th")


def test_with_image_size_scales_the_window_with_the_image():
    config = with_image_size(CCLMConfig.from_preset("cclm-base"), 384)
    assert (config.image_size, config.vision_config.window_size, config.num_image_tokens) == (384, 12, 145)
    assert config.to_dict() == CCLMConfig.from_preset("cclm-base-384").to_dict()
    assert with_image_size(config, 480, window_size=15).vision_config.window_size == 15
    with pytest.raises(ValueError, match="multiple of the total Swin stride 32"):
        with_image_size(config, 300)
    odd_window = with_image_size(CCLMConfig.from_preset("cclm-base"), 224, window_size=6)
    with pytest.raises(ValueError, match=r"\(10.2857\); pass window_size explicitly"):
        with_image_size(odd_window, 384)


def write_original_config_files(meta: dict, folder) -> tuple:
    task = folder / "Retrieval.yaml"
    vision = folder / "config_swin.json"
    text_dir = folder / "xlm-roberta"
    text_dir.mkdir()
    (text_dir / "config.json").write_text(json.dumps(meta["text_config_json"]))
    vision.write_text(json.dumps(meta["vision_config"]))
    task.write_text(yaml.safe_dump({**meta["config"], "vision_config": str(vision), "text_encoder": str(text_dir)}))
    return task, vision, text_dir


def test_cli_converts_and_resizes_like_the_original(tmp_path, parity_dir):
    # the source checkpoint of the resize fixture at 64 px / window 4, converted at 80 px / window 5
    folder = parity_dir / "retrieval_resize"
    meta = json.loads((folder / "config.json").read_text())
    source_meta = {**meta, "config": meta["source_config"], "vision_config": meta["source_vision_config"]}
    task, _, _ = write_original_config_files(source_meta, tmp_path)
    checkpoint = tmp_path / "model_state_epoch_29.th"
    torch.save({"model": load_file(folder / "original_state_dict.safetensors")}, checkpoint)
    out_dir = tmp_path / "converted"
    argv = ["convert", str(checkpoint), str(out_dir), "--original-config", str(task), "--image-size", "80"]
    assert cli_main(argv + ["--head", "retrieval"]) == 0

    model = CCLMForImageTextRetrieval.from_pretrained(out_dir).eval()
    assert (model.config.image_size, model.config.vision_config.window_size) == (80, 5)
    inputs = load_file(folder / "inputs.safetensors")
    expected = load_file(folder / "outputs.safetensors")
    with torch.no_grad():
        tokens = model.cclm.get_image_features(inputs["image"]).last_hidden_state
    torch.testing.assert_close(tokens, expected["image_embeds"], atol=1e-5, rtol=1e-4)


def test_cli_rejects_mixed_architecture_arguments(tmp_path, capsys):
    with pytest.raises(SystemExit):
        cli_main(["convert", "x.th", str(tmp_path), "--preset", "cclm-base", "--original-config", "a.yaml"])
    assert "not allowed with argument" in capsys.readouterr().err


def test_convert_help_documents_presets_heads_and_image_size():
    result = subprocess.run(
        [sys.executable, "-m", "cclm_hf.cli", "convert", "--help"], capture_output=True, text=True, check=True
    )
    for needle in ("cclm-base", "cclm-base-384", "retrieval", "classification", "--image-size", "relative-position"):
        assert needle in result.stdout, needle


def test_cli_writes_a_processor_that_auto_processor_loads(tmp_path, parity_dir, tiny_tokenizer):
    folder = parity_dir / "retrieval"
    meta = json.loads((folder / "config.json").read_text())
    task, _, _ = write_original_config_files(meta, tmp_path)
    checkpoint = tmp_path / "checkpoint.safetensors"
    save_file(load_file(folder / "original_state_dict.safetensors"), checkpoint)
    tiny_tokenizer.save_pretrained(tmp_path / "tokenizer")
    out_dir = tmp_path / "converted"
    argv = ["convert", str(checkpoint), str(out_dir), "--original-config", str(task), "--head", "classification"]
    assert cli_main([*argv, "--num-labels", "3", "--tokenizer", str(tmp_path / "tokenizer")]) == 0

    processor = AutoProcessor.from_pretrained(out_dir)
    assert isinstance(processor, CCLMProcessor)
    assert processor.image_processor.size == {"height": 64, "width": 64}
    assert processor.tokenizer.get_vocab() == tiny_tokenizer.get_vocab()
    model = AutoModelForSequenceClassification.from_pretrained(out_dir)
    assert model.config.num_labels == 3
    card = ModelCard((out_dir / "README.md").read_text())
    assert card.data.library_name == "transformers" and card.data.license == "bsd-3-clause"
    assert "# CCLM (CCLMForSequenceClassification)" in card.text and "`checkpoint.safetensors`" in card.text
    assert "newly initialised (not in the checkpoint; train before use): `classifier.dense_in.weight`" in card.text
