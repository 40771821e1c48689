"""The order in which pre-training visits its three data streams.

The original runs, per iteration, a parallel-text optimizer step and then an image step or (with probability 0.5 when
region data exists) a region step. Every process must take the same kind of step at the same time, because the
contrastive losses gather features across processes. The original relied on identical Python RNG states; here the
choice is a pure function of `(seed, iteration)`, so all processes agree without communicating.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, Literal

import torch
from torch.utils.data import IterableDataset


StepType = Literal["image", "region", "parallel"]


class PretrainingSchedule(IterableDataset):
    """Yields ready batches from the streams in the original's order.

    Args:
        image_batches, region_batches, parallel_batches: re-iterable sources of collated batches (e.g. DataLoaders
            over this process's shard); any may be `None`, at least one must be given. A source that runs out is
            started again (its next epoch).
        mode: `"alternating"`: one optimizer step per batch, per iteration the parallel-text batch first, then the
            image or region batch (the original). `"summed"`: one item per iteration holding both batches, whose
            losses are added into one optimizer step (X2-VLM's `mixed_in_batch`).
        region_probability: chance that an iteration's main step uses the region stream instead of the image stream.
        seed: seeds the step-type choices; the same on every process.

    Items are `{"step_type": ..., **batch}`, or `{"step_type": "summed", "batches": {step_type: batch, ...}}`.
    """

    def __init__(
        self,
        image_batches: Iterable[dict[str, Any]] | None = None,
        region_batches: Iterable[dict[str, Any]] | None = None,
        parallel_batches: Iterable[dict[str, Any]] | None = None,
        mode: Literal["alternating", "summed"] = "alternating",
        region_probability: float = 0.5,
        seed: int = 0,
    ) -> None:
        if mode not in ("alternating", "summed"):
            raise ValueError(f"mode must be 'alternating' or 'summed', got {mode!r}")
        self.sources = {
            name: source
            for name, source in (("parallel", parallel_batches), ("image", image_batches), ("region", region_batches))
            if source is not None
        }
        if not self.sources:
            raise ValueError("PretrainingSchedule needs at least one batch source")
        self.mode = mode
        self.region_probability = region_probability
        self.seed = seed

    def step_types(self, iteration: int) -> list[StepType]:
        """The streams visited in `iteration`, in order; identical on every process."""
        steps: list[StepType] = ["parallel"] if "parallel" in self.sources else []
        has_image, has_region = "image" in self.sources, "region" in self.sources
        if has_image and has_region:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + iteration)
            steps.append("region" if torch.rand((), generator=generator).item() < self.region_probability else "image")
        elif has_image or has_region:
            steps.append("image" if has_image else "region")
        return steps

    def __iter__(self) -> Iterator[dict[str, Any]]:
        iterators: dict[str, Iterator] = {}

        def next_batch(name: str) -> dict[str, Any]:
            try:
                return next(iterators[name])
            except (KeyError, StopIteration):
                iterators[name] = iter(self.sources[name])
            try:
                return next(iterators[name])
            except StopIteration:
                raise ValueError(f"the {name} stream yields no batches (is its shard of the data empty?)") from None

        iteration = 0
        while True:
            steps = self.step_types(iteration)
            if self.mode == "alternating":
                for step_type in steps:
                    yield {"step_type": step_type, **next_batch(step_type)}
            else:
                yield {"step_type": "summed", "batches": {step_type: next_batch(step_type) for step_type in steps}}
            iteration += 1
