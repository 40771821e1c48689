"""IGLUE's main table (XVNLI, xGQA, MaRVL, xF&C IR, xF&C TR, WIT IR, WIT TR) from the runs' `metrics.json` files, next
to the paper's CCLM rows and the translate-test bar of the English-only models (`cclm_hf.paper_results`).

A run's column value is its `average` (English excluded). Several files of the same task and setting (e.g. few-shot
runs of one language each) are merged when their languages do not overlap, and their average is recomputed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..paper_results import IGLUE_COLUMNS, IGLUE_TRANSLATE_TEST, PAPER_MODELS, paper_numbers
from .metrics import language_average


__all__ = ["IGLUE_TASKS", "iglue_table", "load_runs", "merge_runs"]

IGLUE_TASKS = ("xvnli", "xgqa", "marvl", "xflickrco", "wit")
_SETTING_ORDER = ("zero_shot", "few_shot", "translate_test")


def load_runs(paths: Iterable[str | os.PathLike[str]]) -> list[dict[str, Any]]:
    """Read `metrics.json` from each path (an OUT folder or the file itself)."""
    runs = []
    for path in paths:
        path = Path(path)
        file = path / "metrics.json" if path.is_dir() else path
        if not file.is_file():
            raise FileNotFoundError(f"no metrics.json at {path}")
        try:
            run = json.loads(file.read_text())
        except json.JSONDecodeError as error:
            raise ValueError(f"{file}:{error.lineno}:{error.colno}: malformed json: {error.msg}") from error
        for key in ("task", "setting", "languages", "average"):
            if key not in run:
                raise ValueError(f"{file}: not a benchmark metrics.json (no {key!r})")
        run["_file"] = str(file)
        runs.append(run)
    return runs


def merge_runs(runs: Sequence[Mapping[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """`{(task, setting): run}`, merging runs of the same task and setting that cover different languages."""
    merged: dict[tuple[str, str], dict[str, Any]] = {}
    for run in runs:
        key = (run["task"], run["setting"])
        if key not in merged:
            merged[key] = dict(run)
            continue
        previous = merged[key]
        overlap = set(previous["languages"]) & set(run["languages"])
        if overlap:
            raise ValueError(
                f"{previous['_file']} and {run['_file']} both have {run['task']} {run['setting']} results for "
                f"{sorted(overlap)}"
            )
        languages = {**previous["languages"], **run["languages"]}
        average, averaged = language_average(languages)
        merged[key] = {
            **previous,
            "languages": languages,
            "average": average,
            "average_languages": averaged,
            "_file": f"{previous['_file']} + {run['_file']}",
        }
        merged[key].pop("std", None)  # a merged run has no seed statistics
    return merged


def _ours(run: Mapping[str, Any], metric: str) -> str:
    if metric not in run["average"]:
        return "–"
    value = 100 * run["average"][metric]
    std = run.get("std", {}).get("average", {}).get(metric)
    return f"{value:.2f}" + (f" ± {100 * std:.2f}" if std is not None else "")


def iglue_table(runs: Sequence[Mapping[str, Any]]) -> str:
    """The markdown table: our rows per setting, the paper's CCLM rows, the translate-test rows and their best."""
    merged = merge_runs(runs)
    unknown = sorted({task for task, _ in merged} - set(IGLUE_TASKS))
    if unknown:
        raise ValueError(f"not IGLUE tasks: {unknown} (expected {', '.join(IGLUE_TASKS)})")
    titles = [title for _, _, title in IGLUE_COLUMNS]
    lines = ["| Setting | Model | " + " | ".join(titles) + " |", "|---|---|" + "---|" * len(titles)]
    settings = sorted(
        {setting for _, setting in merged},
        key=lambda s: _SETTING_ORDER.index(s) if s in _SETTING_ORDER else len(_SETTING_ORDER),
    )
    for setting in settings:
        models = sorted({run["model"] for (_, run_setting), run in merged.items() if run_setting == setting})
        cells = [
            _ours(merged[(task, setting)], metric) if (task, setting) in merged else "–"
            for task, metric, _ in IGLUE_COLUMNS
        ]
        lines.append(f"| {setting} | ours ({', '.join(models)}) | " + " | ".join(cells) + " |")
        for model in PAPER_MODELS:
            numbers = {task: paper_numbers(task, setting).get(model, {}) for task in IGLUE_TASKS}
            paper = [numbers[task].get("average", {}).get(metric) for task, metric, _ in IGLUE_COLUMNS]
            if any(value is not None for value in paper):
                cells = ["–" if value is None else f"{value:.2f}" for value in paper]
                lines.append(f"| {setting} | {model} (paper) | " + " | ".join(cells) + " |")
    for model, row in IGLUE_TRANSLATE_TEST.items():
        lines.append(
            f"| translate_test | {model} (English VLM, IGLUE) | " + " | ".join(f"{v:.2f}" for v in row) + " |"
        )
    best = [max(column) for column in zip(*IGLUE_TRANSLATE_TEST.values(), strict=True)]
    lines.append("| translate_test | **bar: best English VLM** | " + " | ".join(f"{v:.2f}" for v in best) + " |")
    return "\n".join(lines) + "\n"
