"""Pre-train CCLM (or continue pre-training) with the original recipe, on one CPU or many GPUs.

    accelerate launch examples/pretrain.py --config examples/configs/pretrain_4m.yaml
    torchrun --nproc_per_node 8 examples/pretrain.py --config examples/configs/pretrain_3m.yaml
    python examples/pretrain.py --config examples/configs/tiny.yaml data.root=outputs/tiny-data training.max_steps=20

Any `key.sub_key=value` argument after the config overrides it (values are parsed as YAML). The YAML layout and its
mapping to the original `configs/Pretrain_3m.yaml` / `Pretrain_4m.yaml` are documented in `examples/configs/README.md`.
A run restarts from the newest complete checkpoint in its output directory unless `training.resume=false`.
"""

from __future__ import annotations

import argparse
import copy
import logging
from pathlib import Path
from typing import Any

import datasets
import torch
import yaml
from accelerate import PartialState
from transformers import AutoTokenizer, TrainingArguments, set_seed

from cclm_hf import CCLMConfig, CCLMForPreTraining, CCLMProcessor, train_xlm_roberta_tokenizer
from cclm_hf.data import HFDatasetReader, JsonlReader
from cclm_hf.data.pipeline import build_pretraining_schedule
from cclm_hf.training import (
    CCLMPretrainingTrainer,
    JsonLinesLogger,
    init_text_from_xlm_roberta,
    init_vision_from_swin,
    last_complete_checkpoint,
)


logger = logging.getLogger("pretrain")


def load_config(path: str, overrides: list[str]) -> dict[str, Any]:
    config = yaml.safe_load(Path(path).read_text())
    for override in overrides:
        key, separator, value = override.partition("=")
        if not separator:
            raise SystemExit(f"override {override!r} must look like key.sub_key=value")
        node = config
        *parents, leaf = key.split(".")
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = yaml.safe_load(value)
    return config


def resolve(root: str | None, files: str | list[str]) -> list[str]:
    files = [files] if isinstance(files, str) else list(files)
    return [str(Path(root) / f) if root and not Path(f).is_absolute() else f for f in files]


def build_tokenizer(config: dict[str, Any], output_dir: Path, state: PartialState):
    spec = config["model"].get("tokenizer", "xlm-roberta-large")
    if isinstance(spec, str):
        return AutoTokenizer.from_pretrained(spec)
    # a tokenizer trained on the captions of the run (toy data without an XLM-R vocabulary)
    folder = output_dir / "tokenizer"
    with state.main_process_first():
        if state.is_main_process and not folder.is_dir():
            texts = []
            # the streams count and log bad records later; here they are only passed over
            skip = (lambda error: None) if config["data"].get("skip_bad_samples", False) else None
            for name in ("images", "parallel_text"):
                if name in config["data"]:
                    reader = JsonlReader(
                        resolve(config["data"].get("root"), config["data"][name]["files"]), shuffle=False
                    )
                    for record, _ in reader.iter_records(on_bad_sample=skip):
                        caption = record.get("caption", "")
                        values = caption.values() if isinstance(caption, dict) else [caption]
                        texts += [*values, record.get("source_text", ""), record.get("target_text", "")]
            train_xlm_roberta_tokenizer(texts, whole_words=spec.get("whole_words", True)).save_pretrained(folder)
    return AutoTokenizer.from_pretrained(folder)


def build_model(config: dict[str, Any], tokenizer) -> CCLMForPreTraining:
    model_config = config["model"]
    # a preset (e.g. cclm-base, cclm-tiny) and/or explicit fields, which override the preset's
    fields = copy.deepcopy(model_config.get("config", {}))
    fields["text_config"] = {**fields.get("text_config", {}), "vocab_size": len(tokenizer)}
    if "preset" in model_config:
        cclm_config = CCLMConfig.from_preset(model_config["preset"], **fields)
    else:
        cclm_config = CCLMConfig(**fields)
    model = CCLMForPreTraining(cclm_config)
    if model_config.get("init_text_from"):
        init_text_from_xlm_roberta(model, model_config["init_text_from"])
    if model_config.get("init_vision_from"):
        init_vision_from_swin(model, model_config["init_vision_from"])
    return model


def build_schedule(config: dict[str, Any], model: CCLMForPreTraining, tokenizer, state: PartialState):
    data = config["data"]
    seed = config.get("seed", 42)
    shard = {"rank": state.process_index, "world_size": state.num_processes, "seed": seed}

    def reader(stream: dict[str, Any]) -> JsonlReader | HFDatasetReader:
        if "dataset" in stream:  # `datasets.load_dataset` arguments: Hub or local, streaming, webdataset shards
            return HFDatasetReader(datasets.load_dataset(**stream["dataset"]), **shard)
        return JsonlReader(resolve(data.get("root"), stream["files"]), repeat=True, **shard)

    vision = model.config.vision_config
    schedule = config.get("schedule", {})
    return build_pretraining_schedule(
        tokenizer,
        image_size=model.config.image_size,
        patch_stride=vision.patch_size * 2 ** (len(vision.depths) - 1),
        **{name: (reader(data[name]), data[name]) for name in ("images", "regions", "parallel_text") if name in data},
        languages=data.get("languages"),
        augment=data.get("augment", True),
        skip_bad_samples=data.get("skip_bad_samples", False),
        num_workers=data.get("num_workers", 0),
        mode=schedule.get("mode", "alternating"),
        region_probability=schedule.get("region_probability", 0.5),
        seed=seed,
        rank=state.process_index,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="YAML file, see examples/configs/")
    parser.add_argument("overrides", nargs="*", help="key.sub_key=value overrides")
    args = parser.parse_args()
    config = load_config(args.config, args.overrides)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    output_dir = Path(config.get("output_dir", "outputs/pretrain"))
    training = config.get("training", {})
    optimizer = config.get("optimizer", {})
    scheduler = config.get("scheduler", {})
    betas = optimizer.get("betas", [0.9, 0.98])
    training_args = TrainingArguments(
        output_dir=str(output_dir),
        max_steps=training["max_steps"],
        per_device_train_batch_size=1,  # batches come ready-made from the data streams
        learning_rate=optimizer.get("lr", 1e-4),
        weight_decay=optimizer.get("weight_decay", 0.01),
        adam_beta1=betas[0],
        adam_beta2=betas[1],
        adam_epsilon=optimizer.get("eps", 1e-8),
        lr_scheduler_type=scheduler.get("type", "linear"),
        warmup_steps=scheduler.get("warmup_steps", 0),
        max_grad_norm=training.get("max_grad_norm", 1.0),
        gradient_accumulation_steps=training.get("gradient_accumulation_steps", 1),
        gradient_checkpointing=training.get("gradient_checkpointing", False),
        bf16=training.get("bf16", False),
        fp16=training.get("fp16", False),
        logging_steps=training.get("logging_steps", 50),
        save_steps=training.get("save_steps", 1000),
        save_total_limit=training.get("save_total_limit"),
        report_to=training.get("report_to", ["tensorboard"]),
        seed=config.get("seed", 42),
        # parallel-text steps never touch the image encoder
        ddp_find_unused_parameters=True,
        use_cpu=training.get("use_cpu", not torch.cuda.is_available()),
    )
    state = PartialState()
    if state.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    tokenizer = build_tokenizer(config, output_dir, state)
    set_seed(config.get("seed", 42))  # the same initial weights on every process and in every run
    model = build_model(config, tokenizer)
    # from scratch every parameter is new; from XLM-R + Swin the model's own `new_parameters()` (cross-attention,
    # projections, heads)
    default_new_parameters = None if config["model"].get("init_text_from") else ["*"]
    trainer = CCLMPretrainingTrainer(
        model=model,
        args=training_args,
        train_dataset=build_schedule(config, model, tokenizer, state),
        callbacks=[JsonLinesLogger(output_dir / "train_log.jsonl")],
        new_parameter_patterns=optimizer.get("new_parameter_patterns", default_new_parameters),
        new_parameter_lr_multiplier=optimizer.get("new_parameter_lr_multiplier", 2.0),
    )
    checkpoint = last_complete_checkpoint(output_dir) if training.get("resume", True) else None
    if checkpoint:
        logger.info("Resuming from %s", checkpoint)
    trainer.train(resume_from_checkpoint=checkpoint)

    final_dir = output_dir / "final"
    trainer.save_model(str(final_dir))
    if state.is_main_process:
        CCLMProcessor.from_tokenizer(tokenizer, model.config.image_size).save_pretrained(final_dir)
        logger.info("Saved the pre-trained model and processor to %s", final_dir)


if __name__ == "__main__":
    main()
