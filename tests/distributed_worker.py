"""Run by `test_distributed.py` under `torchrun --nproc_per_node 2` (gloo, CPU): each process computes the ITC and
TTC losses and gradients on its half of a global batch and saves them for comparison with a single process."""

from __future__ import annotations

import sys

import torch
import torch.distributed as dist

from cclm_hf import CCLMForPreTraining
from cclm_hf.losses import contrastive_loss
from cclm_hf.training import PretrainingSchedule


sys.path.insert(0, __file__.rsplit("/", 1)[0])
from model_factories import random_batch, tiny_config  # noqa: E402


GLOBAL_BATCH = 8


def equal_width_config():
    # text width = vision width so that parallel-text batches can use the fusion layers
    base = tiny_config()
    return tiny_config(text_config={**base.text_config.to_dict(), "hidden_size": 48, "num_attention_heads": 4})


def global_batches(config):
    input_ids, attention_mask, pixel_values = random_batch(config, batch_size=GLOBAL_BATCH, length=9, seed=7)
    translation_ids, translation_mask, _ = random_batch(config, batch_size=GLOBAL_BATCH, length=8, seed=8)
    return input_ids, attention_mask, pixel_values, translation_ids, translation_mask


def contrastive_gradients(model, input_ids, attention_mask, pixel_values, translation_ids, translation_mask):
    """ITC (image/caption) and TTC (caption/translation) with their parameter gradients, as pre-training computes
    them (same projection, same temperature)."""
    normalize = torch.nn.functional.normalize
    base = model.cclm
    image = normalize(base.get_image_features(pixel_values).pooler_output, dim=-1)
    text = normalize(base.get_text_features(input_ids, attention_mask).pooler_output, dim=-1)
    translation = normalize(base.get_text_features(translation_ids, translation_mask).pooler_output, dim=-1)
    results = {}
    for name, (a, b) in {"itc": (image, text), "ttc": (text, translation)}.items():
        model.zero_grad(set_to_none=True)
        loss = contrastive_loss(a, b, base.temperature)
        loss.backward(retain_graph=True)
        results[f"{name}_loss"] = loss.detach()
        for param_name, param in model.named_parameters():
            if param.grad is not None:
                results[f"{name}_grad/{param_name}"] = param.grad.detach().clone()
    return results


def main(output_path: str) -> None:
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(0)
    config = equal_width_config()
    model = CCLMForPreTraining(config).eval()  # eval: no dropout, so both runs see the same network
    local = GLOBAL_BATCH // world
    rows = slice(rank * local, (rank + 1) * local)
    batch = [tensor[rows] for tensor in global_batches(config)]
    results = contrastive_gradients(model, *batch)
    # what DDP would do for every parameter that is only reached through this process's features
    for key, value in results.items():
        if "_grad/" in key:
            dist.all_reduce(value, op=dist.ReduceOp.SUM)
    schedule = PretrainingSchedule(image_batches=[{}], region_batches=[{}], parallel_batches=[{}], seed=11)
    step_types = [schedule.step_types(i) for i in range(100)]
    gathered = [None] * world
    dist.all_gather_object(gathered, step_types)
    results["step_types_in_sync"] = torch.tensor(all(other == step_types for other in gathered))
    if rank == 0:
        torch.save(results, output_path)
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
