"""The built-in demo end to end with a tiny budget: artefacts, metrics layout, reloadable model folder, ablation.

(The recall targets need the full six-minute budget; `cclm-hf demo` measures them, see the README.)
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from transformers import AutoModel, AutoProcessor

from cclm_hf.demo import run as demo_run
from cclm_hf.demo.run import DemoConfig, TimeBudget, budget_lr_schedule, build_demo, run_demo


LANGUAGES = ["en", "de", "fr", "es", "zh"]
KEYS = {"t2i_r1", "t2i_r5", "i2t_r1", "t2i_r1_itm"}


@pytest.mark.parametrize("parallel_text", [True, False], ids=["parallel-text", "ablation"])
def test_demo_writes_metrics_plots_and_a_model(tmp_path, parallel_text):
    config = DemoConfig(
        output_dir=str(tmp_path),
        budget_s=3,
        parallel_text=parallel_text,
        num_train_images=256,
        num_parallel_pairs=512,
        batch_size=16,
        itm_rerank_k=4,
    )
    metrics = run_demo(config)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["parallel_text"] is parallel_text and saved["budget_s"] == 3 and saved["steps"] > 0
    assert list(saved["languages"]) == LANGUAGES
    for values in saved["languages"].values():
        assert KEYS <= set(values) and all(0.0 <= values[key] <= 1.0 for key in KEYS)
    assert metrics["languages"] == saved["languages"]
    table = (tmp_path / "metrics.md").read_text()
    assert all(f"| {language} |" in table for language in LANGUAGES)
    for name in ("loss_curve.png", "recall_per_language.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    logs = [json.loads(line) for line in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    step_types = {key for record in logs for key in record if key.startswith("steps/")}
    assert step_types == ({"steps/image", "steps/parallel"} if parallel_text else {"steps/image"})

    card = (tmp_path / "model" / "README.md").read_text()
    assert "pipeline_tag: zero-shot-image-classification" in card and "| zh |" in card
    assert "CC3M" not in card  # trained on the synthetic shapes only
    model = AutoModel.from_pretrained(tmp_path / "model")
    processor = AutoProcessor.from_pretrained(tmp_path / "model")
    assert type(model).__name__ == "CCLMModel" and type(processor).__name__ == "CCLMProcessor"
    inputs = processor(text=["ein kleiner roter Kreis links"], return_tensors="pt")
    assert processor.tokenizer.unk_token_id not in inputs["input_ids"][0].tolist()
    if parallel_text:
        assert_gallery_benchmark_reproduces_the_demo(tmp_path / "model", saved["languages"], config)


def assert_gallery_benchmark_reproduces_the_demo(model_dir, demo_recalls, config: DemoConfig) -> None:
    """benchmarks/demo_galleries.py: its first gallery is the demo's own (the same recalls as metrics.json), and two
    galleries average the demo's and a second one scored here with the demo's evaluation."""
    from pathlib import Path

    from cclm_hf import CCLMForImageTextRetrieval, CCLMProcessor
    from cclm_hf.demo import shapes

    script = Path(__file__).parents[1] / "benchmarks" / "demo_galleries.py"
    command = [sys.executable, str(script), str(model_dir), "--itm-rerank-k", str(config.itm_rerank_k)]
    rows = subprocess.run([*command, "--galleries", "2"], check=True, capture_output=True, text=True).stdout
    rows = {
        line.split("|")[1].strip(): line for line in rows.splitlines() if line.startswith("| ") and "---" not in line
    }
    model = CCLMForImageTextRetrieval.from_pretrained(model_dir).eval()
    processor = CCLMProcessor.from_pretrained(model_dir)
    second = demo_run.evaluate_gallery(model, processor, shapes.test_gallery(101), config.itm_rerank_k)
    for language in LANGUAGES:
        cells = [cell.strip() for cell in rows[language].split("|")[2:5]]
        contrastive = (demo_recalls[language]["t2i_r1"] + second[language]["t2i_r1"]) / 2
        reranked = (demo_recalls[language]["t2i_r1_itm"] + second[language]["t2i_r1_itm"]) / 2
        assert cells == [f"{contrastive:.3f}", f"{reranked:.3f}", f"{reranked - contrastive:+.3f}"], language


def test_budget_schedule_warms_up_then_decays_with_the_clock(monkeypatch):
    """Factor = min(1, step / warm-up) x the unspent share of the budget, read from the clock when the scheduler
    steps; constant after the warm-up with `decay=False`."""
    import torch

    now = [1000.0]
    monkeypatch.setattr(demo_run.time, "perf_counter", lambda: now[0])
    budget = TimeBudget(budget_s=100.0)
    assert budget.remaining_fraction() == 1.0  # not started
    optimizers = [torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.5) for _ in range(2)]
    decaying = budget_lr_schedule(optimizers[0], warmup_steps=10, budget=budget)
    constant = budget_lr_schedule(optimizers[1], warmup_steps=10, budget=budget, decay=False)

    def advance(steps: int) -> None:
        for _ in range(steps):
            for optimizer, schedule in zip(optimizers, (decaying, constant), strict=True):
                optimizer.step()
                schedule.step()

    assert optimizers[0].param_groups[0]["lr"] == 0.0  # step 0 of the warm-up
    budget.start = now[0]
    advance(5)
    assert decaying.get_last_lr() == [pytest.approx(0.25)] == constant.get_last_lr()  # half-way through warm-up
    advance(15)
    now[0] += 30.0
    advance(1)
    assert decaying.get_last_lr() == [pytest.approx(0.5 * 0.7)] and constant.get_last_lr() == [pytest.approx(0.5)]
    now[0] += 100.0  # past the budget: no negative learning rate
    advance(1)
    assert budget.remaining_fraction() == 0.0 and decaying.get_last_lr() == [0.0]


@pytest.mark.parametrize("lr_decay", [True, False])
def test_demo_learning_rate_reaches_zero_when_the_budget_is_spent(tmp_path, lr_decay):
    config = DemoConfig(
        output_dir=str(tmp_path), budget_s=2, num_train_images=256, num_parallel_pairs=256, batch_size=8
    )
    config.warmup_steps, config.lr_decay = 2, lr_decay
    demo = build_demo(config)
    demo.trainer.train()
    peaks = [group["initial_lr"] for group in demo.trainer.optimizer.param_groups]
    final = demo.trainer.lr_scheduler.get_last_lr()
    assert demo.trainer.state.global_step > 2
    if lr_decay:
        assert all(rate < 0.05 * peak for rate, peak in zip(final, peaks, strict=True))
    else:
        assert final == pytest.approx(peaks)


def test_demo_command_line_documents_its_options():
    result = subprocess.run(
        [sys.executable, "-m", "cclm_hf.cli", "demo", "--help"], capture_output=True, text=True, check=True
    )
    for option in (
        "--budget-s",
        "--no-parallel-text",
        "--no-concept-ids",
        "--constant-lr",
        "--rotation-degrees",
        "--caption-languages",
        "--batch-size",
        "--window-size",
    ):
        assert option in result.stdout


@pytest.mark.parametrize(("window_size", "windows", "side"), [(None, 4, 4), (8, 1, 8)], ids=["default", "window-8"])
def test_demo_window_splits_the_last_swin_stage(tmp_path, window_size, windows, side):
    """The demo model's last Swin stage (8x8 tokens at 64 px) is four attention windows by default, one with
    `window_size=8`; `DemoConfig.window_size` is the window of the model `build_demo` trains."""
    import torch

    from cclm_hf import CCLMModel
    from cclm_hf.demo.run import demo_model_config

    model = CCLMModel(demo_model_config(100, window_size)).eval()
    model.set_attn_implementation("eager")  # attention maps need the eager path
    with torch.no_grad():
        image = model.get_image_features(torch.rand(2, 3, 64, 64), output_attentions=True)
    heads = model.config.vision_config.num_heads[-1]
    assert image.attentions[-1].shape == (2 * windows, heads, side * side, side * side)

    config = DemoConfig(output_dir=str(tmp_path), num_train_images=16, num_parallel_pairs=16, batch_size=8)
    if window_size is not None:
        config.window_size = window_size
    assert build_demo(config).model.config.vision_config.window_size == (window_size or DemoConfig.window_size)


@pytest.mark.parametrize("concept_ids", [True, False])
def test_demo_batches_carry_concept_ids_as_image_ids(concept_ids):
    from cclm_hf.demo import shapes
    from cclm_hf.demo.run import demo_model_config, demo_schedule
    from cclm_hf.tokenizer_training import train_xlm_roberta_tokenizer

    config = DemoConfig(batch_size=8, concept_ids=concept_ids)
    tokenizer = train_xlm_roberta_tokenizer(shapes.tokenizer_corpus(0), whole_words=True)
    pairs = shapes.pretraining_pairs(16, seed=0)
    parallel = shapes.parallel_sentences(16, seed=0)
    schedule = demo_schedule(config, tokenizer, demo_model_config(len(tokenizer)), pairs, parallel)
    batches = iter(schedule)
    for _ in range(4):
        batch = next(batches)
        if not concept_ids:
            assert "image_ids" not in batch
            continue
        ids = batch["image_ids"].tolist()
        assert len(ids) == 8 and all(0 <= i < shapes.NUM_CONCEPTS for i in ids)
        # the ids are what the texts say: every id's concept is named in its English caption / sentence
        texts = [batch["input_ids"]] + ([batch["input_ids_2"]] if "input_ids_2" in batch else [])
        for row, concept_id in enumerate(ids):
            concept = shapes.all_concepts()[concept_id]
            decoded = [tokenizer.decode(tokens[row], skip_special_tokens=True) for tokens in texts]
            assert any(concept.shape in text and concept.colour in text for text in decoded), (decoded, concept)


def test_itm_diagnostics_probes_the_matching_head_and_tabulates_runs(tmp_path):
    """benchmarks/itm_diagnostics.py on a few steps: one probe record per probe step with every measurement, a summary
    with recalls per language, and the table of runs."""
    from pathlib import Path

    script = Path(__file__).parents[1] / "benchmarks" / "itm_diagnostics.py"
    output = tmp_path / "run.json"
    command = [sys.executable, str(script), "--steps", "4", "--probe-every", "2", "--num-train-images", "128"]
    command += ["--num-parallel-pairs", "128", "--output", str(output)]
    subprocess.run(command, check=True, capture_output=True, text=True)
    lines = [json.loads(line) for line in output.read_text().splitlines()]
    probes, summary = lines[:-1], lines[-1]["summary"]
    assert [probe["step"] for probe in probes] == [0, 2, 4]
    for probe in probes:
        assert 0.0 < probe["itm_loss"] and 0.0 < probe["ttm_loss"]
        assert 0.0 < probe["itm_cls_attention_entropy"] <= 1.0 + 1e-6 and probe["itm_grad_kv"] > 0.0
        assert 0.0 <= probe["negatives_same_concept"] + probe["negatives_one_attribute_away"] <= 1.0
    assert set(summary["t2i_r1"]) == set(LANGUAGES) == set(summary["t2i_r1_itm"])
    table = subprocess.run(
        [sys.executable, str(script), "--table", str(output)], check=True, capture_output=True, text=True
    ).stdout
    assert len(table.splitlines()) == 3 and table.startswith("| run | ITM loss first < 0.60 |")


def test_vision_attribute_probe_trains_and_tabulates(tmp_path):
    """benchmarks/vision_attribute_probe.py on a few steps: accuracies per probe step and attribute in [0, 1], and
    the table of runs."""
    from pathlib import Path

    script = Path(__file__).parents[1] / "benchmarks" / "vision_attribute_probe.py"
    output = tmp_path / "probe.json"
    command = [sys.executable, str(script), "--steps", "4", "--probe-every", "2", "--num-train-images", "64"]
    command += ["--num-test-images", "48", "--rotation-degrees", "360", "--output", str(output)]
    subprocess.run(command, check=True, capture_output=True, text=True)
    run = json.loads(output.read_text())
    assert run["args"]["rotation_degrees"] == 360 and list(run["accuracy"]) == ["0", "2", "4"]
    for accuracy in run["accuracy"].values():
        assert set(accuracy) == {"shape", "colour", "size", "position"}
        assert all(0.0 <= value <= 1.0 for value in accuracy.values())
    table = subprocess.run(
        [sys.executable, str(script), "--table", str(output)], check=True, capture_output=True, text=True
    ).stdout.splitlines()
    assert table[0].startswith("| run | rotation | step | shape |") and len(table) == 4  # header, rule, 0, last
