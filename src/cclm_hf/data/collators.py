"""Collators of the pre-training streams: a list of samples -> exactly the keyword arguments of
[`~cclm_hf.CCLMForPreTraining.forward`].

Text processing follows the original: `pre_caption(text, max_words)`, `<s> ... </s>` truncated to `max_tokens`, MLM
masking with [`~cclm_hf.data.masking.TextMasker`]; texts are padded to the longest of the batch instead of always to
`max_tokens` (shorter batches, same losses). Each collator owns a `torch.Generator` for masking and region-item
sampling: in a DataLoader worker it is seeded from `(seed, rank, worker_info.seed)`, in the main process once from
`(seed, rank)`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from ..processing_cclm import pre_caption
from .images import BadSampleError
from .masking import TextMasker
from .readers import epoch_seed


logger = logging.getLogger(__name__)

__all__ = ["ImageCaptionCollator", "ParallelTextCollator", "RegionCollator"]


class _TextCollator:
    """Cleaning, batched tokenization and masking shared by the collators.

    Args:
        tokenizer: An XLM-R-style tokenizer (`<s> ... </s>`, `<pad>`, `<mask>`).
        max_tokens: Token limit per text, `<s>` and `</s>` included (40 captions, 64 parallel text).
        max_words: `pre_caption` word limit (same values).
        max_masks: Masked positions per text (12 captions, 20 parallel text); the width of `masked_positions`.
        masker: Replaces the default `TextMasker.from_tokenizer(tokenizer, max_masks)` (mask_prob 0.4, spans).
        seed, rank: Seed of the collator's generator (see the module docstring).
        generator: Use this generator instead (no automatic seeding).
    """

    def __init__(
        self,
        tokenizer: Any,
        *,
        max_tokens: int,
        max_words: int,
        max_masks: int,
        masker: TextMasker | None = None,
        seed: int = 0,
        rank: int = 0,
        generator: torch.Generator | None = None,
    ) -> None:
        self.tokenizer = tokenizer
        self.max_tokens, self.max_words = max_tokens, max_words
        self.masker = masker if masker is not None else TextMasker.from_tokenizer(tokenizer, max_masks=max_masks)
        self.seed, self.rank = seed, rank
        self._explicit_generator = generator
        self._generator: torch.Generator | None = None
        self._generator_key: object = None

    def __getstate__(self) -> dict[str, Any]:
        # A `torch.Generator` cannot be sent to a DataLoader worker started with "spawn" / "forkserver" (torch fails
        # to share its state tensor), and a worker reseeds its own generator anyway: drop the automatic one, send
        # an explicit one as the bytes of its state.
        state = dict(self.__dict__, _generator=None, _generator_key=None)
        if self._explicit_generator is not None:
            state["_explicit_generator"] = bytes(self._explicit_generator.get_state().numpy())
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        explicit = state["_explicit_generator"]
        if isinstance(explicit, bytes):
            generator = torch.Generator()
            generator.set_state(torch.frombuffer(bytearray(explicit), dtype=torch.uint8))
            state["_explicit_generator"] = generator
        self.__dict__.update(state)

    @property
    def generator(self) -> torch.Generator:
        """The collator's generator, reseeded whenever it runs in a new DataLoader worker (see module docstring)."""
        if self._explicit_generator is not None:
            return self._explicit_generator
        worker = torch.utils.data.get_worker_info()
        key = ("worker", worker.seed) if worker is not None else ("main",)
        if self._generator is None or key != self._generator_key:
            entropy = (self.seed, self.rank) + ((worker.seed,) if worker is not None else ())
            self._generator = torch.Generator().manual_seed(epoch_seed(*entropy) % 2**63)
            self._generator_key = key
        return self._generator

    def clean(self, texts: Sequence[str]) -> list[str]:
        cleaned = []
        for index, text in enumerate(texts):
            try:
                cleaned.append(pre_caption(text, self.max_words))
            except ValueError as error:
                raise BadSampleError(f"batch item {index}", f"text is empty after cleaning: {text!r}") from error
        return cleaned

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """`<s> text </s>` truncated to `max_tokens`, padded to the longest of the batch."""
        encoded = self.tokenizer(
            self.clean(texts),
            max_length=self.max_tokens,
            truncation=True,
            padding="longest",
            return_attention_mask=True,
            return_token_type_ids=False,
            return_tensors="pt",
        )
        return {"input_ids": encoded["input_ids"].long(), "attention_mask": encoded["attention_mask"].long()}

    def tokenize_and_mask(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        batch = self.tokenize(texts)
        batch.update(self.masker(batch["input_ids"], batch["attention_mask"], generator=self.generator))
        return batch

    @staticmethod
    def ids(samples: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        """`{"image_ids": [B]}` when the samples carry ids (see the streams' `image_id_key` / `pair_id_key`)."""
        if not samples or "image_id" not in samples[0]:
            return {}
        return {"image_ids": torch.tensor([sample["image_id"] for sample in samples], dtype=torch.long)}


class ImageCaptionCollator(_TextCollator):
    """Batch of [`ImageCaptionStream`] samples -> `pixel_values`, `input_ids`, `attention_mask`, `masked_input_ids`,
    `masked_positions`, `masked_labels` (+ `input_ids_2`, `attention_mask_2` when the samples have `text_2`, and
    `image_ids` when they have ids).

    Args: see `_TextCollator`; defaults are the original's caption settings.
    """

    def __init__(
        self, tokenizer: Any, *, max_tokens: int = 40, max_words: int = 40, max_masks: int = 12, **kwargs: Any
    ) -> None:
        super().__init__(tokenizer, max_tokens=max_tokens, max_words=max_words, max_masks=max_masks, **kwargs)

    def __call__(self, samples: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        batch = {"pixel_values": torch.stack([sample["pixel_values"] for sample in samples])}
        batch.update(self.tokenize_and_mask([sample["text"] for sample in samples]))
        if all("text_2" in sample for sample in samples):
            second = self.tokenize([sample["text_2"] for sample in samples])
            batch["input_ids_2"], batch["attention_mask_2"] = second["input_ids"], second["attention_mask"]
        batch.update(self.ids(samples))
        return batch


class RegionCollator(_TextCollator):
    """Batch of [`RegionStream`] samples (one per image) -> exactly `batch_size` (image, region text) items.

    As the original's `collate_fn`: the items of all images are pooled and `batch_size` of them drawn without
    replacement; when there are fewer, all are kept and the batch is padded by re-drawing existing items (a random
    subset if that suffices, else by tiling), which duplicates pairs, i.e. false negatives for ITC: choose
    `max_images` (the DataLoader's batch size) and `max_regions` so that this is rare; it is logged (WARNING once per
    process, DEBUG afterwards). Deviation: images none of whose items was drawn are dropped from `pixel_values`
    (they feed no loss; the original encodes them anyway).

    Returns `pixel_values` `[N_img, 3, S, S]`, `image_index` `[B]`, `region_mask` `[B, 1 + G*G]`, `target_boxes`
    `[B, 4]`, `is_whole_image` `[B]`, and the masked text fields of the items' texts.

    Args:
        tokenizer: See `_TextCollator`.
        batch_size: Number of (image, text) items per batch (the original's `regions.batch_size`, 128).
        Other arguments: see `_TextCollator`; defaults are the original's caption settings.
    """

    def __init__(
        self,
        tokenizer: Any,
        batch_size: int,
        *,
        max_tokens: int = 40,
        max_words: int = 40,
        max_masks: int = 12,
        **kwargs: Any,
    ) -> None:
        super().__init__(tokenizer, max_tokens=max_tokens, max_words=max_words, max_masks=max_masks, **kwargs)
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}.")
        self.batch_size = batch_size
        self._warned_padding = False

    def choose_items(self, num_items: int) -> torch.Tensor:
        """Indices of the `batch_size` items drawn among `num_items` (see the class docstring)."""
        if num_items < 1:
            raise ValueError("A region batch needs at least one item.")
        if num_items >= self.batch_size:
            return torch.randperm(num_items, generator=self.generator)[: self.batch_size]
        missing = self.batch_size - num_items
        log = logger.debug if self._warned_padding else logger.warning
        log("Padding a region batch of %d items to %d by re-sampling items", num_items, self.batch_size)
        self._warned_padding = True
        if missing <= num_items:
            extra = torch.randperm(num_items, generator=self.generator)[:missing]
            return torch.cat([torch.arange(num_items), extra])
        return torch.arange(self.batch_size) % num_items

    def __call__(self, samples: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        counts = torch.tensor([len(sample["texts"]) for sample in samples])
        keep = self.choose_items(int(counts.sum()))
        image_of_item = torch.repeat_interleave(torch.arange(len(samples)), counts)[keep]
        used_images, image_index = torch.unique(image_of_item, sorted=True, return_inverse=True)
        all_texts = [text for sample in samples for text in sample["texts"]]
        batch = {
            "pixel_values": torch.stack([samples[i]["pixel_values"] for i in used_images.tolist()]),
            "image_index": image_index,
            "region_mask": torch.cat([sample["region_masks"] for sample in samples])[keep].long(),
            "target_boxes": torch.cat([sample["boxes"] for sample in samples])[keep].float(),
            "is_whole_image": torch.cat([sample["is_whole_image"] for sample in samples])[keep].long(),
        }
        batch.update(self.tokenize_and_mask([all_texts[i] for i in keep.tolist()]))
        return batch


class ParallelTextCollator(_TextCollator):
    """Batch of [`ParallelTextStream`] samples -> the parallel-text keyword arguments of the model.

    Default (the original's configs): sentence 1 masked (`input_ids`, `attention_mask`, `masked_input_ids`,
    `masked_positions`, `masked_labels`) + sentence 2 unmasked (`input_ids_2`, `attention_mask_2`): TTC + TTM +
    conditional MLM.

    `translation_lm=True` (the original's `use_tlm`): the masked input is one sequence `<s> A </s> B </s>`, each side
    truncated to `max_tokens - 1` tokens and the whole to `2 * max_tokens - 1` before the final `</s>` (so at most
    `2 * max_tokens` tokens), masked with the same masker and returned as `masked_input_ids` +
    `masked_attention_mask` (+ `masked_positions`, `masked_labels`); `input_ids` / `attention_mask` (A) and
    `input_ids_2` / `attention_mask_2` (B) stay unmasked for TTC.

    Args:
        translation_lm: See above.
        Other arguments: see `_TextCollator`; defaults are the original's parallel-text settings.
    """

    def __init__(
        self,
        tokenizer: Any,
        *,
        max_tokens: int = 64,
        max_words: int = 64,
        max_masks: int = 20,
        translation_lm: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(tokenizer, max_tokens=max_tokens, max_words=max_words, max_masks=max_masks, **kwargs)
        self.translation_lm = translation_lm

    def translation_lm_inputs(self, texts: Sequence[str], texts_2: Sequence[str]) -> dict[str, torch.Tensor]:
        """`<s> A </s> B </s>` per pair, padded to the longest: `input_ids`, `attention_mask` (unmasked)."""
        tokenizer = self.tokenizer
        bos = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
        eos = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
        side = self.max_tokens - 1
        pieces = tokenizer(
            self.clean(texts) + self.clean(texts_2),
            add_special_tokens=False,
            truncation=True,
            max_length=side,
            return_attention_mask=False,
            return_token_type_ids=False,
        )["input_ids"]
        first, second = pieces[: len(texts)], pieces[len(texts) :]
        sequences = [
            torch.tensor(([bos] + a + [eos] + b)[: 2 * self.max_tokens - 1] + [eos], dtype=torch.long)
            for a, b in zip(first, second, strict=True)
        ]
        lengths = torch.tensor([len(sequence) for sequence in sequences])
        input_ids = torch.nn.utils.rnn.pad_sequence(sequences, batch_first=True, padding_value=tokenizer.pad_token_id)
        attention_mask = (torch.arange(input_ids.shape[1]) < lengths[:, None]).long()
        return {"input_ids": input_ids, "attention_mask": attention_mask}

    def __call__(self, samples: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        texts = [sample["text"] for sample in samples]
        texts_2 = [sample["text_2"] for sample in samples]
        second = self.tokenize(texts_2)
        if not self.translation_lm:
            batch = self.tokenize_and_mask(texts)
        else:
            batch = self.tokenize(texts)
            joint = self.translation_lm_inputs(texts, texts_2)
            masked = self.masker(joint["input_ids"], joint["attention_mask"], generator=self.generator)
            batch.update(masked, masked_attention_mask=joint["attention_mask"])
        batch["input_ids_2"], batch["attention_mask_2"] = second["input_ids"], second["attention_mask"]
        batch.update(self.ids(samples))
        return batch
