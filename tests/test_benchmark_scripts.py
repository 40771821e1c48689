"""The four benchmark scripts (`examples/run_retrieval.py`, `run_xvnli.py`, `run_nlvr.py`, `run_vqa.py`) end to end on
the benchmark fixtures (CPU, tiny model).

Most runs call the scripts' `main(argv)` in this process (the argv is exactly a command line); two subprocesses
check what only a real launch shows: the last words of a run stopped by bad input, and two processes (`torchrun`)
gathering every test sample exactly once.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from benchmark_fixtures import FLICKR_IDS, write_jsonl, xvnli_record
from transformers import (
    AutoModelForSequenceClassification,
    AutoModelForVisualQuestionAnswering,
    AutoModelForZeroShotImageClassification,
    AutoProcessor,
)

from cclm_hf import (
    CCLMForImagesAndTextClassification,
    CCLMForImageTextRetrieval,
    CCLMForQuestionAnswering,
    CCLMForSequenceClassification,
)
from cclm_hf.finetuning import TASKS
from cclm_hf.model_card import validate_model_card


REPO = Path(__file__).resolve().parents[1]
ENV = {
    **os.environ,
    "HF_HUB_OFFLINE": "1",
    "OMP_NUM_THREADS": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")]),
}
QUIET = ["--report_to", "none", "--disable_tqdm", "true"]
TINY_TRAINING = ["--max_steps", "2", "--save_strategy", "no", "--per_device_train_batch_size", "4"]


def command(task: str, root: Path, model: Path, output: Path, *flags: str) -> list[str]:
    """The command line of a benchmark script (without the program)."""
    base = ["--task", task, "--data_root", str(root), "--model_name_or_path", str(model), "--output_dir", str(output)]
    return [*base, *flags, *QUIET]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def run_retrieval():
    return _load("run_retrieval").main


@pytest.fixture(scope="module")
def run_xvnli():
    return _load("run_xvnli").main


def _check_record(record: dict, task: str, setting: str, languages: list[str], metrics: tuple[str, ...]) -> None:
    assert record["task"] == task and record["setting"] == setting
    assert list(record["languages"]) == languages
    for language in languages:
        values = record["languages"][language]
        assert set(metrics) <= set(values), language
        assert all(0.0 <= value <= 1.0 for value in values.values()), values
        assert record["counts"][language]["examples"] > 0
    non_english = [language for language in languages if language != "en"] or languages
    assert record["average_languages"] == non_english
    for metric in metrics:
        expected = sum(record["languages"][language][metric] for language in non_english) / len(non_english)
        assert record["average"][metric] == pytest.approx(expected)


RETRIEVAL_METRICS = ("txt_r1", "txt_r5", "txt_r10", "img_r1", "img_r5", "img_r10", "r_mean")


# IGLUE's retrieval tasks have 8 and 11 test languages: a subset keeps the test fast (test_benchmark_tasks.py checks
# that every language of every task is planned by default)
LANGUAGE_SUBSETS = {"xflickrco": ["de", "en", "zh"], "wit": ["ar", "en", "vi"]}


@pytest.mark.parametrize("task", ["multi30k", "mscoco", "flickr30k", "xflickrco", "wit"])
def test_run_retrieval_end_to_end(task, run_retrieval, benchmark_root, tiny_pretrained_folder, tmp_path):
    output = tmp_path / "out"
    languages = LANGUAGE_SUBSETS.get(task)
    flags = ["--do_train", "--do_eval", "--do_predict", *TINY_TRAINING]
    flags += ["--languages", ",".join(languages)] if languages else []
    record = run_retrieval(command(task, benchmark_root, tiny_pretrained_folder, output, *flags))
    assert json.loads((output / "metrics.json").read_text()) == json.loads(json.dumps(record))
    _check_record(record, task, "zero_shot", languages or list(TASKS[task].languages), RETRIEVAL_METRICS)
    assert set(RETRIEVAL_METRICS) <= set(record["dev"]) and record["counts"]["train"]["examples"] > 0
    markdown = (output / "metrics.md").read_text()
    assert f"# {task} (zero_shot)" in markdown
    if task == "xflickrco":  # IGLUE: the paper's averages beside ours
        assert "CCLM-base 4M 76.56" in markdown
        assert record["counts"]["de"]["skipped"] == {"empty_caption": 1}
        card = validate_model_card((output / "README.md").read_text())  # model-index from metrics.json
        assert any(result.metric_type == "img_r1" for result in card.data.eval_results)
        assert json.loads((output / "training_args.json").read_text())["max_steps"] == 2
    model = AutoModelForZeroShotImageClassification.from_pretrained(output)
    assert isinstance(model, CCLMForImageTextRetrieval)
    assert type(AutoProcessor.from_pretrained(output)).__name__ == "CCLMProcessor"


@pytest.fixture(scope="module")
def english_xvnli(run_xvnli, benchmark_root, tiny_pretrained_folder, tmp_path_factory):
    """XVNLI fine-tuned on English (zero-shot transfer): the MODEL of the few-shot and translate-test runs."""
    output = tmp_path_factory.mktemp("xvnli") / "out"
    flags = ["--do_train", "--do_eval", "--do_predict", *TINY_TRAINING]
    return output, run_xvnli(command("xvnli", benchmark_root, tiny_pretrained_folder, output, *flags))


def test_run_xvnli_zero_shot(english_xvnli):
    output, record = english_xvnli
    _check_record(record, "xvnli", "zero_shot", ["ar", "en", "es", "fr", "ru"], ("accuracy",))
    assert record["counts"]["ar"] == {"examples": 3, "skipped": {"no_gold_label": 1}}
    assert record["counts"]["train"]["examples"] == 12 and 0.0 <= record["dev"]["accuracy"] <= 1.0
    assert "CCLM-base 3M 74.64" in (output / "metrics.md").read_text()
    model = AutoModelForSequenceClassification.from_pretrained(output)
    assert isinstance(model, CCLMForSequenceClassification)
    assert model.config.id2label == {0: "contradiction", 1: "entailment", 2: "neutral"}
    assert type(AutoProcessor.from_pretrained(output)).__name__ == "CCLMProcessor"


def test_xvnli_few_shot_one_model_per_language(run_xvnli, english_xvnli, benchmark_root, tmp_path):
    output = tmp_path / "few"
    flags = ["--setting", "few_shot", "--languages", "ar,fr", "--do_train", "--do_predict", "--max_steps", "1",
             "--per_device_train_batch_size", "4"]  # fmt: skip
    record = run_xvnli(command("xvnli", benchmark_root, english_xvnli[0], output, *flags))
    _check_record(record, "xvnli", "few_shot", ["ar", "fr"], ("accuracy",))
    assert record["num_shots"] == "48" and record["counts"]["ar/train"]["examples"] == 4
    for language in ("ar", "fr"):
        model = AutoModelForSequenceClassification.from_pretrained(output / language)
        assert isinstance(model, CCLMForSequenceClassification)


def test_xvnli_translate_test(run_xvnli, english_xvnli, benchmark_root, tmp_path):
    flags = ["--setting", "translate_test", "--do_predict"]
    record = run_xvnli(command("xvnli", benchmark_root, english_xvnli[0], tmp_path / "tt", *flags))
    _check_record(record, "xvnli", "translate_test", ["ar", "es", "fr", "ru"], ("accuracy",))
    assert record["counts"]["ar"] == {"examples": 3, "skipped": {}}  # the machine-translated files


def test_seeds_give_mean_and_std(run_retrieval, benchmark_root, tiny_pretrained_folder, tmp_path):
    output = tmp_path / "seeds"
    flags = ["--seeds", "0,1", "--do_train", "--do_predict", *TINY_TRAINING, "--max_steps", "1"]
    record = run_retrieval(command("flickr30k", benchmark_root, tiny_pretrained_folder, output, *flags))
    runs = [json.loads((output / f"seed_{seed}" / "metrics.json").read_text()) for seed in (0, 1)]
    assert [run["seed"] for run in runs] == [0, 1] and record["seeds"] == [0, 1]
    for metric in RETRIEVAL_METRICS:
        values = [run["languages"]["en"][metric] for run in runs]
        assert record["languages"]["en"][metric] == pytest.approx(sum(values) / 2)
        assert record["std"]["languages"]["en"][metric] == pytest.approx(abs(values[0] - values[1]) / 2**0.5)
    assert (output / "seed_1" / "model.safetensors").is_file()


# ---------------------------------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------------------------------


@pytest.fixture
def images_without_one(benchmark_root, tmp_path):
    images = tmp_path / "flickr30k-images"
    shutil.copytree(benchmark_root / "images/flickr30k-images", images)
    (images / f"{FLICKR_IDS[5]}.jpg").unlink()  # the premise of fr/test.jsonl line 2
    return images


def test_missing_image_stops_the_script_before_it_starts_with_last_words(
    benchmark_root, images_without_one, tiny_pretrained_folder, tmp_path
):
    flags = ["--languages", "fr", "--image_root", str(images_without_one), "--do_predict"]
    program = [sys.executable, str(REPO / "examples" / "run_xvnli.py")]
    argv = command("xvnli", benchmark_root, tiny_pretrained_folder, tmp_path / "out", *flags)
    result = subprocess.run([*program, *argv], capture_output=True, text=True, env=ENV, cwd=REPO, timeout=600)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    test_file = benchmark_root / "iglue/datasets/XVNLI/annotations/fr/test.jsonl"
    assert last.startswith("error: 1 record(s) refer to missing images"), result.stderr[-3000:]
    assert f"{test_file}:2: image file not found: {images_without_one / (FLICKR_IDS[5] + '.jpg')}" in last
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out" / "metrics.json").exists()


def test_skip_bad_samples_counts_the_missing_image(
    run_xvnli, benchmark_root, images_without_one, tiny_pretrained_folder, tmp_path
):
    flags = ["--languages", "fr", "--image_root", str(images_without_one), "--do_predict", "--skip_bad_samples"]
    record = run_xvnli(command("xvnli", benchmark_root, tiny_pretrained_folder, tmp_path / "out", *flags))
    assert record["counts"]["fr"] == {"examples": 2, "skipped": {"missing_image": 1, "no_gold_label": 1}}


@pytest.mark.parametrize(
    "lines, message",
    [
        (['{"gold_label": "neutral", "sentence2": '], r"error: {file}:2: malformed json line"),
        ([json.dumps(xvnli_record("unsure", 1, "a cat"))], r"error: {file}:2: unknown label 'unsure'"),
        ([json.dumps(xvnli_record("neutral", 1, "?!"))], r"error: {file}:2: hypothesis is empty after cleaning"),
    ],
    ids=["malformed_line", "unknown_label", "empty_caption"],
)
def test_bad_records_stop_the_run_naming_file_and_line(
    lines, message, run_xvnli, benchmark_root, tiny_pretrained_folder, tmp_path
):
    test_file = tmp_path / "test.jsonl"
    test_file.write_text(json.dumps(xvnli_record("neutral", 0, "a dog")) + "\n" + "\n".join(lines) + "\n")
    flags = ["--languages", "fr", "--test_file", str(test_file), "--do_predict"]
    with pytest.raises(SystemExit) as stopped:
        run_xvnli(command("xvnli", benchmark_root, tiny_pretrained_folder, tmp_path / "out", *flags))
    assert re.match(message.format(file=re.escape(str(test_file))), stopped.value.code), stopped.value.code


def test_undecodable_training_image_stops_training_naming_the_record(
    run_xvnli, benchmark_root, tiny_pretrained_folder, tmp_path
):
    images = tmp_path / "images"
    images.mkdir()
    (images / f"{FLICKR_IDS[0]}.jpg").write_bytes(b"")  # exists (passes the image check), 0 bytes
    train = write_jsonl(tmp_path / "train.jsonl", [xvnli_record("entailment", 0, "a dog runs")])
    flags = ["--train_file", str(train), "--image_root", str(images), "--do_train", *TINY_TRAINING]
    with pytest.raises(SystemExit) as stopped:
        run_xvnli(command("xvnli", benchmark_root, tiny_pretrained_folder, tmp_path / "out", *flags))
    image = str(images / f"{FLICKR_IDS[0]}.jpg")
    assert stopped.value.code == f"error: {train}:1: image file {image!r} is empty (0 bytes)"


def test_skipped_training_images_are_replaced_and_counted(run_xvnli, benchmark_root, tiny_pretrained_folder, tmp_path):
    images = tmp_path / "images"
    shutil.copytree(benchmark_root / "images/flickr30k-images", images)
    (images / f"{FLICKR_IDS[1]}.jpg").write_bytes(b"")
    records = [xvnli_record(label, index, "a dog runs") for index, label in enumerate(["entailment", "neutral"] * 2)]
    train = write_jsonl(tmp_path / "train.jsonl", records)
    flags = ["--train_file", str(train), "--image_root", str(images), "--do_train", "--skip_bad_samples"]
    argv = command("xvnli", benchmark_root, tiny_pretrained_folder, tmp_path / "out", *flags, *TINY_TRAINING)
    record = run_xvnli([*argv, "--max_steps", "1"])  # one batch of the 4 records: the broken one is drawn once
    assert record["counts"]["train"] == {
        "examples": 4,
        "skipped": {},
        "skipped_while_training": {"unreadable_image": 1},
    }


# ---------------------------------------------------------------------------------------------------------------------
# Several processes
# ---------------------------------------------------------------------------------------------------------------------


def test_two_processes_evaluate_every_sample_exactly_once(
    run_retrieval, benchmark_root, tiny_pretrained_folder, english_xvnli, tmp_path
):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port)]
    worker = [str(REPO / "tests" / "benchmark_distributed_worker.py"), str(benchmark_root)]
    worker += [str(tiny_pretrained_folder), str(english_xvnli[0]), str(tmp_path / "ddp")]
    result = subprocess.run([*launcher, *worker], capture_output=True, text=True, env=ENV, cwd=REPO, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    flags = ["--languages", "de,ja,zh", "--do_predict"]
    single = run_retrieval(command("xflickrco", benchmark_root, tiny_pretrained_folder, tmp_path / "single", *flags))
    distributed = json.loads((tmp_path / "ddp" / "xflickrco" / "metrics.json").read_text())
    assert distributed["languages"] == single["languages"]  # 3 galleries dealt to 2 processes, each scored once
    xvnli = json.loads((tmp_path / "ddp" / "xvnli" / "metrics.json").read_text())
    # 3 examples per language split over 2 processes: gathered without the padding duplicate
    assert {language: counts["examples"] for language, counts in xvnli["counts"].items()} == {"ar": 3, "fr": 3}
    assert xvnli["languages"] == {language: english_xvnli[1]["languages"][language] for language in ("ar", "fr")}


@pytest.fixture(scope="module")
def run_nlvr():
    return _load("run_nlvr").main


@pytest.fixture(scope="module")
def run_vqa():
    return _load("run_vqa").main


def test_run_nlvr_on_marvl_and_nlvr2(run_nlvr, benchmark_root, tiny_pretrained_folder, tmp_path):
    flags = ["--languages", "en,zh", "--do_train", "--do_predict", *TINY_TRAINING]
    record = run_nlvr(command("marvl", benchmark_root, tiny_pretrained_folder, tmp_path / "marvl", *flags))
    _check_record(record, "marvl", "zero_shot", ["en", "zh"], ("accuracy",))
    assert record["counts"]["train"]["examples"] == 3 and record["counts"]["zh"]["examples"] == 3
    # transformers has no Auto class for two-image statements: the class itself loads the folder
    model = CCLMForImagesAndTextClassification.from_pretrained(tmp_path / "marvl")
    layers = model.cclm.fusion_model.layers
    assert model.config.images_per_text == 2 and len(layers) == 2
    assert layers[1].crossattention.self.key.weight is layers[0].crossattention.self.key.weight
    assert AutoProcessor.from_pretrained(tmp_path / "marvl") is not None
    record = run_nlvr(command("nlvr2", benchmark_root, tiny_pretrained_folder, tmp_path / "nlvr2", "--do_predict"))
    _check_record(record, "nlvr2", "zero_shot", ["en"], ("accuracy",))


def test_run_vqa_on_xgqa_and_vqa(run_vqa, benchmark_root, tiny_pretrained_folder, tmp_path):
    flags = ["--languages", "de,en", "--do_train", "--do_eval", "--do_predict", "--k_test", "3", *TINY_TRAINING]
    record = run_vqa(command("xgqa", benchmark_root, tiny_pretrained_folder, tmp_path / "xgqa", *flags))
    _check_record(record, "xgqa", "zero_shot", ["de", "en"], ("accuracy",))
    assert record["counts"]["de"]["examples"] == 2
    model = AutoModelForVisualQuestionAnswering.from_pretrained(tmp_path / "xgqa")
    assert isinstance(model, CCLMForQuestionAnswering)
    assert model.answer_head.decoder.weight is model.answer_embeddings.word_embeddings.weight

    # VQA v2: the official accuracy on val; test-dev has no answers: the submission file instead
    record = run_vqa(command("vqa", benchmark_root, tiny_pretrained_folder, tmp_path / "vqa", "--do_predict"))
    assert record["task"] == "vqa" and list(record["languages"]) == ["en"]
    submission = json.loads((tmp_path / "vqa" / "vqa_submission_en.json").read_text())
    assert [entry["question_id"] for entry in submission] == [6000]
    assert submission[0]["answer"] in {"yes", "no", "2", "red"}
