"""Command line of the benchmark scripts: `HfArgumentParser` dataclasses and `TrainingArguments` with the original
defaults.

```text
accelerate launch examples/run_<family>.py --task TASK --data_root ROOT --model_name_or_path MODEL \\
    --output_dir OUT [--setting zero_shot|few_shot|translate_test] [--languages de,ja] [--num_shots N] \\
    [--train_languages en|de|...|all] [--do_train] [--do_eval] [--do_predict] [--skip_bad_samples] \\
    [any TrainingArguments flag]
```

The task's original hyper-parameters ([`~cclm_hf.finetuning.tasks.TaskSpec.defaults`]) become the defaults of the
corresponding `TrainingArguments` flags, so any flag given on the command line wins. Checkpoint selection follows
`--do_eval`: with `--do_train --do_eval` the model is evaluated on the dev set every epoch (after `eval_delay`), only
improving checkpoints are saved (`save_strategy="best"`) and the best one is loaded at the end; `--save_strategy no`
turns selection off (tiny runs) and keeps the last weights.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from transformers import HfArgumentParser, TrainingArguments

from .tasks import TaskSpec, get_task


__all__ = [
    "BenchmarkArguments",
    "FinetuningTrainingArguments",
    "ModelArguments",
    "RetrievalArguments",
    "parse_benchmark_arguments",
]


@dataclass
class ModelArguments:
    model_name_or_path: str = field(
        metadata={
            "help": "A pre-training folder (examples/pretrain.py, cclm-hf demo), a converted original checkpoint, or "
            "a model fine-tuned on this task (few-shot starts from the English fine-tuned folder)."
        }
    )
    processor_name_or_path: str | None = field(
        default=None, metadata={"help": "Where the processor is, when MODEL has none (default: MODEL)."}
    )
    image_size: int | None = field(
        default=None,
        metadata={
            "help": "Fine-tune at this resolution (the original configs use 384 from 224 pre-training: the Swin "
            "relative position tables are resized as the original does). Default: the model's own."
        },
    )


@dataclass
class BenchmarkArguments:
    task: str = field(metadata={"help": "The benchmark (see the script's --help for its tasks)."})
    data_root: str = field(metadata={"help": "ROOT laid out as the original README (iglue/, images/, data/)."})
    setting: Literal["zero_shot", "few_shot", "translate_test"] = field(
        default="zero_shot",
        metadata={
            "help": "zero_shot: train on English, test every language; few_shot: continue from an English-fine-"
            "tuned MODEL on --num_shots target-language shots; translate_test: test the machine-translated files."
        },
    )
    languages: str | None = field(
        default=None, metadata={"help": "Comma-separated test languages (default: all of the task / setting)."}
    )
    num_shots: str | None = field(
        default=None, metadata={"help": "Few-shot split (e.g. 48, 100, 10x2; default: the IGLUE maximum)."}
    )
    train_languages: str = field(
        default="en",
        metadata={"help": "Multi30K / MSCOCO protocols: en (English only), one language, or all."},
    )
    skip_bad_samples: bool = field(
        default=False,
        metadata={"help": "Skip (count and log) bad records and images instead of stopping with an error."},
    )
    seeds: str | None = field(
        default=None,
        metadata={"help": "Comma-separated seeds: one run each in OUT/seed_<s>/, mean ± std in OUT/metrics.json."},
    )
    train_file: str | None = field(
        default=None, metadata={"help": "Training file(s), comma-separated; {lang} and {shots} are replaced."}
    )
    dev_file: str | None = field(default=None, metadata={"help": "Dev file(s) for checkpoint selection."})
    test_file: str | None = field(default=None, metadata={"help": "Test file template, e.g. .../{lang}/test.jsonl."})
    image_root: str | None = field(default=None, metadata={"help": "Image folder (default: derived from ROOT)."})
    coco_image_root: str | None = field(
        default=None, metadata={"help": "xFlickr&CO: the COCO val2014 folder (default: ROOT/images/val2014)."}
    )
    nlvr2_image_root: str | None = field(
        default=None,
        metadata={"help": "MaRVL: the NLVR2 image folder of its English sets (default: ROOT/images/nlvr2)."},
    )
    answer_list: str | None = field(default=None, metadata={"help": "VQA / GQA: the candidate answers file."})
    max_words: int | None = field(default=None, metadata={"help": "pre_caption word limit (default: the task's)."})
    max_tokens: int | None = field(default=None, metadata={"help": "Training token limit (default: the task's)."})

    def language_list(self) -> list[str] | None:
        return (
            [language.strip() for language in self.languages.split(",") if language.strip()]
            if self.languages
            else None
        )

    def seed_list(self) -> list[int] | None:
        if not self.seeds:
            return None
        try:
            return [int(seed) for seed in self.seeds.split(",") if seed.strip()]
        except ValueError as error:
            raise ValueError(f"--seeds must be comma-separated integers, got {self.seeds!r}") from error


@dataclass
class RetrievalArguments:
    k_test: int | None = field(
        default=None, metadata={"help": "ITM re-ranking candidates per query (default: the task's, 128 or 256)."}
    )
    itm_batch_size: int = field(default=128, metadata={"help": "Pairs per ITM re-ranking batch."})
    text_batch_size: int = field(default=64, metadata={"help": "Texts per encoding batch (batch_size_test_text)."})


@dataclass
class AnswerRankingArguments:
    k_test: int | None = field(
        default=None,
        metadata={"help": "Candidate answers kept by the first-token stage of the ranking (default 128)."},
    )


@dataclass
class FinetuningTrainingArguments(TrainingArguments):
    """`TrainingArguments` whose evaluation / saving strategy follows `--do_train` / `--do_eval` (see the module)."""

    eval_strategy: str = field(
        default="auto",
        metadata={"help": "auto: every epoch with --do_train --do_eval, else no; or no / steps / epoch."},
    )
    save_strategy: str = field(
        default="auto",
        metadata={"help": "auto: 'best' (improving dev checkpoints only) when evaluating during training, else no."},
    )
    load_best_model_at_end: bool | None = field(
        default=None, metadata={"help": "Default: whenever checkpoints are saved and evaluated."}
    )
    save_total_limit: int | None = field(default=1, metadata={"help": "Checkpoints kept (the best is always kept)."})
    remove_unused_columns: bool = field(
        default=False, metadata={"help": "Samples carry raw text for the collator: keep every field."}
    )

    def __post_init__(self) -> None:
        if not self.output_dir:
            raise ValueError("--output_dir is required")
        evaluating_during_training = self.do_train and self.do_eval
        if self.eval_strategy == "auto":
            self.eval_strategy = "epoch" if evaluating_during_training else "no"
        if self.save_strategy == "auto":
            self.save_strategy = "best" if evaluating_during_training and self.eval_strategy != "no" else "no"
        if self.load_best_model_at_end is None:
            self.load_best_model_at_end = (
                self.eval_strategy != "no"
                and self.save_strategy != "no"
                and (self.save_strategy == "best" or self.save_strategy == self.eval_strategy)
            )
        super().__post_init__()


def parse_benchmark_arguments(
    family: str, extra: Sequence[type] = (), argv: Sequence[str] | None = None
) -> tuple[TaskSpec, ModelArguments, BenchmarkArguments, list, FinetuningTrainingArguments]:
    """Parse the command line of a benchmark script of `family`; the task's defaults are applied first.

    Returns `(task, model_args, benchmark_args, [extra dataclass instances], training_args)`.
    """
    parser = HfArgumentParser((ModelArguments, BenchmarkArguments, *extra, FinetuningTrainingArguments))
    peek = argparse.ArgumentParser(add_help=False)
    peek.add_argument("--task")
    peek.add_argument("--setting", default="zero_shot")
    known, _ = peek.parse_known_args(argv)
    if known.task is not None:
        try:
            spec = get_task(known.task, family)
        except ValueError as error:
            parser.error(str(error))
        parser.set_defaults(**spec.defaults(known.setting))
    model_args, benchmark_args, *extras, training_args = parser.parse_args_into_dataclasses(args=argv)
    return get_task(benchmark_args.task, family), model_args, benchmark_args, extras, training_args
