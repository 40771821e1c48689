"""`Trainer` subclass for CCLM pre-training: mixed step types, original optimizer groups, loss breakdown, and
checkpoints that are only used for resuming once completely written."""

from __future__ import annotations

import json
import os
import re
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from accelerate import PartialState
from torch.utils.data import DataLoader
from transformers import Trainer, TrainerCallback
from transformers.utils import logging

from .optimization import create_pretraining_optimizer


logger = logging.get_logger(__name__)

CHECKPOINT_COMPLETE_MARKER = "checkpoint_complete.json"
_CHECKPOINT_DIR = re.compile(r"^checkpoint-(\d+)$")


def last_complete_checkpoint(output_dir: str | os.PathLike) -> str | None:
    """The newest `checkpoint-N` folder of `output_dir` whose writing finished (it holds the completion marker).

    A run killed while saving leaves a folder without the marker; it is never resumed from.
    """
    folder = Path(output_dir)
    if not folder.is_dir():
        return None
    complete = [
        (int(match[1]), path)
        for path in folder.iterdir()
        if (match := _CHECKPOINT_DIR.match(path.name)) and (path / CHECKPOINT_COMPLETE_MARKER).is_file()
    ]
    return str(max(complete)[1]) if complete else None


class JsonLinesLogger(TrainerCallback):
    """Appends every log record (losses per step type, learning rate, ...) as one JSON line (main process only)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as handle:
                handle.write(json.dumps({"step": state.global_step, **logs}) + "\n")


class CheckpointCompleteCallback(TrainerCallback):
    """Writes the completion marker into each `checkpoint-N` folder once every process has finished saving it.

    `Trainer` calls `on_save` right after a checkpoint is written; the marker is written atomically (a temporary
    file renamed), so it exists whole or not at all, and `last_complete_checkpoint` never picks a half-written
    checkpoint.
    """

    def on_save(self, args, state, control, **kwargs):
        PartialState().wait_for_everyone()  # every process has written its part (e.g. its RNG state)
        if args.should_save:
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            staging = folder / (CHECKPOINT_COMPLETE_MARKER + ".tmp")
            staging.write_text(json.dumps({"global_step": state.global_step}))
            os.replace(staging, folder / CHECKPOINT_COMPLETE_MARKER)


class OriginalOptimizerMixin:
    """`Trainer.create_optimizer` with the original AdamW groups, read from the model (`no_weight_decay()`,
    `new_parameters()`, or `self.new_parameter_patterns` instead of the latter), new parameters at
    `self.new_parameter_lr_multiplier` times the learning rate; pre-training and fine-tuning trainers share it."""

    new_parameter_patterns: tuple[str, ...] | None = None
    new_parameter_lr_multiplier: float = 2.0

    def create_optimizer(self, model=None):
        if self.optimizer is None:
            self.optimizer = create_pretraining_optimizer(
                self.model,
                learning_rate=self.args.learning_rate,
                weight_decay=self.args.weight_decay,
                betas=(self.args.adam_beta1, self.args.adam_beta2),
                eps=self.args.adam_epsilon,
                new_parameter_patterns=self.new_parameter_patterns,
                new_parameter_lr_multiplier=self.new_parameter_lr_multiplier,
            )
        return self.optimizer


class CCLMPretrainingTrainer(OriginalOptimizerMixin, Trainer):
    """Trains `CCLMForPreTraining` on a `PretrainingSchedule`.

    - one optimizer step per scheduled batch (or per summed pair of batches); the step type is part of the item;
    - AdamW groups of the original, read from the model (`no_weight_decay()`, `new_parameters()`; the patterns
      `new_parameter_patterns` replace the latter, e.g. `("*",)` from scratch), `new_parameter_lr_multiplier` for the
      new ones;
    - the logs carry the mean of every loss per step type since the last log (e.g. `parallel/ttm_loss`) and how many
      steps of each type ran;
    - each checkpoint gets a completion marker once all its files are written ([`CheckpointCompleteCallback`]).

    The train dataset must already be this process's shard: batches are not re-distributed by accelerate.
    """

    def __init__(
        self,
        *args: Any,
        new_parameter_patterns: Iterable[str] | None = None,
        new_parameter_lr_multiplier: float = 2.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.add_callback(CheckpointCompleteCallback)
        self.new_parameter_patterns = None if new_parameter_patterns is None else tuple(new_parameter_patterns)
        self.new_parameter_lr_multiplier = new_parameter_lr_multiplier
        self._loss_sums: dict[str, torch.Tensor] = {}
        self._loss_counts: dict[str, int] = defaultdict(int)
        self._step_counts: dict[str, int] = defaultdict(int)

    def get_train_dataloader(self) -> DataLoader:
        # the schedule yields whole batches, already sharded per process: no re-batching, no accelerate sharding
        return DataLoader(self.train_dataset, batch_size=None, num_workers=0)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        step_type = inputs.pop("step_type")
        batches = inputs["batches"] if step_type == "summed" else {step_type: inputs}
        total, outputs = None, None
        for name, batch in batches.items():
            outputs = model(**batch, batch_kind=name)
            total = outputs.loss if total is None else total + outputs.loss
            self._record(name, outputs)
        self._step_counts[step_type] += 1
        return (total, outputs) if return_outputs else total

    def _record(self, step_type: str, outputs) -> None:
        for name, value in outputs.items():
            if name.endswith("loss") and value is not None:
                key = f"{step_type}/{name}"
                value = value.detach().float()
                self._loss_sums[key] = self._loss_sums[key] + value if key in self._loss_sums else value
                self._loss_counts[key] += 1

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        # training logs (and the summary at the end, so the steps since the last log are not lost), not evaluation
        if self._loss_sums and ("loss" in logs or "train_loss" in logs):
            keys = sorted(self._loss_sums)
            means = torch.stack([self._loss_sums[key] / self._loss_counts[key] for key in keys])
            means = self.accelerator.reduce(means, reduction="mean")
            logs.update({key: round(value, 6) for key, value in zip(keys, means.tolist(), strict=True)})
            logs.update({f"steps/{name}": count for name, count in self._step_counts.items()})
            self._loss_sums.clear()
            self._loss_counts.clear()
        super().log(logs, start_time)

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
        # `Trainer` reloads weights with a non-strict `load_state_dict` on the raw file, but `save_pretrained` stores
        # the Swin weights under transformers' legacy names: the image encoder would silently keep its fresh
        # initialisation. Going through `from_pretrained` applies the renaming; the strict load then proves that
        # every tensor came back.
        model = model if model is not None else self.model
        if self.is_fsdp_enabled or self.is_deepspeed_enabled:
            return super()._load_from_checkpoint(resume_from_checkpoint, model)
        restored = type(model).from_pretrained(resume_from_checkpoint, config=model.config)
        model.load_state_dict(restored.state_dict(), strict=True)
        logger.info("Restored the model weights from %s", resume_from_checkpoint)
