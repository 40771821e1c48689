"""The body shared by the benchmark scripts: parse, read and check the data, build the head, train, select, test,
write `OUT/metrics.json` / `metrics.md` and the fine-tuned model.

A script is a [`BenchmarkFamily`] (what differs: the head, how to read a file, how to build the `Trainer`, how to test)
and one call of [`run_benchmark`]. Bad input (a missing image, a malformed line, an unknown label, ...) stops the
script with `error: <message naming file, record and problem>` as its last words and exit status 1, never a
traceback; `--skip_bad_samples` turns record-level problems into counted, logged skips.
"""

from __future__ import annotations

import copy
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import transformers
from accelerate import PartialState
from accelerate.utils import gather_object
from transformers import AutoConfig, PreTrainedModel, Trainer, set_seed

from ..conversion import CONVERSION_TARGETS
from ..data.benchmarks import (
    BadRecordLog,
    BenchmarkDataError,
    BenchmarkDataset,
    BenchmarkRecord,
)
from ..data.images import BadSampleError
from ..data.transforms import eval_transform, finetune_train_transform
from ..errors import CCLMUserError
from ..evaluation import build_metrics, combine_seeds, mean_and_std, write_metrics
from ..model_card import ModelCardError, write_folder_card
from .arguments import BenchmarkArguments, FinetuningTrainingArguments, ModelArguments, parse_benchmark_arguments
from .data import RunData, RunPlan, load_run_data, plan_runs
from .modeling import load_processor, load_task_model, text_capacity
from .tasks import TaskSpec


logger = logging.getLogger(__name__)

__all__ = ["BAD_INPUT_ERRORS", "BenchmarkFamily", "RunContext", "run_benchmark"]

# What bad input raises (benchmark files, MODEL, arguments); anything else is a bug and keeps its traceback.
BAD_INPUT_ERRORS = (CCLMUserError, BadSampleError)


@dataclass
class RunContext:
    """Everything a family needs to build its trainer and test sets for one run."""

    spec: TaskSpec
    model_args: ModelArguments
    benchmark_args: BenchmarkArguments
    family_args: list
    training_args: FinetuningTrainingArguments
    plan: RunPlan
    data: RunData
    model: PreTrainedModel
    processor: Any

    @property
    def tokenizer(self):
        return self.processor.tokenizer

    @property
    def image_size(self) -> int:
        return self.model.config.image_size

    @property
    def max_words(self) -> int:
        return self.benchmark_args.max_words or self.spec.max_words

    @property
    def max_tokens(self) -> int:
        """Training token limit: the task's (or `--max_tokens`; none for NLVR2 / MaRVL, as the original), within what
        the model can number."""
        limit = self.benchmark_args.max_tokens or self.spec.max_tokens
        return text_capacity(self.model) if limit is None else min(limit, text_capacity(self.model))

    @property
    def eval_max_tokens(self) -> int:
        """Evaluation texts are not truncated by the original beyond the model's capacity."""
        return text_capacity(self.model)

    def train_transform(self, horizontal_flip: bool = True):
        image_processor = self.processor.image_processor
        return finetune_train_transform(
            self.image_size,
            horizontal_flip=horizontal_flip,
            mean=image_processor.image_mean,
            std=image_processor.image_std,
        )

    def eval_transform(self):
        image_processor = self.processor.image_processor
        return eval_transform(self.image_size, mean=image_processor.image_mean, std=image_processor.image_std)


class BenchmarkFamily:
    """What a benchmark script adds to [`run_benchmark`]. Subclasses set the class attributes and the methods.

    Attributes:
        name: The family of `TaskSpec.family` (`retrieval`, `xvnli`, `vqa`, `nlvr`).
        head: The task head, a `cclm_hf.conversion.CONVERSION_TARGETS` name (`retrieval`, `classification`, `nlvr`,
            `vqa`); its new parameters (`model.new_parameters()`) train at twice the learning rate.
        extra_arguments: Further `HfArgumentParser` dataclasses of the family.
        metric_names: The metrics of a test set, as `test` returns them.
    """

    name: str
    head: str
    extra_arguments: tuple[type, ...] = ()
    metric_names: tuple[str, ...] = ()

    def model_kwargs(self, spec: TaskSpec) -> dict[str, Any]:
        """Config fields of the head (e.g. `num_labels`)."""
        return {}

    def read(
        self,
        spec: TaskSpec,
        args: BenchmarkArguments,
        path: str,
        split: str,
        language: str,
        roots: dict[str, str],
        log: BadRecordLog,
    ) -> list[BenchmarkRecord]:
        """Records of one annotation file."""
        raise NotImplementedError

    def prepare_training_args(self, args: FinetuningTrainingArguments) -> None:
        """Adjust the training arguments of a run in place (e.g. drop the last incomplete batch)."""

    def build_trainer(self, context: RunContext) -> Trainer:
        raise NotImplementedError

    def test(self, trainer: Trainer, context: RunContext) -> dict[str, dict[str, float]]:
        """`{language: metrics}` of `context.data.tests`."""
        raise NotImplementedError


def _configure_logging(training_args: FinetuningTrainingArguments) -> None:
    logging.basicConfig(
        format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", datefmt="%m/%d/%Y %H:%M:%S", force=False
    )
    level = training_args.get_process_log_level()
    for name in ("cclm_hf", "__main__"):
        logging.getLogger(name).setLevel(level)
    transformers.utils.logging.set_verbosity(level)


def _last_words(error: Exception) -> str:
    """The message of a bad-input error; for one re-raised from a DataLoader worker, the original message."""
    message = str(error)
    if "Original Traceback" in message:
        message = message.strip().splitlines()[-1]
        message = message.split(": ", 1)[1] if message.split(": ", 1)[0].endswith("Error") else message
    return message


def _skipped_while_training(trainer: Trainer) -> dict[str, int]:
    """Training samples replaced because their image failed to load (`--skip_bad_samples`), over all processes."""
    dataset = trainer.train_dataset
    counts = dict(dataset.bad_samples.counts()) if isinstance(dataset, BenchmarkDataset) else {}
    if PartialState().num_processes > 1:
        gathered: dict[str, int] = {}
        for part in gather_object([counts]):
            for kind, count in part.items():
                gathered[kind] = gathered.get(kind, 0) + count
        counts = gathered
    return counts


def _warn_unless_fine_tuned(family: BenchmarkFamily, model_name_or_path: str) -> None:
    architectures = getattr(AutoConfig.from_pretrained(model_name_or_path), "architectures", None) or []
    if CONVERSION_TARGETS[family.head].model_class.__name__ not in architectures:
        logger.warning(
            "Few-shot training starts from the English-fine-tuned model of the task (the original protocol), but "
            "%s holds %s.",
            model_name_or_path,
            ", ".join(architectures) or "an unknown architecture",
        )


def _logged_dev_metrics(trainer: Trainer) -> dict[str, float] | None:
    """The dev evaluation of the weights the trainer ends with, when training already made it: the best checkpoint's
    (loaded at the end), or the last step's. `None` when the final weights were never evaluated."""
    state = trainer.state
    step = (
        state.best_global_step if trainer.args.load_best_model_at_end and state.best_global_step else state.global_step
    )
    evaluations = [entry for entry in state.log_history if entry.get("step") == step and "eval_runtime" in entry]
    return evaluations[-1] if evaluations else None


def run_benchmark(family: BenchmarkFamily, argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run a benchmark script of `family` on `argv` (default: the command line). Returns the metrics record."""
    spec, model_args, benchmark_args, family_args, training_args = parse_benchmark_arguments(
        family.name, family.extra_arguments, argv
    )
    _configure_logging(training_args)
    try:
        return _run_seeds(family, spec, model_args, benchmark_args, family_args, training_args)
    except BAD_INPUT_ERRORS as error:
        sys.stderr.flush()
        raise SystemExit(f"error: {_last_words(error)}") from None


def _run_seeds(family, spec, model_args, benchmark_args, family_args, training_args) -> dict[str, Any]:
    try:
        seeds = benchmark_args.seed_list() or [training_args.seed]
    except ValueError as error:
        raise BenchmarkDataError(str(error)) from error
    output_dir = training_args.output_dir
    records = []
    for seed in seeds:
        seed_dir = output_dir if len(seeds) == 1 else os.path.join(output_dir, f"seed_{seed}")
        records.append(_run_seed(family, spec, model_args, benchmark_args, family_args, training_args, seed, seed_dir))
        if len(seeds) > 1 and PartialState().is_main_process:
            write_metrics(records[-1], seed_dir)
            _write_model_card(seed_dir)
    record = records[0] if len(seeds) == 1 else combine_seeds(records, seeds)
    if PartialState().is_main_process:
        json_path, _ = write_metrics(record, output_dir)
        logger.info("Wrote %s and metrics.md", json_path)
        _write_model_card(output_dir)
    PartialState().wait_for_everyone()
    return record


def _write_model_card(folder: str) -> None:
    """The model card (README.md) of a folder holding both a fine-tuned model and its metrics.json."""
    if not os.path.isfile(os.path.join(folder, "config.json")):
        return
    try:
        logger.info("Wrote the model card %s", write_folder_card(folder))
    except ModelCardError as error:  # the run's results are written; a card can be made later with `cclm-hf card`
        logger.warning("No model card for %s: %s", folder, error)


def _run_seed(family, spec, model_args, benchmark_args, family_args, training_args, seed, output_dir):
    languages: dict[str, dict[str, float]] = {}
    counts: dict[str, Any] = {}
    dev_runs: list[dict[str, float]] = []
    plans = plan_runs(spec, benchmark_args, output_dir)
    for plan in plans:
        args = copy.copy(training_args)
        args.seed, args.output_dir = seed, plan.output_dir
        family.prepare_training_args(args)
        data = load_run_data(
            spec,
            benchmark_args,
            plan,
            family.read,
            train=args.do_train,
            dev=args.do_eval,
            test=args.do_predict,
            num_threads=min(8, os.cpu_count() or 1),
        )
        set_seed(seed)
        if benchmark_args.setting == "few_shot" and args.do_train:
            _warn_unless_fine_tuned(family, model_args.model_name_or_path)
        model = load_task_model(
            family.head,
            model_args.model_name_or_path,
            image_size=model_args.image_size,
            **family.model_kwargs(spec),
        )
        processor = load_processor(
            model_args.model_name_or_path, model_args.processor_name_or_path, model.config.image_size
        )
        context = RunContext(spec, model_args, benchmark_args, family_args, args, plan, data, model, processor)
        trainer = family.build_trainer(context)
        if args.do_train:
            logger.info("Fine-tuning on %s (%s)", ", ".join(plan.train_languages), plan.train_split)
            trainer.train()
            trainer.save_model(plan.output_dir)  # the selected (best) or last weights, with the processor
            if trainer.is_world_process_zero():  # what the model card lists
                Path(plan.output_dir, "training_args.json").write_text(args.to_json_string())
            skipped = _skipped_while_training(trainer)
            if skipped:
                data.counts["train"]["skipped_while_training"] = skipped
            logger.info("Saved the fine-tuned model and processor to %s", plan.output_dir)
        if args.do_eval:
            evaluated = _logged_dev_metrics(trainer) or trainer.evaluate()
            dev_runs.append(
                {name: evaluated[f"eval_{name}"] for name in family.metric_names if f"eval_{name}" in evaluated}
            )
        if args.do_predict:
            languages.update(family.test(trainer, context))
        prefix = "" if len(plans) == 1 else f"{plan.train_languages[0]}/"
        counts.update(
            {(prefix + name if name in ("train", "dev") else name): value for name, value in data.counts.items()}
        )
    # one dev evaluation per run; few-shot runs of several languages report the mean over their models
    extra = {"dev": mean_and_std(dev_runs)[0] if dev_runs else {}, "seed": seed}
    if spec.train_language_choices != ("en",):
        extra["train_languages"] = benchmark_args.train_languages
    if benchmark_args.setting == "few_shot":
        extra["num_shots"] = plans[0].shots
    setting = _reported_setting(spec, benchmark_args)
    return build_metrics(spec.name, setting, model_args.model_name_or_path, languages, counts, **extra)


def _reported_setting(spec: TaskSpec, args: BenchmarkArguments) -> str:
    """The `setting` of metrics.json: the command line's, except that Multi30K / MSCOCO name their fine-tuning
    protocol (`zero_shot`: English only, `single_language`, `all_language`), as the paper's table does."""
    if args.setting != "zero_shot" or spec.train_language_choices == ("en",) or args.train_languages == "en":
        return args.setting
    languages = (
        set(spec.train_language_choices) if args.train_languages == "all" else set(args.train_languages.split(","))
    )
    if languages == set(spec.train_language_choices):
        return "all_language"
    return "single_language" if len(languages) == 1 else args.setting
