"""What a benchmark run reads: the runs it consists of (few-shot: one per language), their files, and their records.

[`plan_runs`] turns the command line into [`RunPlan`]s; [`load_run_data`] reads every file of a plan with the family's
reader, checks that every image exists before anything starts (naming annotation file, record and path), decodes the
evaluation images once, and counts examples and skipped records per set.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..data.benchmarks import BadRecordLog, BenchmarkDataError, BenchmarkRecord, drop_missing_images, verify_images
from .arguments import BenchmarkArguments
from .tasks import TaskSpec


logger = logging.getLogger(__name__)

__all__ = ["RunData", "RunPlan", "image_roots", "load_run_data", "plan_runs"]

# family reader: (task, benchmark arguments, path, split, language, image roots, log) -> records
Reader = Callable[[TaskSpec, BenchmarkArguments, str, str, str, dict, BadRecordLog], list]
TRAIN_SPLITS = ("train", "few_shot_train")


@dataclass
class RunPlan:
    """One model trained (or not) and tested: zero-shot / translate-test runs have one, few-shot one per language."""

    train_split: str
    train_languages: list[str]
    dev_languages: list[str]
    test_split: str
    test_languages: list[str]
    output_dir: str
    shots: str | None = None


@dataclass
class RunData:
    train: list[BenchmarkRecord] = field(default_factory=list)
    dev: list[BenchmarkRecord] = field(default_factory=list)
    tests: dict[str, list[BenchmarkRecord]] = field(default_factory=dict)
    counts: dict[str, Any] = field(default_factory=dict)


def _check_languages(given: Sequence[str], allowed: Sequence[str], what: str) -> list[str]:
    unknown = [language for language in given if language not in allowed]
    if unknown:
        raise BenchmarkDataError(f"{what}: unknown language(s) {unknown}; available: {', '.join(allowed)}")
    return list(given)


def plan_runs(spec: TaskSpec, args: BenchmarkArguments, output_dir: str) -> list[RunPlan]:
    """The runs of one seed (see the module)."""
    setting = args.setting
    if setting == "few_shot":
        available = spec.few_shot_languages
    elif setting == "translate_test":
        available = spec.translate_test_languages
    else:
        available = spec.languages
    if not available:
        raise BenchmarkDataError(f"task {spec.name} has no {setting} setting")
    languages = _check_languages(args.language_list() or available, available, f"{spec.name} {setting}")
    if args.train_languages == "all":
        train_languages = list(spec.train_language_choices)
    else:
        train_languages = _check_languages(
            [language.strip() for language in args.train_languages.split(",")],
            spec.train_language_choices,
            f"{spec.name} --train_languages",
        )
    if setting == "few_shot":
        shots = args.num_shots or spec.default_shots
        return [
            RunPlan(
                "few_shot_train",
                [language],
                ["en"],
                "test",
                [language],
                output_dir if len(languages) == 1 else os.path.join(output_dir, language),
                shots,
            )
            for language in languages
        ]
    test_split = "translate_test" if setting == "translate_test" else "test"
    return [RunPlan("train", train_languages, train_languages, test_split, languages, output_dir)]


def image_roots(spec: TaskSpec, args: BenchmarkArguments) -> dict[str, str]:
    """The image folders of the task under ROOT; `--image_root`, `--coco_image_root`, `--nlvr2_image_root` replace
    theirs."""
    roots = {name: os.path.join(args.data_root, path) for name, path in spec.image_roots.items()}
    for name in ("image_root", "coco_image_root", "nlvr2_image_root"):
        if getattr(args, name):
            roots[name] = getattr(args, name)
    return roots


def _files(
    spec: TaskSpec, args: BenchmarkArguments, split: str, languages: Sequence[str], shots: str | None
) -> list[tuple[str, str]]:
    """`(language, path)` of a split: the flag's templates (comma-separated) or the task's defaults."""
    override = args.train_file if split in TRAIN_SPLITS else args.dev_file if split == "dev" else args.test_file
    if not override:
        return [(language, spec.path(args.data_root, split, language, shots)) for language in languages]
    files = []
    for template in (part.strip() for part in override.split(",") if part.strip()):
        for language in languages if "{lang}" in template or split not in (*TRAIN_SPLITS, "dev") else languages[:1]:
            path = template.format(lang=language, shots=shots or "")
            if (language, path) not in files:
                files.append((language, path))
    return files


def load_run_data(
    spec: TaskSpec,
    args: BenchmarkArguments,
    plan: RunPlan,
    read: Reader,
    *,
    train: bool,
    dev: bool,
    test: bool,
    num_threads: int = 8,
) -> RunData:
    """Read the files of `plan` the run needs, check the images, count the records.

    Raises:
        BenchmarkDataError / AnnotationFileError / BadSampleError: Bad input (without `--skip_bad_samples`, or a
            file-level problem), naming the file and the record.
    """
    roots = image_roots(spec, args)
    data = RunData()
    skip = args.skip_bad_samples

    def read_split(split: str, languages: Sequence[str], name: str) -> list[BenchmarkRecord]:
        records: list[BenchmarkRecord] = []
        log = BadRecordLog(skip, f"{spec.name} {name}")
        for language, path in _files(spec, args, split, languages, plan.shots):
            records += read(spec, args, path, split, language, roots, log)
        records = drop_missing_images(records, log, roots.get("image_root"))
        if split not in TRAIN_SPLITS:  # evaluation images are decoded once, before anything starts
            records = verify_images(records, log, num_threads)
        if not records:
            raise BenchmarkDataError(f"{spec.name} {name}: no usable records (skipped: {log.skipped})")
        data.counts[name] = {"examples": len(records), "skipped": log.skipped}
        return records

    if train:
        data.train = read_split(plan.train_split, plan.train_languages, "train")
    if dev:
        data.dev = read_split("dev", plan.dev_languages, "dev")
    if test:
        for language in plan.test_languages:
            data.tests[language] = read_split(plan.test_split, [language], language)
    return data
