"""`OUT/metrics.json` and `OUT/metrics.md` of the benchmark scripts.

`metrics.json`:

```json
{"task": "xvnli", "setting": "zero_shot", "model": "path/to/MODEL",
 "languages": {"ar": {"accuracy": 0.71}, ...},
 "average": {"accuracy": 0.72}, "average_languages": ["ar", "es", "fr", "ru"],
 "counts": {"ar": {"examples": 1164, "skipped": {"no_gold_label": 12}}, ..., "train": {...}},
 "dev": {"accuracy": 0.80}}
```

`dev` is the dev-set evaluation of the saved (selected) model; few-shot runs of several languages report the mean over
their models. Metric values are fractions in [0, 1]; `average` is the IGLUE average (English excluded, see
[`~cclm_hf.evaluation.metrics.language_average`]); counts of examples and skipped records are kept apart in `counts`.
Several seeds (see [`combine_seeds`]) give the means in `languages` / `average` / `dev`, their sample standard
deviations under `std`, and the seeds under `seeds`. `metrics.md` shows the same as percentages with the paper's
number beside ours where the paper has one.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..paper_results import paper_numbers
from .metrics import language_average, mean_and_std


__all__ = ["build_metrics", "combine_seeds", "render_metrics_markdown", "write_metrics"]


def build_metrics(
    task: str,
    setting: str,
    model: str,
    languages: Mapping[str, Mapping[str, float]],
    counts: Mapping[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """The `metrics.json` record of one run; `extra` fields (`dev`, `train_languages`, `num_shots`, ...) are kept."""
    for language, metrics in languages.items():
        for name, value in metrics.items():
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{task} {language} {name} = {value} is not a fraction in [0, 1]")
    average, averaged = language_average(languages)
    record = {
        "task": task,
        "setting": setting,
        "model": model,
        "languages": {language: dict(metrics) for language, metrics in languages.items()},
        "average": average,
        "average_languages": averaged,
        "counts": dict(counts or {}),
    }
    record.update(extra)
    return record


def combine_seeds(records: Sequence[Mapping[str, Any]], seeds: Sequence[int]) -> dict[str, Any]:
    """Mean ± sample std over the runs of several seeds (same task, setting and languages)."""
    if len(records) != len(seeds) or not records:
        raise ValueError("one metrics record per seed is needed")
    first = records[0]
    combined: dict[str, Any] = {key: value for key, value in first.items() if key not in ("languages", "average")}
    combined["languages"], std_languages = {}, {}
    for language in first["languages"]:
        combined["languages"][language], std_languages[language] = mean_and_std(
            [record["languages"][language] for record in records]
        )
    combined["average"], std_average = mean_and_std([record["average"] for record in records])
    combined["std"] = {"languages": std_languages, "average": std_average}
    if all(record.get("dev") for record in records):
        combined["dev"], combined["std"]["dev"] = mean_and_std([record["dev"] for record in records])
    combined["seeds"] = list(seeds)
    combined["counts"] = {
        f"seed_{seed}": record.get("counts", {}) for seed, record in zip(seeds, records, strict=True)
    }
    return combined


def _cell(value: float, std: float | None) -> str:
    return f"{100 * value:.2f}" + (f" ± {100 * std:.2f}" if std is not None else "")


def render_metrics_markdown(record: Mapping[str, Any]) -> str:
    """The table of `metrics.md`: one row per language and the average, values in %."""
    paper = paper_numbers(record["task"], record["setting"])  # {model: {scope: {metric: percent}}}
    if record["setting"] == "single_language":  # the paper's other columns come from models of other languages
        paper = {
            model: {record["train_languages"]: numbers.get(record["train_languages"], {})}
            for model, numbers in paper.items()
        }
    metric_names = list(next(iter(record["languages"].values()), {}))
    std = record.get("std", {})
    lines = [
        f"# {record['task']} ({record['setting']})",
        "",
        f"Model: `{record['model']}`. Values in %"
        + (f", mean ± std over seeds {record['seeds']}" if std else "")
        + "; the paper's numbers in brackets where it reports one.",
        "",
        "| language | " + " | ".join(metric_names) + " |",
        "|---|" + "---|" * len(metric_names),
    ]

    def row(label: str, scope: str, metrics: Mapping[str, float], stds: Mapping[str, float]) -> str:
        cells = []
        for name in metric_names:
            if name not in metrics:
                cells.append("")
                continue
            cell = _cell(metrics[name], stds.get(name) if stds else None)
            reported = [
                (model, numbers[scope][name]) for model, numbers in paper.items() if name in numbers.get(scope, {})
            ]
            if reported:
                cell += " (paper: " + ", ".join(f"{model} {value:.2f}" for model, value in reported) + ")"
            cells.append(cell)
        return f"| {label} | " + " | ".join(cells) + " |"

    for language, metrics in record["languages"].items():
        lines.append(row(language, language, metrics, std.get("languages", {}).get(language, {})))
    averaged = ", ".join(record.get("average_languages", []))
    lines.append(row(f"**average** ({averaged})", "average", record["average"], std.get("average", {})))
    if record.get("dev"):
        dev_names = ", ".join(
            f"{name} {_cell(value, std.get('dev', {}).get(name))}" for name, value in record["dev"].items()
        )
        lines += ["", f"English dev set (checkpoint selection): {dev_names}"]
    return "\n".join(lines) + "\n"


def write_metrics(record: Mapping[str, Any], output_dir: str | os.PathLike[str]) -> tuple[Path, Path]:
    """Write `metrics.json` and `metrics.md` into `output_dir`; returns both paths."""
    folder = Path(output_dir)
    folder.mkdir(parents=True, exist_ok=True)
    json_path, markdown_path = folder / "metrics.json", folder / "metrics.md"
    json_path.write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n")
    markdown_path.write_text(render_metrics_markdown(record))
    return json_path, markdown_path
