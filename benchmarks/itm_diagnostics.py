"""Why does the demo's image-text matching (ITM) head learn so late? Measurements during the demo's pre-training.

Trains the demo's recipe (`cclm_hf.demo.run.build_demo`) for a fixed number of steps and, every `--probe-every`
steps, measures on one fixed image batch and one fixed parallel-text batch:

- the matching losses alone (ITM, TTM) and the contrastive ones (ITC, TTC);
- the matching head's margin `logit[match] - logit[no match]`: mean over positive and over negative pairs, and its
  spread (std over all pairs); a head stuck at its 1:2 prior has both means equal;
- gradient norms of the matching loss alone: on the fusion layers' cross-attention key/value projections (image
  tokens in the image batch, the other sentence's tokens in the parallel batch), per view token, on the vision
  tower, and for comparison the contrastive loss's on the vision tower;
- how the `<s>` query of the last fusion layer spreads its cross-attention over the view (entropy / log N: 1 is
  uniform);
- the share of drawn ITM negatives that show the positive's concept (duplicates) or a concept one attribute away.

At the end it evaluates contrastive and ITM-re-ranked text->image R@1 on the gallery. One JSON line per probe and a
summary go to `--output`; a table goes to stdout.

    python benchmarks/itm_diagnostics.py --steps 600 --threads 1 --output itm_base.json
    python benchmarks/itm_diagnostics.py --steps 600 --no-concept-ids --output itm_original.json
    python benchmarks/itm_diagnostics.py --steps 600 --patch-size 8 --output itm_patch8.json
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
from dataclasses import replace
from pathlib import Path

import torch
from transformers import TrainerCallback, get_constant_schedule_with_warmup, get_linear_schedule_with_warmup

from cclm_hf.configuration_cclm import CCLMConfig
from cclm_hf.demo import shapes
from cclm_hf.demo.run import DemoConfig, _as_retrieval_model, build_demo, demo_schedule, evaluate_gallery
from cclm_hf.losses import sample_hard_negatives
from cclm_hf.modeling_cclm import CCLMForPreTraining
from cclm_hf.tokenizer_training import train_xlm_roberta_tokenizer
from cclm_hf.training import create_pretraining_optimizer


# concept id -> its four attribute values, as a [192, 4] table of strings compared column by column
_ATTRIBUTES = [(c.shape, c.colour, c.size, c.position) for c in shapes.all_concepts()]


def attribute_distance(concept_a: torch.Tensor, concept_b: torch.Tensor) -> torch.Tensor:
    """Number of attributes (shape, colour, size, position) in which the concepts `concept_a[i]`, `concept_b[i]`
    differ."""
    return torch.tensor(
        [
            sum(x != y for x, y in zip(_ATTRIBUTES[a], _ATTRIBUTES[b], strict=True))
            for a, b in zip(concept_a.tolist(), concept_b.tolist(), strict=True)
        ]
    )


def grad_norm(loss: torch.Tensor, tensors: list[torch.Tensor]) -> float:
    grads = torch.autograd.grad(loss, tensors, retain_graph=True, allow_unused=True)
    return math.sqrt(sum(float(g.pow(2).sum()) for g in grads if g is not None))


class MatchingProbe(TrainerCallback):
    """Measures the matching head on fixed probe batches every `every` steps (see the module docstring)."""

    def __init__(self, model: CCLMForPreTraining, image_batch: dict, parallel_batch: dict, use_ids: bool, every: int):
        self.model, self.every, self.use_ids = model, every, use_ids
        self.image_batch, self.parallel_batch = image_batch, parallel_batch
        self.records: list[dict] = []

    def on_train_begin(self, args, state, control, **kwargs):
        self.records.append(self.probe(0))

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step % self.every == 0:
            self.records.append(self.probe(state.global_step))

    def probe(self, step: int) -> dict:
        model = self.model
        fusion = model.cclm.fusion_model
        key_value = [
            p
            for layer in fusion.layers
            for m in (layer.crossattention.self.key, layer.crossattention.self.value)
            for p in m.parameters()
        ]
        vision = list(model.cclm.vision_model.parameters())
        record = {"step": step}
        # eager attention for the probe: SDPA does not return attention weights
        fusion_config, implementation = fusion.config, fusion.config._attn_implementation
        fusion_config._attn_implementation = "eager"
        with torch.random.fork_rng():
            torch.manual_seed(step)
            for kind, batch in (("image", self.image_batch), ("parallel", self.parallel_batch)):
                ids = batch["image_ids"]
                if kind == "image":
                    view = model.cclm.embed_image(batch["pixel_values"])
                    text = model.cclm.embed_text(batch["input_ids"], batch["attention_mask"])
                else:
                    view = model.cclm.embed_text(batch["input_ids"], batch["attention_mask"])
                    text = model.cclm.embed_text(batch["input_ids_2"], batch["attention_mask_2"])
                contrastive = model.contrastive_objective(view, text, ids if self.use_ids else None)
                negative_views, negative_texts = sample_hard_negatives(
                    view.embeds, text.embeds, model.cclm.temperature, ids if self.use_ids else None
                )
                matching = model.matching_objective(
                    view, text, None, negative_views, negative_texts, output_attentions=True
                )
                margin = lambda logits: logits[:, 1] - logits[:, 0]  # noqa: E731
                positive, negative = margin(matching.positive_logits), margin(matching.negative_logits)
                prefix = "itm" if kind == "image" else "ttm"
                record[f"{prefix}_loss"] = float(matching.loss)
                record[f"{'itc' if kind == 'image' else 'ttc'}_loss"] = float(contrastive)
                record[f"{prefix}_margin_pos"] = float(positive.mean())
                record[f"{prefix}_margin_neg"] = float(negative.mean())
                record[f"{prefix}_margin_std"] = float(torch.cat([positive, negative]).std())
                record[f"{prefix}_grad_kv"] = grad_norm(matching.loss, key_value)
                token_grad = torch.autograd.grad(matching.loss, view.hidden_states, retain_graph=True)[0]
                record[f"{prefix}_grad_per_view_token"] = float(token_grad.norm(dim=-1).mean())
                attention = matching.fusion_output.cross_attentions[-1][:, :, 0]  # [B, heads, N] of the <s> query
                entropy = -(attention * attention.clamp_min(1e-12).log()).sum(-1)  # [B, heads]
                valid = view.attention_mask.sum(-1) if view.attention_mask is not None else attention.shape[-1]
                uniform = torch.as_tensor(valid, dtype=entropy.dtype).log().reshape(-1, 1)
                record[f"{prefix}_cls_attention_entropy"] = float((entropy / uniform).mean())
                if kind == "image":
                    record["itm_grad_vision"] = grad_norm(matching.loss, vision)
                    record["itc_grad_vision"] = grad_norm(contrastive, vision)
                    distance = attribute_distance(ids, ids[negative_views])
                    record["negatives_same_concept"] = float((distance == 0).float().mean())
                    record["negatives_one_attribute_away"] = float((distance == 1).float().mean())
                model.zero_grad(set_to_none=True)
        fusion_config._attn_implementation = implementation
        return record


def probe_batches(config: DemoConfig, tokenizer, model_config, pairs, parallel) -> tuple[dict, dict]:
    """The first image batch and the first parallel batch of the demo's data path, with concept ids."""
    schedule = demo_schedule(
        replace(config, concept_ids=True, seed=config.seed + 1), tokenizer, model_config, pairs, parallel
    )
    found = {}
    for batch in schedule:
        found.setdefault(batch.pop("step_type"), batch)
        if len(found) == 2:
            return found["image"], found["parallel"]
    raise AssertionError("unreachable")


def summary_table(paths: list[str]) -> str:
    """One markdown row per run (a JSON-lines file written by `--output`)."""
    rows = [
        "| run | ITM loss first < 0.60 | ITM loss (last probe) | margin pos - neg | <s> attention entropy image / text "
        "| grad per view token ITM / TTM | grad on vision ITM / ITC | negatives same concept / 1 attribute away "
        "| t2i R@1 en, mean others | ITM re-rank en, mean others |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for path in paths:
        lines = [json.loads(line) for line in Path(path).read_text().splitlines()]
        probes, summary = lines[:-1], lines[-1]["summary"]
        last = probes[-1]
        left = next((p["step"] for p in probes[1:] if p["itm_loss"] < 0.60), None)
        # medians over the second half of training: single probes are noisy
        half = probes[len(probes) // 2 :]

        def median(key, probes=half):
            values = sorted(p[key] for p in probes)
            return values[len(values) // 2]

        def recall(values):
            others = [v for k, v in values.items() if k != "en"]
            return f"{values['en']:.2f}, {sum(others) / len(others):.2f}"

        rows.append(
            f"| {Path(path).stem} | {left if left is not None else 'never'} | {last['itm_loss']:.3f} "
            f"| {last['itm_margin_pos'] - last['itm_margin_neg']:.2f} "
            f"| {median('itm_cls_attention_entropy'):.2f} / {median('ttm_cls_attention_entropy'):.2f} "
            f"| {median('itm_grad_per_view_token') / median('ttm_grad_per_view_token'):.2f} "
            f"| {median('itm_grad_vision') / median('itc_grad_vision'):.3f} "
            f"| {last['negatives_same_concept']:.2f} / {last['negatives_one_attribute_away']:.2f} "
            f"| {recall(summary['t2i_r1'])} | {recall(summary['t2i_r1_itm'])} |"
        )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--table", nargs="+", metavar="RUN_JSON", help="only print the summary table of these runs")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--probe-every", type=int, default=50)
    parser.add_argument("--num-train-images", type=int, default=DemoConfig.num_train_images)
    parser.add_argument("--num-parallel-pairs", type=int, default=DemoConfig.num_parallel_pairs)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--batch-size", type=int, default=DemoConfig.batch_size, help="the demo's (runs A-P in ITM_DIAGNOSTICS: 64)"
    )
    parser.add_argument("--no-concept-ids", dest="concept_ids", action="store_false")
    parser.add_argument("--learning-rate", type=float, default=DemoConfig.learning_rate)
    parser.add_argument("--new-parameter-lr-multiplier", type=float, default=DemoConfig.new_parameter_lr_multiplier)
    parser.add_argument("--warmup-steps", type=int, default=DemoConfig.warmup_steps)
    parser.add_argument(
        "--new-parameters",
        choices=("all", "model"),
        default="all",
        help="what the LR multiplier applies to: every parameter (the demo) or the model's new_parameters()",
    )
    parser.add_argument("--lr-decay", action="store_true", help="linear decay to 0 over --steps (default: constant)")
    parser.add_argument(
        "--rotation-degrees",
        type=float,
        default=shapes.ROTATION_DEGREES,
        help="range of the shapes' random rotation (the demo's default; 360: any angle, the demo before issue 10)",
    )
    parser.add_argument("--width", type=int, default=None, help="text width = vision output width (default 64)")
    parser.add_argument("--patch-size", type=int, default=None, help="Swin patch size (default 4: 8x8 image tokens)")
    parser.add_argument("--depths", default=None, help="Swin stages, e.g. 2,2,2 (default 2,2)")
    parser.add_argument(
        "--window-size",
        type=int,
        default=DemoConfig.window_size,
        help="Swin window, at most the last stage's side (default: the demo's, 4; runs A-P used 8)",
    )
    parser.add_argument("--fusion-layers", type=int, default=None)
    parser.add_argument(
        "--initializer-range", type=float, default=None, help="std of the text stack's and heads' init"
    )
    parser.add_argument("--vision-initializer-range", type=float, default=None, help="std of the vision tower's init")
    parser.add_argument(
        "--absolute-position-embeddings",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="Swin's absolute position embeddings (default: the cclm-tiny preset's choice)",
    )
    parser.add_argument("--output")
    args = parser.parse_args()
    if args.table:
        print(summary_table(args.table))
        return
    if not args.output:
        parser.error("--output is required to train")

    with tempfile.TemporaryDirectory() as workdir:
        config = DemoConfig(
            output_dir=workdir,
            budget_s=1e9,
            num_train_images=args.num_train_images,
            num_parallel_pairs=args.num_parallel_pairs,
            batch_size=args.batch_size,
            concept_ids=args.concept_ids,
            learning_rate=args.learning_rate,
            new_parameter_lr_multiplier=args.new_parameter_lr_multiplier,
            warmup_steps=args.warmup_steps,
            rotation_degrees=args.rotation_degrees,
            num_threads=args.threads,
        )
        tokenizer = train_xlm_roberta_tokenizer(shapes.tokenizer_corpus(config.seed), whole_words=True)
        vision, text = {}, {"vocab_size": len(tokenizer)}
        depths = [int(d) for d in args.depths.split(",")] if args.depths else [2, 2]
        patch_size = args.patch_size or 4
        if args.depths:
            vision.update(depths=depths, num_heads=[2 * 2**i for i in range(len(depths))])
        last_stage_side = 64 // (patch_size * 2 ** (len(depths) - 1))
        vision.update(patch_size=patch_size, window_size=min(args.window_size, last_stage_side))
        if args.width:
            text.update(hidden_size=args.width, intermediate_size=4 * args.width)
        vision["embed_dim"] = (args.width or 64) // 2 ** (len(depths) - 1)
        if args.absolute_position_embeddings is not None:
            vision["use_absolute_embeddings"] = args.absolute_position_embeddings
        if args.fusion_layers:
            text["num_fusion_layers"] = args.fusion_layers
        top = {"projection_dim": args.width} if args.width else {}
        if args.initializer_range:
            text["initializer_range"] = top["initializer_range"] = args.initializer_range
        if args.vision_initializer_range:
            vision["initializer_range"] = args.vision_initializer_range
        model_config = CCLMConfig.from_preset("cclm-tiny", vision_config=vision, text_config=text, **top)

        pairs = shapes.pretraining_pairs(
            config.num_train_images, seed=config.seed, rotation_degrees=config.rotation_degrees
        )
        parallel = shapes.parallel_sentences(config.num_parallel_pairs, seed=config.seed)
        image_batch, parallel_batch = probe_batches(config, tokenizer, model_config, pairs, parallel)

        class StopAt(TrainerCallback):
            def on_step_end(self, _args, state, control, **kwargs):
                control.should_training_stop = state.global_step >= args.steps

        demo = build_demo(config, model_config)
        if args.new_parameters == "model":
            demo.trainer.optimizer = create_pretraining_optimizer(
                demo.model,
                learning_rate=config.learning_rate,
                new_parameter_lr_multiplier=config.new_parameter_lr_multiplier,
            )
        # a fixed number of steps instead of the demo's time budget: warm-up, then constant or a linear decay to 0
        optimizer = demo.trainer.optimizer
        demo.trainer.lr_scheduler = (
            get_linear_schedule_with_warmup(optimizer, config.warmup_steps, args.steps)
            if args.lr_decay
            else get_constant_schedule_with_warmup(optimizer, config.warmup_steps)
        )
        probe = MatchingProbe(demo.model, image_batch, parallel_batch, args.concept_ids, args.probe_every)
        demo.trainer.add_callback(probe)
        demo.trainer.add_callback(StopAt())
        demo.trainer.train()
        retrieval = _as_retrieval_model(demo.model, Path(workdir) / "model")
        results = evaluate_gallery(retrieval, demo.processor, demo.gallery, config.itm_rerank_k)

    summary = {
        "args": vars(args),
        "t2i_r1": {lang: round(v["t2i_r1"], 3) for lang, v in results.items()},
        "t2i_r1_itm": {lang: round(v["t2i_r1_itm"], 3) for lang, v in results.items()},
    }
    with open(args.output, "w") as handle:
        for record in probe.records:
            handle.write(json.dumps(record) + "\n")
        handle.write(json.dumps({"summary": summary}) + "\n")
    columns = [
        "step",
        "itm_loss",
        "itm_margin_pos",
        "itm_margin_neg",
        "itm_margin_std",
        "itm_grad_kv",
        "ttm_grad_kv",
        "itm_grad_per_view_token",
        "ttm_grad_per_view_token",
        "itm_grad_vision",
        "itc_grad_vision",
        "itm_cls_attention_entropy",
        "ttm_cls_attention_entropy",
        "ttm_loss",
        "itc_loss",
        "negatives_same_concept",
        "negatives_one_attribute_away",
    ]
    print(" ".join(f"{c[:12]:>12}" for c in columns))
    for record in probe.records:
        print(" ".join(f"{record[c]:12.4g}" for c in columns))
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
