"""Task specs, command-line defaults, run plans, head building and gallery evaluation of the benchmark scripts."""

from __future__ import annotations

import math
import os

import pytest
import torch
from model_factories import random_batch, tiny_config

from cclm_hf import CCLMForImageTextRetrieval, CCLMForPreTraining, CCLMForSequenceClassification
from cclm_hf.conversion import CheckpointConversionError, resize_relative_position_bias_table
from cclm_hf.data.benchmarks import BenchmarkDataError, ImageRef, RetrievalGallery
from cclm_hf.data.transforms import eval_transform
from cclm_hf.evaluation import retrieval_metrics
from cclm_hf.finetuning import (
    TASKS,
    CCLMFinetuningTrainer,
    FinetuningTrainingArguments,
    GalleryEvaluator,
    RetrievalArguments,
    get_task,
    image_roots,
    load_run_data,
    load_task_model,
    parse_benchmark_arguments,
    plan_runs,
    read_nlvr_records,
    read_vqa_answer_list,
    read_vqa_records,
)
from cclm_hf.finetuning.runner import _last_words, _reported_setting
from cclm_hf.retrieval import encode_images, encode_texts, itm_rerank


def _parse(family: str, *argv: str, root: str = "/root"):
    base = ["--data_root", root, "--model_name_or_path", "/model", "--output_dir", "/tmp/out", "--report_to", "none"]
    extra = [RetrievalArguments] if family == "retrieval" else []
    return parse_benchmark_arguments(family, extra, [*argv, *base])


def test_original_hyper_parameters_are_the_defaults_and_flags_win():
    spec, _, _, _, args = _parse("retrieval", "--task", "wit")
    assert (args.learning_rate, args.num_train_epochs, args.warmup_steps, args.adam_beta2, args.weight_decay) == (
        3e-5,
        5,
        0.1,
        0.98,
        0.01,
    )
    assert args.eval_delay == 4 and args.metric_for_best_model == "r_mean" and spec.k_test == 128
    _, _, _, _, args = _parse("xvnli", "--task", "xvnli", "--setting", "few_shot")
    assert (args.learning_rate, args.num_train_epochs, args.eval_delay) == (1e-6, 60, 10)
    _, _, _, _, args = _parse("xvnli", "--task", "xvnli", "--learning_rate", "1e-4", "--num_train_epochs", "2")
    assert (args.learning_rate, args.num_train_epochs) == (1e-4, 2)
    with pytest.raises(SystemExit):
        _parse("xvnli", "--task", "wit")  # a retrieval task given to the XVNLI script


def test_checkpoint_selection_follows_do_eval():
    _, _, _, _, args = _parse("xvnli", "--task", "xvnli", "--do_train", "--do_eval")
    assert (args.eval_strategy.value, args.save_strategy.value, args.load_best_model_at_end) == ("epoch", "best", True)
    _, _, _, _, args = _parse("xvnli", "--task", "xvnli", "--do_train", "--do_eval", "--save_strategy", "no")
    assert (args.eval_strategy.value, args.save_strategy.value, args.load_best_model_at_end) == ("epoch", "no", False)
    _, _, _, _, args = _parse("xvnli", "--task", "xvnli", "--do_train")
    assert (args.eval_strategy.value, args.save_strategy.value, args.load_best_model_at_end) == ("no", "no", False)


@pytest.mark.parametrize("task", sorted(TASKS))
def test_every_language_of_every_task_is_planned_by_default(task):
    spec, _, benchmark, _, _ = _parse(get_task(task).family, "--task", task)
    (plan,) = plan_runs(spec, benchmark, "/out")
    assert plan.test_languages == list(spec.languages) and plan.train_languages == ["en"] == plan.dev_languages
    for language in spec.languages:  # every default file lies under ROOT
        assert spec.path("/root", "test", language).startswith("/root/")


def test_few_shot_translate_test_and_train_language_plans():
    spec, _, benchmark, _, _ = _parse("xvnli", "--task", "xvnli", "--setting", "few_shot", "--languages", "ar,ru")
    plans = plan_runs(spec, benchmark, "/out")
    assert [(p.train_split, p.train_languages, p.test_languages, p.output_dir, p.shots) for p in plans] == [
        ("few_shot_train", ["ar"], ["ar"], "/out/ar", "48"),
        ("few_shot_train", ["ru"], ["ru"], "/out/ru", "48"),
    ]
    assert (
        spec.path("/root", "few_shot_train", "ar", "48") == "/root/iglue/datasets/XVNLI/annotations/ar/train_48.jsonl"
    )
    spec, _, benchmark, _, _ = _parse("retrieval", "--task", "xflickrco", "--setting", "translate_test")
    (plan,) = plan_runs(spec, benchmark, "/out")
    assert plan.test_split == "translate_test" and "en" not in plan.test_languages and len(plan.test_languages) == 7
    spec, _, benchmark, _, _ = _parse("retrieval", "--task", "multi30k", "--train_languages", "all")
    assert plan_runs(spec, benchmark, "/out")[0].train_languages == ["en", "de", "fr", "cs"]
    for argv, message in [
        (("--task", "wit", "--setting", "few_shot"), "has no few_shot setting"),
        (("--task", "multi30k", "--setting", "translate_test"), "has no translate_test setting"),
        (("--task", "xflickrco", "--languages", "de,xx"), r"unknown language\(s\) \['xx'\]"),
        (("--task", "xflickrco", "--train_languages", "de"), "--train_languages: unknown language"),
    ]:
        spec, _, benchmark, _, _ = _parse("retrieval", *argv)
        with pytest.raises(BenchmarkDataError, match=message):
            plan_runs(spec, benchmark, "/out")


def test_wit_falls_back_to_iglue_annotations_without_base64(tmp_path):
    spec = TASKS["wit"]
    assert spec.path(str(tmp_path), "test", "ko") == str(tmp_path / "data/wit/annotations-bs64/test_ko.jsonl")
    (tmp_path / "iglue/datasets/wit/annotations").mkdir(parents=True)
    (tmp_path / "iglue/datasets/wit/annotations/test_ko.jsonl").write_text("")
    assert spec.path(str(tmp_path), "test", "ko") == str(tmp_path / "iglue/datasets/wit/annotations/test_ko.jsonl")


def test_head_from_a_pretraining_folder_gets_pytorch_default_initialisation(tmp_path):
    CCLMForPreTraining(tiny_config()).save_pretrained(tmp_path)
    torch.manual_seed(0)
    model = load_task_model("classification", str(tmp_path), num_labels=3)
    assert isinstance(model, CCLMForSequenceClassification)
    dense = model.classifier.dense_in  # nn.Linear's default: kaiming_uniform(a=sqrt(5)) = U(-1/sqrt(fan_in), ...)
    bound = 1 / math.sqrt(dense.in_features)
    assert dense.weight.abs().max() <= bound and dense.weight.abs().max() > 0.9 * bound
    assert torch.equal(model.classifier.layer_norm.weight, torch.ones_like(model.classifier.layer_norm.weight))
    reference = CCLMForPreTraining.from_pretrained(tmp_path)
    torch.testing.assert_close(model.get_input_embeddings().weight, reference.get_input_embeddings().weight)
    model.save_pretrained(tmp_path / "xvnli")
    with pytest.raises(CheckpointConversionError, match="shape mismatches"):
        load_task_model("classification", str(tmp_path / "xvnli"), num_labels=2)


def test_image_size_resamples_the_relative_position_tables(tmp_path):
    model = CCLMForImageTextRetrieval(tiny_config()).eval()
    model.save_pretrained(tmp_path)
    resized = load_task_model("retrieval", str(tmp_path), image_size=64)
    assert resized.config.image_size == 64 and resized.config.vision_config.window_size == 8
    key = next(k for k in model.state_dict() if k.endswith("relative_position_bias_table"))
    expected = resize_relative_position_bias_table(model.state_dict()[key], (2 * 8 - 1) ** 2)
    torch.testing.assert_close(resized.state_dict()[key], expected)
    torch.testing.assert_close(resized.itm_head.dense_in.weight, model.itm_head.dense_in.weight)
    with torch.no_grad():
        assert resized.cclm.get_image_features(torch.randn(1, 3, 64, 64)).last_hidden_state.shape == (1, 1 + 64, 48)


def test_new_head_trains_at_twice_the_learning_rate(tmp_path):
    model = CCLMForSequenceClassification(tiny_config())
    args = FinetuningTrainingArguments(output_dir=str(tmp_path), learning_rate=1e-4, report_to="none", use_cpu=True)
    optimizer = CCLMFinetuningTrainer(model=model, args=args).create_optimizer()  # the model's new_parameters()
    rates = {id(p): group["lr"] for group in optimizer.param_groups for p in group["params"]}
    assert rates[id(model.classifier.dense_in.weight)] == 2e-4
    assert rates[id(model.get_input_embeddings().weight)] == 1e-4


def test_gallery_evaluator_streams_images_in_chunks_with_the_same_result(tmp_path):
    config = tiny_config()
    model = CCLMForImageTextRetrieval(config).eval()
    input_ids, attention_mask, pixels = random_batch(config, batch_size=5, seed=2)
    transform = eval_transform(config.image_size)
    paths = []
    for index in range(5):
        array = ((pixels[index].clamp(-2, 2) + 2) / 4 * 255).permute(1, 2, 0).to(torch.uint8).numpy()
        path = tmp_path / f"{index}.png"
        __import__("PIL.Image").Image.fromarray(array).save(path)
        paths.append(str(path))

    class Tokenizer:  # the random batch's ids, by caption index
        def __call__(self, texts, **kwargs):
            rows = [int(text) for text in texts]
            return {"input_ids": input_ids[rows], "attention_mask": attention_mask[rows]}

    gallery = RetrievalGallery(
        [ImageRef(p) for p in paths], paths, ["0", "1", "2", "3", "4", "0"], ["t"] * 6, [0, 1, 2, 3, 4, 0]
    )
    evaluator = GalleryEvaluator(transform, Tokenizer(), max_tokens=40, k=3, image_batch_size=2, image_chunk_size=2)
    metrics = evaluator(model, {"de": gallery})["de"]
    images = torch.stack([transform(ImageRef(path).load("x")) for path in paths])
    with torch.no_grad():
        encoded_images = encode_images(model.cclm, images)
        rows = [0, 1, 2, 3, 4, 0]
        encoded_texts = encode_texts(model.cclm, input_ids[rows], attention_mask[rows])
        expected = retrieval_metrics(*itm_rerank(model, encoded_images, encoded_texts, k=3), [0, 1, 2, 3, 4, 0])
    assert metrics == pytest.approx(expected)


def test_last_words_of_an_error_reraised_by_a_dataloader_worker():
    wrapped = BenchmarkDataError(
        "Caught BenchmarkDataError in DataLoader worker process 0.\nOriginal Traceback (most recent call last):\n"
        '  File "x.py", line 1, in f\ncclm_hf.data.benchmarks.records.BenchmarkDataError: train.jsonl:3: empty image'
    )
    assert _last_words(wrapped) == "train.jsonl:3: empty image"
    assert _last_words(BenchmarkDataError("plain: message")) == "plain: message"
    assert os.path.basename(__file__) == "test_benchmark_tasks.py"


@pytest.mark.parametrize(
    "task, setting, reader, sizes",
    [
        ("xgqa", "zero_shot", read_vqa_records, {"train": 4, "dev": 2, "bn": 2, "en": 2, "zh": 2}),
        ("xgqa", "few_shot", read_vqa_records, {"train": 2, "de": 2}),
        ("vqa", "zero_shot", read_vqa_records, {"train": 2, "dev": 2, "en": 1}),
        ("nlvr2", "zero_shot", read_nlvr_records, {"train": 3, "dev": 3, "en": 3}),
        ("marvl", "zero_shot", read_nlvr_records, {"train": 3, "dev": 3, "en": 3, "id": 3, "zh": 3}),
        ("marvl", "few_shot", read_nlvr_records, {"train": 3, "zh": 3}),
        ("marvl", "translate_test", read_nlvr_records, {"sw": 3, "ta": 3}),
    ],
)
def test_vqa_and_nlvr_files_load_with_their_images(task, setting, reader, sizes, benchmark_root):
    family = get_task(task).family
    languages = [language for language in sizes if language not in ("train", "dev")]
    argv = ["--task", task, "--setting", setting, "--languages", ",".join(languages)]
    spec, _, benchmark, _, _ = _parse(family, *argv, root=str(benchmark_root))
    plans = plan_runs(spec, benchmark, "/out")
    train = "train" in sizes
    data = load_run_data(spec, benchmark, plans[0], reader, train=train, dev="dev" in sizes, test=True)
    counts = {name: value["examples"] for name, value in data.counts.items()}
    assert counts == {name: size for name, size in sizes.items() if name in counts} and set(counts) >= set(languages)
    if task == "xgqa":
        assert read_vqa_answer_list(spec, benchmark) == ["yes", "no", "left", "red"]
    if task == "marvl" and setting == "few_shot":
        assert "/marvl_fewshot/zh/all/" in data.train[0].left.value


def test_every_image_root_has_its_flag():
    spec, _, benchmark, _, _ = _parse("nlvr", "--task", "marvl")
    assert image_roots(spec, benchmark) == {"image_root": "/root/images", "nlvr2_image_root": "/root/images/nlvr2"}
    flags = ["--image_root", "/a", "--nlvr2_image_root", "/b"]
    spec, _, benchmark, _, _ = _parse("nlvr", "--task", "marvl", *flags)
    assert image_roots(spec, benchmark) == {"image_root": "/a", "nlvr2_image_root": "/b"}
    spec, _, benchmark, _, _ = _parse("retrieval", "--task", "xflickrco", "--coco_image_root", "/coco")
    assert image_roots(spec, benchmark) == {"image_root": "/root/images/flickr30k-images", "coco_image_root": "/coco"}


@pytest.mark.parametrize(
    "argv, setting",
    [
        (("--task", "multi30k"), "zero_shot"),
        (("--task", "multi30k", "--train_languages", "de"), "single_language"),
        (("--task", "mscoco", "--train_languages", "all"), "all_language"),
        (("--task", "mscoco", "--train_languages", "en,zh,ja"), "all_language"),
        (("--task", "xflickrco", "--setting", "few_shot"), "few_shot"),
    ],
)
def test_multi30k_and_mscoco_report_their_fine_tuning_protocol_as_setting(argv, setting):
    spec, _, benchmark, _, _ = _parse("retrieval", *argv)
    assert _reported_setting(spec, benchmark) == setting  # the keys of cclm_hf.paper_results
