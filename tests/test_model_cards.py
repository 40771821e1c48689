"""Model cards: converted checkpoints (conversion.json), fine-tuned models (metrics.json -> model-index, the paper's
numbers beside ours), `cclm-hf card`, and the offline validation."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch
from huggingface_hub import ModelCard
from huggingface_hub.repocard_data import model_index_to_eval_results
from model_factories import tiny_config
from safetensors.torch import load_file

from cclm_hf import CCLMForImageTextRetrieval, CCLMForSequenceClassification
from cclm_hf.cli import main as cli_main
from cclm_hf.conversion import config_from_original, convert_checkpoint_to_folder
from cclm_hf.model_card import (
    CCLM_PRETRAINING_LANGUAGES,
    ModelCardError,
    read_metrics,
    validate_model_card,
    write_folder_card,
    write_model_card,
)
from cclm_hf.paper_results import paper_numbers


XVNLI_METRICS = {
    "task": "xvnli",
    "setting": "zero_shot",
    "model": "out/cclm-4m",
    "languages": {
        "en": {"accuracy": 0.8125},
        "ar": {"accuracy": 0.625},
        "es": {"accuracy": 0.75},
        "fr": {"accuracy": 0.6875},
        "ru": {"accuracy": 0.7},
    },
    "average": {"accuracy": 0.690625},
    "counts": {"ar": 16, "es": 16, "fr": 16, "ru": 10},
}


@pytest.fixture(scope="module")
def converted(tmp_path_factory, parity_dir):
    folder = parity_dir / "retrieval"
    meta = json.loads((folder / "config.json").read_text())
    config = config_from_original(meta["config"], meta["vision_config"], meta["text_config_json"])
    tmp_path = tmp_path_factory.mktemp("converted")
    checkpoint = tmp_path / "cclm_4m_epoch_29.th"
    state_dict = load_file(folder / "original_state_dict.safetensors")
    torch.save({"model": state_dict}, checkpoint)
    out_dir = tmp_path / "cclm-4m"
    record = convert_checkpoint_to_folder(
        checkpoint, out_dir, config, "retrieval", architecture="test config", command="cclm-hf convert x y"
    )
    return checkpoint, state_dict, out_dir, record


def test_conversion_record_states_source_hash_counts_and_reload_check(converted):
    checkpoint, state_dict, out_dir, record = converted
    saved = json.loads((out_dir / "conversion.json").read_text())
    assert saved["source_sha256"] == hashlib.sha256(checkpoint.read_bytes()).hexdigest() == record.source_sha256
    assert saved["source_bytes"] == checkpoint.stat().st_size and saved["source_file"] == "cclm_4m_epoch_29.th"
    # a retrieval checkpoint into a retrieval model: every original key is converted, except the buffers the model
    # recomputes (Swin's relative position index and shift masks, the text position ids)
    buffers = [key for key in state_dict if key.endswith(("relative_position_index", "attn_mask", "position_ids"))]
    assert saved["dropped_buffers"] == len(buffers) and saved["dropped_parts"] == []
    assert saved["converted_tensors"] == len(state_dict) - len(buffers)
    assert saved["reload_max_abs_diff"] == 0.0 and saved["newly_initialized"] == []
    assert saved["command"] == "cclm-hf convert x y" and saved["versions"]["cclm-hf"]


def test_converted_card_has_languages_license_provenance_and_parity(converted):
    checkpoint, _, out_dir, record = converted
    text = (out_dir / "README.md").read_text()
    card = validate_model_card(text)
    assert card.data.language == list(CCLM_PRETRAINING_LANGUAGES)
    assert card.data.license == "bsd-3-clause" and card.data.pipeline_tag == "zero-shot-image-classification"
    assert "cclm" in card.data.tags
    for needle in (record.source_sha256, "`cclm_4m_epoch_29.th`", "cclm-hf convert x y", "### Parity evidence"):
        assert needle in card.text, needle
    assert "BSD-3-Clause" in card.text and "ByteDance" in card.text and "@inproceedings{zeng2023cclm" in card.text
    assert "max abs difference 0.0" in card.text
    assert "CC3M" in card.text  # the released checkpoints' data, with its limitations


def test_card_command_rewrites_the_same_card_from_the_folder(converted, capsys):
    _, _, out_dir, _ = converted
    before = (out_dir / "README.md").read_text()
    assert cli_main(["card", str(out_dir)]) == 0
    assert (out_dir / "README.md").read_text() == before
    assert cli_main(["card", str(out_dir), "--check"]) == 0
    assert "valid" in capsys.readouterr().out


def test_fine_tuned_card_puts_metrics_json_into_model_index(tmp_path):
    folder = tmp_path / "cclm-4m-xvnli"
    CCLMForSequenceClassification(tiny_config()).save_pretrained(folder)
    (folder / "metrics.json").write_text(json.dumps(XVNLI_METRICS))
    (folder / "training_args.json").write_text(json.dumps({"learning_rate": 4e-5, "seed": 0, "output_dir": "x"}))
    assert cli_main(["card", str(folder), "--license", "bsd-3-clause"]) == 0

    card = validate_model_card((folder / "README.md").read_text())
    assert card.data.language == ["ar", "en", "es", "fr", "ru"] and card.data.license == "bsd-3-clause"
    # model-index round trip: huggingface_hub's own parser gives back exactly the values of metrics.json
    name, results = model_index_to_eval_results(card.data.to_dict()["model-index"])
    assert name == "cclm-4m-xvnli"
    by_config = {(result.dataset_config, result.metric_type): result.metric_value for result in results}
    expected = {(lang, "accuracy"): values["accuracy"] for lang, values in XVNLI_METRICS["languages"].items()}
    assert by_config == {**expected, (None, "accuracy"): XVNLI_METRICS["average"]["accuracy"]}
    assert {result.task_type for result in results} == {"visual-entailment"}
    # the paper's IGLUE zero-shot XVNLI averages (CCLM-base 3M / 4M) beside ours, in percent
    assert "| average | accuracy | 69.06 | 74.64 | 73.32 |" in card.text
    assert "| ar | accuracy | 62.50 | – | – |" in card.text
    assert "| `learning_rate` | `4e-05` |" in card.text and "output_dir" not in card.text


def test_card_keeps_an_existing_provenance_section(tmp_path):
    folder = tmp_path / "demo-model"
    model = CCLMForImageTextRetrieval(tiny_config())
    model.save_pretrained(folder)
    write_model_card(model, folder, "Pre-trained by the demo.\n\n| language | R@1 |\n|---|---|\n| zh | 0.28 |")
    (folder / "README.md").write_text((folder / "README.md").read_text().replace("# CCLM", "# edited title"))
    write_folder_card(folder, license="apache-2.0")
    card = ModelCard((folder / "README.md").read_text())
    assert card.text.count("## How this model was produced") == 1 and "| zh | 0.28 |" in card.text
    assert "# CCLM (CCLMForImageTextRetrieval)" in card.text and card.data.license == "apache-2.0"
    # a model with its own provenance (the demo's synthetic data) does not claim the released checkpoints' data
    assert "CC3M" not in card.text and 'trained only on the data described under "How this model' in card.text


def test_paper_numbers_are_the_published_ones():
    iglue = paper_numbers("xflickrco", "zero_shot")
    assert iglue["CCLM-base 4M"]["average"] == {"img_r1": 76.56, "txt_r1": 73.46}
    assert paper_numbers("wit", "few_shot") == {}  # the paper has no few-shot WIT numbers
    retrieval = paper_numbers("multi30k", "all_language")
    assert retrieval["CCLM-base 3M"]["cs"] == {"r_mean": 91.2}
    assert paper_numbers("mscoco", "zero_shot")["CCLM-base 4M"]["ja"] == {"r_mean": 91.5}
    assert paper_numbers("xvnli", "translate_test") == {}


CARD_BODY = "\n# CCLM\n\ntext\n"


@pytest.mark.parametrize(
    "content, problem",
    [
        ("# CCLM\n", "no YAML front matter"),
        ("---\nlibrary_name: [transformers\n---\n" + CARD_BODY, "invalid metadata"),
        ("---\nlibrary_name: transformers\nlanguage: [english]\n---\n" + CARD_BODY, "language 'english'"),
        ("---\nlibrary_name: transformers\nlicense: other\n---\n" + CARD_BODY, "license_name and license_link"),
        ("---\nlibrary_name: transformers\n---\nno title\n", "no '# title'"),
        ("---\nlibrary_name: timm\n---\n" + CARD_BODY, "library_name is 'timm'"),
        (
            "---\nlibrary_name: transformers\nmodel-index:\n- name: m\n  results:\n  - task: {type: t}\n"
            "    metrics: [{type: accuracy, value: 0.5}]\n---\n" + CARD_BODY,
            "invalid metadata",  # a result without its dataset
        ),
        (
            "---\nlibrary_name: transformers\nmodel-index:\n- name: m\n  results:\n  - task: {type: t}\n"
            "    dataset: {type: d, name: D}\n    metrics: [{type: accuracy, value: high}]\n---\n" + CARD_BODY,
            "accuracy = 'high' is not a number",
        ),
    ],
)
def test_validation_names_the_problem(content, problem):
    with pytest.raises(ModelCardError, match=problem) as error:
        validate_model_card(content, source="x/README.md")
    assert str(error.value).startswith("x/README.md")


def test_bad_metrics_json_is_named_with_the_field(tmp_path, capsys):
    folder = tmp_path / "fine-tuned"
    CCLMForSequenceClassification(tiny_config()).save_pretrained(folder)
    percent = {**XVNLI_METRICS, "languages": {"ar": {"accuracy": 62.5}}}
    (folder / "metrics.json").write_text(json.dumps(percent))
    with pytest.raises(ModelCardError, match=r"metrics.json: ar.accuracy = 62.5 is not a fraction"):
        read_metrics(folder / "metrics.json")
    (folder / "metrics.json").write_text(json.dumps({"languages": {}}))
    with pytest.raises(ModelCardError, match="missing field 'task'; missing field 'setting'"):
        read_metrics(folder / "metrics.json")
    (folder / "metrics.json").write_text("{not json")
    capsys.readouterr()
    assert cli_main(["card", str(folder)]) == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "metrics.json: not valid JSON" in error
    assert not (folder / "README.md").exists()


def test_card_refuses_folders_that_are_not_cclm_models(tmp_path, capsys):
    assert cli_main(["card", str(tmp_path)]) == 1
    assert "no config.json" in capsys.readouterr().err
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    assert cli_main(["card", str(tmp_path)]) == 1
    assert "'bert' is not a CCLM model" in capsys.readouterr().err
    assert cli_main(["card", str(tmp_path), "--check"]) == 1
    assert "no model card to check" in capsys.readouterr().err
