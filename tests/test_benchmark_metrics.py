"""Benchmark metrics against hand-computed cases; metrics files; the IGLUE table from hand-written metrics.json."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from cclm_hf.evaluation import (
    accuracy,
    build_metrics,
    combine_seeds,
    iglue_table,
    language_average,
    load_runs,
    normalize_answer_digits_articles,
    normalize_answer_punctuation,
    render_metrics_markdown,
    retrieval_metrics,
    retrieval_ranks,
    vqa_accuracy,
    write_metrics,
)


REPO = Path(__file__).resolve().parents[1]


def test_accuracy():
    assert accuracy([0, 1, 2, 2], [0, 1, 1, 2]) == 0.75
    assert accuracy(["yes", "no"], ["yes", "yes"]) == 0.5
    with pytest.raises(ValueError):
        accuracy([1], [1, 2])


def test_vqa_answer_normalisation():
    assert normalize_answer_digits_articles("Two dogs") == "2 dogs"
    assert normalize_answer_digits_articles("the dog") == "dog"
    assert normalize_answer_digits_articles("dont know") == "don't know"
    assert normalize_answer_punctuation("yes.") == "yes"
    assert normalize_answer_punctuation("3.5") == "3.5"  # a period between digits stays
    assert normalize_answer_punctuation("black-and-white") == "black and white"
    assert normalize_answer_punctuation("black - white") == "black  white"  # next to a space: deleted
    assert normalize_answer_punctuation("1,000") == "1000"


def test_vqa_accuracy_hand_computed():
    # 10 annotators agree: any of the 9 others gives 3 matches or more
    assert vqa_accuracy("Yes.", ["yes"] * 10) == 1.0
    assert vqa_accuracy("Two", ["2"] * 10) == 1.0  # the prediction's number word becomes a digit
    # 2 annotators said "2": each of them sees 1 other (1/3), the 8 others see 2 (2/3): (2/3 + 16/3) / 10
    assert vqa_accuracy("2", ["2", "2", "3"] + ["4"] * 7) == pytest.approx(0.6)
    # 3 said "red": the 3 see 2 others (2/3), the 7 others see 3 (1): (2 + 7) / 10
    assert vqa_accuracy("red", ["red"] * 3 + ["blue"] * 7) == pytest.approx(0.9)
    assert vqa_accuracy("green", ["red"] * 3 + ["blue"] * 7) == 0.0
    # annotators disagree, so their answers get the punctuation rule (not digits / articles)
    assert vqa_accuracy("black and white", ["black-and-white"] * 4 + ["gray"] * 6) == 1.0


def test_retrieval_ranks_count_ties_against_the_query():
    scores = torch.tensor([[0.5, 0.5, 0.1], [0.2, 0.9, 0.9], [1.0, 1.0, 1.0]])
    positives = torch.tensor([[True, False, False], [False, False, True], [False, True, False]])
    # row 0: the wrong candidate 1 ties with the gold one -> rank 1; row 1: candidate 1 ties -> rank 1;
    # row 2: everything ties -> both wrong candidates first -> rank 2
    assert retrieval_ranks(scores, positives).tolist() == [1, 1, 2]
    # several positives: the best-scoring one counts
    assert retrieval_ranks(torch.tensor([[0.3, 0.8, 0.6]]), torch.tensor([[True, False, True]])).tolist() == [1]


def test_retrieval_metrics_hand_computed_with_ties():
    # 2 images, 3 captions (0 and 1 describe image 0, 2 describes image 1)
    image_to_text = torch.tensor([[0.1, 0.7, 0.7], [0.9, 0.2, 0.9]])
    text_to_image = torch.tensor([[0.3, 0.3], [0.8, 0.1], [0.5, 0.6]])
    metrics = retrieval_metrics(image_to_text, text_to_image, [0, 0, 1])
    # image 0: best caption 1 (0.7) tied with caption 2 -> rank 1; image 1: caption 2 (0.9) tied with 0 -> rank 1
    assert metrics["txt_r1"] == 0.0 and metrics["txt_r5"] == 1.0
    # caption 0: tie -> rank 1; caption 1: rank 0; caption 2: rank 0
    assert metrics["img_r1"] == pytest.approx(2 / 3) and metrics["img_r10"] == 1.0
    assert metrics["r_mean"] == pytest.approx((0 + 1 + 1 + 2 / 3 + 1 + 1) / 6)


def test_iglue_average_excludes_english():
    per_language = {"en": {"accuracy": 0.9}, "ar": {"accuracy": 0.5}, "fr": {"accuracy": 0.7}}
    average, languages = language_average(per_language)
    assert average == {"accuracy": pytest.approx(0.6)} and languages == ["ar", "fr"]
    assert language_average({"en": {"accuracy": 0.9}}) == ({"accuracy": 0.9}, ["en"])  # English-only tasks


def test_metrics_record_markdown_and_seeds(tmp_path):
    runs = [
        build_metrics(
            "xvnli",
            "zero_shot",
            "m",
            {"en": {"accuracy": 0.8}, "ar": {"accuracy": acc}},
            {"ar": {"examples": 3, "skipped": {}}},
            dev={"accuracy": 0.7},
        )
        for acc in (0.5, 0.7)
    ]
    assert runs[0]["average"] == {"accuracy": 0.5} and runs[0]["average_languages"] == ["ar"]
    combined = combine_seeds(runs, [0, 1])
    assert combined["languages"]["ar"]["accuracy"] == pytest.approx(0.6)
    assert combined["std"]["languages"]["ar"]["accuracy"] == pytest.approx(0.1414213, abs=1e-6)  # sample std
    assert combined["std"]["languages"]["en"]["accuracy"] == 0.0 and combined["seeds"] == [0, 1]
    markdown = render_metrics_markdown(combined)
    assert "| ar | 60.00 ± 14.14 |" in markdown
    assert "CCLM-base 3M 74.64" in markdown and "CCLM-base 4M 73.32" in markdown
    json_path, markdown_path = write_metrics(combined, tmp_path)
    assert json.loads(json_path.read_text())["average"]["accuracy"] == pytest.approx(0.6)
    with pytest.raises(ValueError, match="not a fraction"):
        build_metrics("xvnli", "zero_shot", "m", {"ar": {"accuracy": 74.6}})


def test_multi30k_markdown_shows_the_protocols_paper_numbers():
    record = build_metrics(
        "multi30k", "single_language", "m", {"de": {"r_mean": 0.5}, "fr": {"r_mean": 0.4}}, train_languages="de"
    )
    markdown = render_metrics_markdown(record)
    assert "CCLM-base 3M 91.90" in markdown  # single-language fine-tuning, German
    assert "| fr | 40.00 |" in markdown  # the paper's French number is of a model fine-tuned on French
    record = build_metrics("multi30k", "zero_shot", "m", {"de": {"r_mean": 0.5}})
    assert "CCLM-base 4M 91.70" in render_metrics_markdown(record)  # English-only fine-tuning


def _write_run(folder: Path, task: str, setting: str, languages: dict, **extra) -> Path:
    folder.mkdir(parents=True)
    record = build_metrics(task, setting, "my-cclm", languages, **extra)
    (folder / "metrics.json").write_text(json.dumps(record))
    return folder


def _load_table_script():
    spec = importlib.util.spec_from_file_location("iglue_table", REPO / "examples" / "iglue_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_iglue_table_from_five_hand_written_runs(tmp_path, capsys):
    folders = [
        _write_run(
            tmp_path / "xvnli",
            "xvnli",
            "zero_shot",
            {"en": {"accuracy": 0.9}, "ar": {"accuracy": 0.7}, "fr": {"accuracy": 0.8}},
        ),
        _write_run(tmp_path / "xgqa", "xgqa", "zero_shot", {"de": {"accuracy": 0.4}, "zh": {"accuracy": 0.5}}),
        _write_run(tmp_path / "marvl", "marvl", "zero_shot", {"id": {"accuracy": 0.6}, "tr": {"accuracy": 0.7}}),
        _write_run(
            tmp_path / "xflickrco",
            "xflickrco",
            "zero_shot",
            {"de": {"img_r1": 0.7, "txt_r1": 0.6}, "ja": {"img_r1": 0.5, "txt_r1": 0.4}},
        ),
        _write_run(tmp_path / "wit", "wit", "zero_shot", {"ar": {"img_r1": 0.25, "txt_r1": 0.3}}),
    ]
    table = _load_table_script().main([str(folder) for folder in folders])
    assert capsys.readouterr().out == table
    lines = table.splitlines()
    assert lines[0] == "| Setting | Model | XVNLI | xGQA | MaRVL | xF&C IR | xF&C TR | WIT IR | WIT TR |"
    assert "| zero_shot | ours (my-cclm) | 75.00 | 45.00 | 65.00 | 60.00 | 50.00 | 25.00 | 30.00 |" in lines
    assert "| zero_shot | CCLM-base 4M (paper) | 73.32 | 46.24 | 67.17 | 76.56 | 73.46 | 27.48 | 28.75 |" in lines
    assert (
        lines[-1]
        == "| translate_test | **bar: best English VLM** | 74.12 | 50.62 | 64.16 | 41.64 | 37.49 | 15.43 | 16.93 |"
    )


def test_iglue_table_merges_single_language_few_shot_runs_and_shows_seeds(tmp_path):
    few = [
        _write_run(tmp_path / f"fs_{language}", "xvnli", "few_shot", {language: {"accuracy": value}})
        for language, value in (("ar", 0.6), ("fr", 0.8))
    ]
    seeds = combine_seeds(
        [build_metrics("wit", "zero_shot", "m", {"ar": {"img_r1": v, "txt_r1": v}}) for v in (0.2, 0.4)], [0, 1]
    )
    (tmp_path / "wit").mkdir()
    (tmp_path / "wit" / "metrics.json").write_text(json.dumps(seeds))
    table = iglue_table(load_runs([*few, tmp_path / "wit"]))
    assert "| few_shot | ours (my-cclm) | 70.00 | – | – | – | – | – | – |" in table
    assert "| zero_shot | ours (m) | – | – | – | – | – | 30.00 ± 14.14 | 30.00 ± 14.14 |" in table
    assert "| few_shot | CCLM-base 3M (paper) | 75.15 | 50.94 | 70.53 | 66.04 | 68.15 | – | – |" in table
    with pytest.raises(ValueError, match="both have xvnli few_shot results"):
        iglue_table(load_runs([few[0], few[0]]))
    with pytest.raises(SystemExit, match="no metrics.json"):
        _load_table_script().main([str(tmp_path / "nowhere")])
