"""CCLM's pre-training text masking (MLM and translation-MLM), vectorised over a padded batch.

The original `TextMaskingGenerator` works on one token list at a time, in a Python loop:

1. `n_pred = min(max_masks, max(1, round(n * mask_prob)))` for a sequence of `n` tokens `<s> t1 ... </s>`.
2. The candidate positions `1 .. n-1` (everything but `<s>`; `</s>` is a candidate, padding is not) are visited in a
   random order. A visited candidate that is already masked is skipped. Otherwise, with probability
   `skipgram_prob`, it starts a span of `randint(2, skipgram_size)` tokens, else a span of one token; the span is cut
   at the last token. The loop stops as soon as at least `n_pred` positions are masked.
3. A span can overshoot `n_pred` (by at most `skipgram_size - 1`); a uniformly random subset of `n_pred` positions is
   then kept.
4. Each kept position becomes `<mask>` with probability 0.8, else a token drawn uniformly from the whole vocabulary
   (special tokens included) with probability 0.5, else it stays unchanged (80% / 10% / 10%).

`TextMasker` draws from exactly this distribution without a loop over tokens or rows, by reformulating step 2:

* The random visiting order is given by i.i.d. uniform *visit times* (one random integer per position, made distinct
  within a row), and one span length is drawn per position up front. This is the same distribution: every span that
  is started consumes a fresh, independent length draw in the original; the lengths drawn here for skipped positions
  are simply never used.
* Whether a candidate starts a span depends only on the previous `skipgram_size - 1` positions: it is skipped iff one
  of them started a span earlier (smaller visit time) that is long enough to reach it. That is a recurrence with a
  finite state (the "started" flags of the previous `skipgram_size - 1` positions), i.e. a finite automaton with
  `2 ** (skipgram_size - 1)` states. Its per-position transition tables are composed with a parallel prefix scan
  (`ceil(log2(L))` gathers), which gives every position's flag at once.
* The time at which a position first gets masked is the smallest visit time among the started spans that cover it.
  The greedy loop stops right after the step at which the count reaches `n_pred`, and that step is the `n_pred`-th
  smallest of these times, so the masked set is "every position masked no later than that time".
* The overshoot is dropped by keeping the `n_pred` covered positions with the smallest fresh random keys: a uniformly
  random subset, as the original's shuffle-and-truncate.

Per-row k-th smallest values (`n_pred` varies along the batch) come from one `topk(max_masks)`, and the replacement
draws are made per output slot (`max_masks`) rather than per token.

Where the result may differ from the original, all negligibly:

* The random stream is torch's, not Python's `random`: identical *distribution*, different samples.
* Probabilities (span or not, span length, 80/10/10) come from float32 uniforms: granularity `2 ** -24`.
* Visit times and drop keys are `2 ** 40`-valued random integers with the position as tie-breaker: when two of them
  tie (probability below `L ** 2 * 2 ** -41` per row), the left position comes first instead of either with
  probability 1/2.
* Positions are returned in ascending order (the original returns `list(set)`, i.e. mostly ascending for small ints,
  shuffled when it had to drop an overshoot). The order carries no information for the MLM loss.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F


# The original hard-codes the replacement split: 80% `<mask>`, 10% a random token, 10% unchanged. One uniform draw
# per masked token decides: below 0.8 `<mask>`, below 0.9 a random token, else unchanged.
MASK_TOKEN_PROB = 0.8
RANDOM_TOKEN_PROB = 0.1

# `2 ** (skipgram_size - 1)` automaton states per position: beyond this the scan tables stop being small.
MAX_SKIPGRAM_SIZE = 8

# Random keys (visit times, drop keys) are `_KEY_RANGE`-valued integers times the length, plus the position: distinct
# within a row by construction, and below the `2 ** 62` sentinel of `_bounds` for any length below `2 ** 22`.
_KEY_RANGE = 2**40


def _bounds(dtype: torch.dtype) -> tuple[float | int, float | int]:
    """`(lowest, highest)` sentinels for "before everything" and "never" among keys or times of `dtype`.

    For integers, `-(2 ** 62)` and `2 ** 62`: beyond any random key, and exactly representable as a float (which
    `F.pad` converts its fill value to).
    """
    if dtype.is_floating_point:
        return -math.inf, math.inf
    return -(2**62), 2**62


def _random_keys(shape: tuple[int, int], generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """Uniformly random int64 keys, distinct within a row (ties of the random part are broken left first)."""
    length = shape[1]
    keys = torch.randint(0, _KEY_RANGE, shape, generator=generator, device=device)
    return keys * length + torch.arange(length, device=device)


def _kth_smallest(values: torch.Tensor, k: torch.Tensor, max_k: int) -> torch.Tensor:
    """`[B, 1]`: the `k[b]`-th smallest value of each row of `values` `[B, L]`, for `0 <= k <= max_k <= L`.

    One `topk(max_k)` serves all rows (`kthvalue` takes a single `k`, and a sort costs several times more). Rows with
    `k = 0` get a value below everything.
    """
    smallest = values.topk(max_k, dim=1, largest=False, sorted=True).values
    kth = smallest.gather(1, (k - 1).clamp(min=0)[:, None])
    return torch.where(k[:, None] > 0, kth, _bounds(values.dtype)[0])


def _span_starts(candidate: torch.Tensor, reach: list[torch.Tensor]) -> torch.Tensor:
    """Which candidates start a span when the greedy loop of the original runs to completion.

    Candidate `j` starts a span iff no position `j - d` (`1 <= d <= len(reach)`) started one that reaches `j` first
    (`reach[d - 1][:, j]`). The automaton state after position `j` holds the start flags of positions
    `j, j-1, ..., j-len(reach)+1` as bits `0, 1, ...`. Its transition tables `[B, L, S]` are composed left to right
    with a Hillis-Steele prefix scan, which gives the state after every position, starting from the initial state
    (no starts), in `ceil(log2(L))` gathers.
    """
    num_bits = len(reach)
    if num_bits == 0:
        return candidate
    num_states = 1 << num_bits
    # starts[s][b, j]: in state `s` (start flags left of `j`), does candidate `j` start a span when it is visited?
    # (One [B, L] op per state and flag: a few times cheaper than broadcasting over [B, L, S] for small S.)
    not_reached = [~reaches for reaches in reach]
    starts = []
    for state in range(num_states):
        start = candidate
        for bit in range(num_bits):
            if (state >> bit) & 1:
                start = start & not_reached[bit]
        starts.append(start)
    shifted_states = (torch.arange(num_states, device=candidate.device) << 1) & (num_states - 1)
    table = torch.stack(starts, dim=-1) | shifted_states  # [B, L, S]: the next state

    length = table.shape[1]
    offset = 1
    while offset < length:
        # table[j] <- table[j] o table[j - offset] (the earlier block applies first). The gather reads the old
        # tables into a new tensor before the slice is overwritten.
        table[:, offset:] = torch.gather(table[:, offset:], 2, table[:, :-offset])
        offset *= 2
    return (table[:, :, 0] & 1).bool()


def _greedy_span_cover(
    candidate: torch.Tensor,
    visit_time: torch.Tensor,
    span_length: torch.Tensor,
    num_to_predict: torch.Tensor,
    max_span: int,
    max_to_predict: int | None = None,
) -> torch.Tensor:
    """The set of positions the original greedy loop has masked when it stops, before any overshoot is dropped.

    Args:
        candidate: `[B, L]` bool, the maskable positions.
        visit_time: `[B, L]`, distinct within a row (float or int); the loop visits candidates by increasing time.
        span_length: `[B, L]` long >= 1, the span a candidate starts if it is not already masked when visited.
        num_to_predict: `[B]` long, `n_pred`, at most the number of candidates of the row.
        max_span: the largest value `span_length` can take (`skipgram_size`, or 1 without spans).
        max_to_predict: an upper bound of `num_to_predict`, at most `L` (default `L`): the width of the `topk`.

    Returns:
        `[B, L]` bool, with at least `num_to_predict` positions and at most `num_to_predict + max_span - 1`.
    """
    length = candidate.shape[1]
    _, never = _bounds(visit_time.dtype)
    # Left-pad by `max_span - 1` columns, so that "the value `d` positions to the left" is a view.
    pad = max_span - 1
    candidate_padded = F.pad(candidate, (pad, 0), value=False)
    time_padded = F.pad(visit_time, (pad, 0), value=never)
    span_padded = F.pad(span_length, (pad, 0), value=0)

    def left(padded: torch.Tensor, distance: int) -> torch.Tensor:
        return padded[:, pad - distance : pad - distance + length]

    # reach[d - 1][:, j]: a span started at `j - d` masks `j` first, i.e. `j - d .. j` are all candidates (spans are
    # cut at the last token and never cross a non-candidate), it is long enough, and `j - d` is visited first.
    reach = []
    contiguous = candidate
    for distance in range(1, max_span):
        contiguous = contiguous & left(candidate_padded, distance)
        earlier = left(time_padded, distance) < visit_time
        reach.append(contiguous & earlier & (left(span_padded, distance) > distance))
    starts = _span_starts(candidate, reach)

    # When each position first gets masked: its own visit if it starts a span, else the earliest visit of a started
    # span that reaches it. Every candidate gets masked eventually; other positions never.
    masked_time = torch.where(starts, visit_time, never)
    starts_padded = F.pad(starts, (pad, 0), value=False)
    for distance, reaches in enumerate(reach, start=1):
        reached_by = reaches & left(starts_padded, distance)
        masked_time = torch.minimum(masked_time, torch.where(reached_by, left(time_padded, distance), never))
    # The loop stops right after the step at which the n_pred-th position gets masked.
    stop_time = _kth_smallest(masked_time, num_to_predict, max_to_predict or length)
    return candidate & (masked_time <= stop_time)


class TextMasker:
    """The text masking of CCLM pre-training (masked LM on captions, translation LM on parallel text), batched.

    Draws from the same distribution as the original `TextMaskingGenerator` (with `mask_whole_word=False`, as CCLM
    uses it) applied to every unpadded sequence of a batch; see the module docstring for the algorithm and the few,
    negligible differences. It is a fixed sequence of tensor ops (no loop over rows or tokens, no host
    synchronisation) on the device of the inputs, so it fits a CPU collator as well as the GPU training step.

    Args:
        mask_token_id: id of `<mask>`.
        vocab_size: random replacements are drawn uniformly from `[0, vocab_size)`, special tokens included, as in
            the original (which draws from `tokenizer.get_vocab()`).
        max_masks: at most this many positions are masked per sequence; the outputs `masked_positions` and
            `masked_labels` have this width. CCLM uses 12 for captions and 20 for parallel text.
        mask_prob: fraction of the sequence length (special tokens included) to mask, rounded half to even.
        skipgram_prob: probability that a visited candidate starts a span of several tokens instead of one.
        skipgram_size: spans are `2 .. skipgram_size` tokens long (uniform); below 2 there are no spans.

    Example:

    ```python
    >>> masker = TextMasker.from_tokenizer(tokenizer, max_masks=12)
    >>> batch = tokenizer(captions, padding="longest", truncation=True, max_length=40, return_tensors="pt")
    >>> mlm = masker(batch["input_ids"], batch["attention_mask"], generator=torch.Generator().manual_seed(0))
    >>> sorted(mlm)
    ['masked_input_ids', 'masked_labels', 'masked_positions']
    ```
    """

    def __init__(
        self,
        mask_token_id: int,
        vocab_size: int,
        max_masks: int,
        mask_prob: float = 0.4,
        skipgram_prob: float = 0.2,
        skipgram_size: int = 3,
    ) -> None:
        if vocab_size < 1 or not 0 <= mask_token_id < vocab_size:
            raise ValueError(f"Need 0 <= mask_token_id < vocab_size, got {mask_token_id} and {vocab_size}.")
        if max_masks < 1:
            raise ValueError(f"`max_masks` must be at least 1, got {max_masks}.")
        if not 0.0 <= mask_prob <= 1.0:
            raise ValueError(f"`mask_prob` must be in [0, 1], got {mask_prob}.")
        if not 0.0 <= skipgram_prob <= 1.0:
            raise ValueError(f"`skipgram_prob` must be in [0, 1], got {skipgram_prob}.")
        if not 1 <= skipgram_size <= MAX_SKIPGRAM_SIZE:
            raise ValueError(f"`skipgram_size` must be in [1, {MAX_SKIPGRAM_SIZE}], got {skipgram_size}.")
        self.mask_token_id = mask_token_id
        self.vocab_size = vocab_size
        self.max_masks = max_masks
        self.mask_prob = mask_prob
        self.skipgram_prob = skipgram_prob
        self.skipgram_size = skipgram_size

    @classmethod
    def from_tokenizer(cls, tokenizer: Any, max_masks: int, **kwargs: Any) -> TextMasker:
        """Build from a tokenizer: its `<mask>` id, and `len(tokenizer)` as the vocabulary of random replacements.

        `len(tokenizer)` counts added tokens too, like the original's `len(tokenizer.get_vocab())`.
        """
        if tokenizer.mask_token_id is None:
            raise ValueError("The tokenizer has no mask token.")
        return cls(tokenizer.mask_token_id, len(tokenizer), max_masks, **kwargs)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(mask_token_id={self.mask_token_id}, vocab_size={self.vocab_size}, "
            f"max_masks={self.max_masks}, mask_prob={self.mask_prob}, skipgram_prob={self.skipgram_prob}, "
            f"skipgram_size={self.skipgram_size})"
        )

    @property
    def _uses_spans(self) -> bool:
        return self.skipgram_prob > 0 and self.skipgram_size >= 2

    def num_to_predict(self, lengths: torch.Tensor) -> torch.Tensor:
        """`n_pred` of the original for sequences of `lengths` tokens: `min(max_masks, max(1, round(n * mask_prob)))`.

        Computed in float64 and rounded half to even, exactly like Python's `round` on a float. Sequences with fewer
        candidates (`n - 1`) than this get all their candidates masked (see `__call__`).
        """
        rounded = torch.round(lengths.to(torch.float64) * self.mask_prob).long()
        return rounded.clamp(min=1, max=self.max_masks)

    @torch.no_grad()
    def __call__(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> dict[str, torch.Tensor]:
        """Mask a padded batch.

        Args:
            input_ids: `[B, L]` token ids `<s> t1 ... </s>` followed (or preceded) by padding.
            attention_mask: `[B, L]`, 1 on real tokens. The real tokens of a row must be one contiguous block; its
                first token (`<s>`) is never masked, its last one (`</s>`) can be, padding never is.
            generator: source of randomness, on the device of `input_ids`; the same generator state gives the same
                output. `None` uses torch's global generator.

        Returns:
            A dict of int64 tensors:
            - `masked_input_ids` `[B, L]`: `input_ids` with the masked positions replaced (80% `<mask>`, 10% a random
              id, 10% unchanged); padding untouched.
            - `masked_positions` `[B, max_masks]`: the masked positions in ascending order, then 0 (never a masked
              position, since `<s>` is never masked).
            - `masked_labels` `[B, max_masks]`: the original ids at `masked_positions`, then -100.
            Every row has exactly `min(n_pred, n - 1)` masked positions, `n` being its number of real tokens.
        """
        if input_ids.dim() != 2 or attention_mask.shape != input_ids.shape:
            raise ValueError(
                "Expected `input_ids` and `attention_mask` of the same shape [batch, length], got "
                f"{tuple(input_ids.shape)} and {tuple(attention_mask.shape)}."
            )
        batch_size, length = input_ids.shape
        if length == 0:
            raise ValueError("Cannot mask sequences of length 0: every sequence starts with `<s>`.")
        shape = (batch_size, length)
        device = input_ids.device
        input_ids = input_ids.long()

        real = attention_mask.bool()
        first_real = real & (real.long().cumsum(dim=1) == 1)
        candidate = real & ~first_real
        num_to_predict = torch.minimum(self.num_to_predict(real.sum(dim=1)), candidate.sum(dim=1))

        # Fixed shapes and order of random draws: the output is a function of the generator state only.
        visit_time = _random_keys(shape, generator, device)
        if self._uses_spans:
            span_draw = torch.rand(shape, generator=generator, device=device)
            # Below `skipgram_prob`, `span_draw / skipgram_prob` is uniform in [0, 1): it also picks the length.
            multi_length = 2 + (span_draw / self.skipgram_prob * (self.skipgram_size - 1)).long()
            span_length = torch.where(span_draw < self.skipgram_prob, multi_length.clamp(max=self.skipgram_size), 1)
            max_span = self.skipgram_size
        else:
            span_length = torch.ones(shape, dtype=torch.long, device=device)
            max_span = 1
        drop_key = _random_keys(shape, generator, device)
        slots_shape = (batch_size, self.max_masks)
        replace_draw = torch.rand(slots_shape, generator=generator, device=device)
        random_ids = torch.randint(0, self.vocab_size, slots_shape, generator=generator, device=device)

        max_to_predict = min(self.max_masks, length)  # bounds n_pred: the width of the `topk` of the k-th values
        covered = _greedy_span_cover(candidate, visit_time, span_length, num_to_predict, max_span, max_to_predict)
        # Drop a span's overshoot: keep the n_pred covered positions of smallest drop key, a uniform random subset.
        drop_key = torch.where(covered, drop_key, _bounds(drop_key.dtype)[1])
        selected = covered & (drop_key <= _kth_smallest(drop_key, num_to_predict, max_to_predict))

        # The selected positions in ascending order, then empty slots (position 0), in `max_masks` columns.
        positions = torch.where(selected, torch.arange(length, device=device), length)
        positions = positions.topk(max_to_predict, dim=1, largest=False, sorted=True).values
        positions = F.pad(positions, (0, self.max_masks - max_to_predict), value=length)
        valid = torch.arange(self.max_masks, device=device) < num_to_predict[:, None]
        positions = torch.where(valid, positions, 0)
        labels = input_ids.gather(1, positions)

        # 80% <mask>, 10% a random id, 10% unchanged. Empty slots point at position 0 and write its own id back.
        replacement = torch.where(
            replace_draw < MASK_TOKEN_PROB,
            self.mask_token_id,
            torch.where(replace_draw < MASK_TOKEN_PROB + RANDOM_TOKEN_PROB, random_ids, labels),
        )
        replacement = torch.where(valid, replacement, input_ids[:, :1])
        return {
            "masked_input_ids": input_ids.scatter(1, positions, replacement),
            "masked_positions": positions,
            "masked_labels": torch.where(valid, labels, -100),
        }
