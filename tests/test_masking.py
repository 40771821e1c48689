"""`TextMasker` against the original CCLM `TextMaskingGenerator`, re-implemented here in plain Python.

Three levels:
* exact: the vectorised span selection equals the original greedy loop for the same visiting order and span lengths;
* exact in distribution: for short sequences, the frequency of every masked set matches the probabilities obtained by
  enumerating the original algorithm;
* statistical: on caption- and parallel-text-like lengths, per-position masking frequencies, run structure and the
  80/10/10 split match samples of the Python reference.
All statistical tolerances are 5 standard errors; all seeds are fixed, so the tests are deterministic.
"""

from __future__ import annotations

import functools
import itertools
import math
import random

import pytest
import torch

from cclm_hf.data.masking import TextMasker, _greedy_span_cover


MASK_ID = 3
PAD_ID = 1
BOS_ID = 0
EOS_ID = 2
VOCAB_SIZE = 50
SIGMAS = 5.0


@pytest.fixture(autouse=True, scope="module")
def single_thread():
    """Run this module's many small-tensor ops on one thread (as in a DataLoader worker).

    Intra-op threads only add synchronisation at these sizes, and with busy CPUs they make this module 2-3x slower.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


# ---------------------------------------------------------------------------------------------------------------------
# Reference: the original algorithm, transcribed from CCLM's `TextMaskingGenerator.__call__` + `preprocess`
# ---------------------------------------------------------------------------------------------------------------------


def reference_mask(ids, rng, max_masks, mask_prob=0.4, skipgram_prb=0.2, skipgram_size=3, vocab_size=VOCAB_SIZE):
    """Mask one unpadded sequence `[<s>, ..., </s>]`; returns `(masked_ids, masked_pos, labels)`."""
    tokens = list(ids)
    n_pred = min(max_masks, max(1, int(round(len(tokens) * mask_prob))))
    cand_pos = list(range(1, len(tokens)))
    rng.shuffle(cand_pos)
    masked_pos = set()
    max_cand_pos = max(cand_pos)
    for pos in cand_pos:
        if len(masked_pos) >= n_pred:
            break
        if pos in masked_pos:
            continue
        if skipgram_prb > 0 and skipgram_size >= 2 and rng.random() < skipgram_prb:
            st_pos, end_pos = pos, pos + rng.randint(2, skipgram_size)
        else:
            st_pos, end_pos = pos, pos + 1
        for mp in range(st_pos, end_pos):
            if 0 < mp <= max_cand_pos:
                masked_pos.add(mp)
            else:
                break
    masked_pos = list(masked_pos)
    if len(masked_pos) > n_pred:
        rng.shuffle(masked_pos)
        masked_pos = masked_pos[:n_pred]
    for pos in masked_pos:
        if rng.random() < 0.8:
            tokens[pos] = MASK_ID
        elif rng.random() < 0.5:
            tokens[pos] = rng.randint(0, vocab_size - 1)
    return tokens, masked_pos, [ids[p] for p in masked_pos]


def reference_greedy_cover(first, last, order, span_length, n_pred):
    """The original loop over a visiting `order` of the candidates `first+1 .. last`, before any overshoot drop."""
    masked = set()
    for pos in order:
        if len(masked) >= n_pred:
            break
        if pos in masked:
            continue
        for mp in range(pos, pos + span_length[pos]):
            if first < mp <= last:
                masked.add(mp)
            else:
                break
    return masked


def exact_masked_set_distribution(n, max_masks, mask_prob=0.4, skipgram_prb=0.2, skipgram_size=3):
    """Probability of every final masked set of the original algorithm for a sequence of `n` tokens, by enumeration.

    Visiting a random permutation in order is visiting a uniformly random not-yet-visited candidate at every step.
    """
    n_pred = min(max_masks, max(1, int(round(n * mask_prob))))
    candidates = frozenset(range(1, n))
    span_probs = [(1, 1.0)]
    if skipgram_prb > 0 and skipgram_size >= 2:
        span_probs = [(1, 1.0 - skipgram_prb)]
        span_probs += [(size, skipgram_prb / (skipgram_size - 1)) for size in range(2, skipgram_size + 1)]

    @functools.cache
    def loop(masked, visited):
        if len(masked) >= n_pred:
            return {masked: 1.0}
        result = {}
        unvisited = candidates - visited
        for pos in unvisited:
            if pos in masked:
                branches = [(masked, 1.0)]
            else:
                branches = [(masked | frozenset(range(pos, min(pos + size, n))), p) for size, p in span_probs]
            for new_masked, p in branches:
                for final, q in loop(new_masked, visited | {pos}).items():
                    result[final] = result.get(final, 0.0) + p * q / len(unvisited)
        return result

    dist = {}
    for covered, p in loop(frozenset(), frozenset()).items():
        subsets = list(itertools.combinations(sorted(covered), n_pred))
        for subset in subsets:
            dist[frozenset(subset)] = dist.get(frozenset(subset), 0.0) + p / len(subsets)
    return dist


# ---------------------------------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------------------------------


def make_batch(lengths, length=None, seed=0, left_pad=False):
    """Right- (or left-) padded `<s> random-ids </s>` rows; content ids avoid the special ids 0..3."""
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.tensor(lengths)
    length = length or int(lengths.max())
    position = torch.arange(length)
    start = length - lengths[:, None] if left_pad else torch.zeros_like(lengths)[:, None]
    end = start + lengths[:, None]
    input_ids = torch.randint(4, VOCAB_SIZE, (len(lengths), length), generator=gen)
    input_ids[position == start] = BOS_ID
    input_ids[position == end - 1] = EOS_ID
    attention_mask = ((position >= start) & (position < end)).long()
    input_ids[attention_mask == 0] = PAD_ID
    return input_ids, attention_mask


def n_pred(n, max_masks, mask_prob=0.4):
    return min(max_masks, max(1, int(round(n * mask_prob))))


def masked_indicator(out, length):
    """`[B, length]` bool: which positions the masker selected."""
    valid = out["masked_labels"] != -100
    return torch.zeros(valid.shape[0], length, dtype=torch.bool).scatter_(1, out["masked_positions"], valid)


def masked_sets(out):
    return [
        frozenset(p for p, y in zip(pos, lab, strict=True) if y != -100)
        for pos, lab in zip(out["masked_positions"].tolist(), out["masked_labels"].tolist(), strict=True)
    ]


def two_sample_z(successes_a, total_a, successes_b, total_b):
    """z statistic of the difference of two proportions (pooled standard error); 0 when both are degenerate."""
    pooled = (successes_a + successes_b) / (total_a + total_b)
    se = math.sqrt(pooled * (1 - pooled) * (1 / total_a + 1 / total_b))
    diff = successes_a / total_a - successes_b / total_b
    return 0.0 if se == 0 else diff / se


def adjacent_fraction(masked):
    """`[B]` float64: per row, the fraction of masked positions with a masked neighbour (how much comes in runs)."""
    left = torch.nn.functional.pad(masked[:, :-1], (1, 0))
    right = torch.nn.functional.pad(masked[:, 1:], (0, 1))
    return (masked & (left | right)).sum(dim=1).double() / masked.sum(dim=1).double()


# ---------------------------------------------------------------------------------------------------------------------
# Exact properties
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("max_masks", [12, 20])
def test_number_masked_is_exactly_n_pred_for_every_length(max_masks):
    lengths = list(range(1, 41)) * 5
    input_ids, attention_mask = make_batch(lengths, seed=1)
    out = TextMasker(MASK_ID, VOCAB_SIZE, max_masks)(input_ids, attention_mask, torch.Generator().manual_seed(0))
    counts = (out["masked_labels"] != -100).sum(dim=1).tolist()
    expected = [min(n_pred(n, max_masks), n - 1) for n in lengths]
    assert counts == expected
    # n = 1 has nothing to mask; otherwise n - 1 >= n_pred, so the cap applies only through max_masks.
    assert all(c == n_pred(n, max_masks) for n, c in zip(lengths, counts, strict=True) if n >= 2)
    assert max(counts) == min(max_masks, n_pred(40, 1000))  # 12 is a cap at n = 40, 20 is not (16)


def test_num_to_predict_rounds_like_python():
    lengths = torch.arange(0, 301)
    for mask_prob in (0.4, 0.15, 0.5, 0.25, 1.0, 0.0):
        masker = TextMasker(MASK_ID, VOCAB_SIZE, max_masks=1000, mask_prob=mask_prob)
        expected = [min(1000, max(1, int(round(n * mask_prob)))) for n in range(301)]
        assert masker.num_to_predict(lengths).tolist() == expected


@pytest.mark.parametrize("left_pad", [False, True])
def test_masks_only_real_tokens_and_never_bos(left_pad):
    lengths = [2, 3, 5, 9, 17, 33, 40] * 40
    input_ids, attention_mask = make_batch(lengths, length=40, seed=2, left_pad=left_pad)
    masker = TextMasker(MASK_ID, VOCAB_SIZE, max_masks=12)
    out = masker(input_ids, attention_mask, torch.Generator().manual_seed(1))

    first_real = attention_mask.argmax(dim=1)
    eos_masked = 0
    for row, (n, masked) in enumerate(zip(lengths, masked_sets(out), strict=True)):
        start = first_real[row].item()
        assert all(start < p < start + n for p in masked)  # never <s>, never padding
        assert len(masked) == n_pred(n, 12)
        eos_masked += (start + n - 1) in masked
    # </s> is a candidate like any other token: masked often, but far from always.
    assert 0.05 * len(lengths) < eos_masked < 0.9 * len(lengths)
    # Padding and unmasked tokens pass through untouched.
    changed = out["masked_input_ids"] != input_ids
    # (Empty slots point at position 0 with a False value; no real slot ever points there.)
    selected = torch.zeros_like(changed).scatter_(1, out["masked_positions"], out["masked_labels"] != -100)
    assert not (changed & ~selected).any()
    assert (out["masked_input_ids"][attention_mask == 0] == PAD_ID).all()


def test_labels_positions_padding_and_dtypes():
    lengths = [40, 7, 2, 25, 13, 1]
    input_ids, attention_mask = make_batch(lengths, seed=3)
    out = TextMasker(MASK_ID, VOCAB_SIZE, max_masks=12)(input_ids, attention_mask, torch.Generator().manual_seed(2))
    assert set(out) == {"masked_input_ids", "masked_positions", "masked_labels"}
    assert out["masked_input_ids"].shape == (6, 40)
    assert out["masked_positions"].shape == out["masked_labels"].shape == (6, 12)
    assert all(v.dtype == torch.int64 for v in out.values())

    positions, labels = out["masked_positions"], out["masked_labels"]
    valid = labels != -100
    # Labels are the ORIGINAL ids at the masked positions, whatever the masked input shows there.
    assert torch.equal(labels[valid], input_ids.gather(1, positions)[valid])
    # Padding slots: position 0, label -100, and they all come after the real ones.
    assert (positions[~valid] == 0).all()
    assert (positions[valid] > 0).all()
    assert torch.equal(valid, valid.sort(dim=1, descending=True).values)
    # Real positions ascending.
    for row in range(6):
        real = positions[row][valid[row]].tolist()
        assert real == sorted(real) and len(set(real)) == len(real)


def test_shorter_sequence_than_max_masks_is_padded():
    input_ids, attention_mask = make_batch([7, 5], seed=4)
    out = TextMasker(MASK_ID, VOCAB_SIZE, max_masks=20)(input_ids, attention_mask, torch.Generator().manual_seed(0))
    assert out["masked_positions"].shape == (2, 20)
    assert (out["masked_labels"] != -100).sum(dim=1).tolist() == [3, 2]


def test_same_generator_state_same_output_and_seed_changes_it():
    input_ids, attention_mask = make_batch([40, 31, 12, 5, 2] * 8, seed=5)
    masker = TextMasker(MASK_ID, VOCAB_SIZE, max_masks=12)
    first = masker(input_ids, attention_mask, torch.Generator().manual_seed(123))
    again = masker(input_ids, attention_mask, torch.Generator().manual_seed(123))
    other = masker(input_ids, attention_mask, torch.Generator().manual_seed(124))
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not torch.equal(first["masked_positions"], other["masked_positions"])
    # A shared generator advances: two consecutive calls differ.
    gen = torch.Generator().manual_seed(123)
    assert torch.equal(masker(input_ids, attention_mask, gen)["masked_input_ids"], first["masked_input_ids"])
    assert not torch.equal(masker(input_ids, attention_mask, gen)["masked_positions"], first["masked_positions"])
    # The global generator is used when none is given.
    torch.manual_seed(123)
    assert torch.equal(masker(input_ids, attention_mask)["masked_positions"], first["masked_positions"])


def test_reproducible_across_runs():
    # Pinned output for a fixed seed: training runs must be reproducible from their seed. This changes only if the
    # order or number of random draws changes (or torch's CPU generator does), which must then be deliberate.
    input_ids, attention_mask = make_batch([12, 6], seed=6)
    out = TextMasker(MASK_ID, VOCAB_SIZE, max_masks=5)(input_ids, attention_mask, torch.Generator().manual_seed(2024))
    assert out["masked_positions"].tolist() == PINNED_POSITIONS
    assert out["masked_input_ids"].tolist() == PINNED_INPUT_IDS


PINNED_POSITIONS = [[1, 2, 4, 7, 10], [1, 4, 0, 0, 0]]
PINNED_INPUT_IDS = [[0, 3, 3, 24, 3, 7, 15, 3, 28, 10, 34, 2], [0, 3, 47, 26, 3, 2, 1, 1, 1, 1, 1, 1]]


def test_random_replacements_stay_in_vocabulary():
    vocab_size = 7  # small, so that an off-by-one or a foreign range would show up
    lengths = [30] * 400
    input_ids, attention_mask = make_batch(lengths, seed=7)
    input_ids = input_ids.clamp(max=vocab_size - 1)
    out = TextMasker(MASK_ID, vocab_size, max_masks=12)(input_ids, attention_mask, torch.Generator().manual_seed(3))
    masked_values = out["masked_input_ids"].gather(1, out["masked_positions"])[out["masked_labels"] != -100]
    assert masked_values.min() >= 0 and masked_values.max() < vocab_size
    # Every id of the vocabulary, special ones included, shows up as a replacement (uniform over the whole vocab).
    labels = out["masked_labels"][out["masked_labels"] != -100]
    replaced = masked_values[(masked_values != MASK_ID) & (masked_values != labels)]
    assert set(replaced.tolist()) == set(range(vocab_size)) - {MASK_ID}


def test_no_spans_configuration_and_validation():
    input_ids, attention_mask = make_batch([40] * 64, seed=8)
    out = TextMasker(MASK_ID, VOCAB_SIZE, 12, skipgram_prob=0.0)(input_ids, attention_mask, torch.Generator())
    assert ((out["masked_labels"] != -100).sum(dim=1) == 12).all()
    with pytest.raises(ValueError):
        TextMasker(MASK_ID, VOCAB_SIZE, max_masks=0)
    with pytest.raises(ValueError):
        TextMasker(VOCAB_SIZE, VOCAB_SIZE, max_masks=12)
    with pytest.raises(ValueError):
        TextMasker(MASK_ID, VOCAB_SIZE, 12, skipgram_size=99)
    with pytest.raises(ValueError):
        TextMasker(MASK_ID, VOCAB_SIZE, 12)(input_ids, attention_mask[:, :-1])
    with pytest.raises(ValueError):
        TextMasker(MASK_ID, VOCAB_SIZE, 12)(input_ids[:, :0], attention_mask[:, :0])


def test_from_tokenizer():
    class Tokenizer:
        mask_token_id = 399

        def __len__(self):
            return 400

    masker = TextMasker.from_tokenizer(Tokenizer(), max_masks=20, skipgram_size=2)
    assert (masker.mask_token_id, masker.vocab_size, masker.max_masks, masker.skipgram_size) == (399, 400, 20, 2)


@pytest.mark.parametrize("max_span", [1, 2, 3, 5])
def test_vectorised_span_selection_equals_the_greedy_loop(max_span):
    # Same visiting order and span lengths -> the same masked set (before the overshoot drop), row by row.
    gen = torch.Generator().manual_seed(10 + max_span)
    rows, length = 2000, 40
    lengths = torch.randint(1, length + 1, (rows,), generator=gen)
    starts = (torch.rand(rows, generator=gen) * (length - lengths + 1)).long()  # left, right and middle blocks
    position = torch.arange(length)
    real = (position >= starts[:, None]) & (position < (starts + lengths)[:, None])
    candidate = real & (position > starts[:, None])
    visit_time = torch.rand(rows, length, generator=gen, dtype=torch.float64)
    span_length = torch.randint(1, max_span + 1, (rows, length), generator=gen)
    max_masks = torch.randint(1, 21, (rows,), generator=gen)
    num_to_predict = torch.minimum(
        torch.tensor([n_pred(n, m) for n, m in zip(lengths.tolist(), max_masks.tolist(), strict=True)]),
        candidate.sum(1),
    )

    covered = _greedy_span_cover(candidate, visit_time, span_length, num_to_predict, max_span)

    order = visit_time.argsort(dim=1).tolist()
    for row, (first, n, k) in enumerate(zip(starts.tolist(), lengths.tolist(), num_to_predict.tolist(), strict=True)):
        last = first + n - 1
        row_order = [p for p in order[row] if first < p <= last]
        expected = reference_greedy_cover(first, last, row_order, span_length[row].tolist(), k)
        assert set(covered[row].nonzero().flatten().tolist()) == expected, row


# ---------------------------------------------------------------------------------------------------------------------
# Distribution
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n, skipgram_size", [(7, 3), (9, 3), (8, 4)])
def test_masked_set_distribution_matches_exact_enumeration(n, skipgram_size):
    exact = exact_masked_set_distribution(n, max_masks=12, skipgram_size=skipgram_size)
    assert math.isclose(sum(exact.values()), 1.0, rel_tol=1e-12)
    samples = 40000
    input_ids, attention_mask = make_batch([n] * samples, seed=11)
    masker = TextMasker(MASK_ID, VOCAB_SIZE, max_masks=12, skipgram_size=skipgram_size)
    out = masker(input_ids, attention_mask, torch.Generator().manual_seed(n))
    # Each masked set as a bit mask, counted.
    codes = (masked_indicator(out, n).long() << torch.arange(n)).sum(dim=1)
    values, frequencies = codes.unique(return_counts=True)
    counts = dict(zip(values.tolist(), frequencies.tolist(), strict=True))
    exact_codes = {sum(1 << p for p in masked_set): p for masked_set, p in exact.items()}
    assert set(counts) <= set(exact_codes)
    for code, p in exact_codes.items():
        tolerance = SIGMAS * math.sqrt(p * (1 - p) / samples)
        assert abs(counts.get(code, 0) / samples - p) <= tolerance, (bin(code), p)

    # The test has power: without spans, some set's probability moves by over four times the tolerance.
    no_spans = exact_masked_set_distribution(n, max_masks=12, skipgram_prb=0.0)
    assert max(abs(no_spans.get(s, 0.0) - p) / math.sqrt(p * (1 - p) / samples) for s, p in exact.items()) > 4 * SIGMAS


def test_without_spans_every_subset_is_equally_likely():
    n, samples = 8, 20000
    subsets = list(itertools.combinations(range(1, n), n_pred(n, 12)))  # 35 subsets of 3 of the 7 candidates
    assert exact_masked_set_distribution(n, max_masks=12, skipgram_prb=0.0) == pytest.approx(
        {frozenset(subset): 1 / len(subsets) for subset in subsets}
    )
    input_ids, attention_mask = make_batch([n] * samples, seed=15)
    masker = TextMasker(MASK_ID, VOCAB_SIZE, max_masks=12, skipgram_prob=0.0)
    out = masker(input_ids, attention_mask, torch.Generator().manual_seed(16))
    codes = (masked_indicator(out, n).long() << torch.arange(n)).sum(dim=1)
    counts = torch.bincount(codes, minlength=1 << n)
    p = 1 / len(subsets)
    for subset in subsets:
        frequency = counts[sum(1 << q for q in subset)].item() / samples
        assert abs(frequency - p) <= SIGMAS * math.sqrt(p * (1 - p) / samples), subset
    assert counts.sum().item() == samples and (counts > 0).sum().item() == len(subsets)


def test_reference_matches_exact_enumeration():
    # Validates the Python reference (and the enumeration) before they are used to judge the vectorised version.
    n, samples = 7, 20000
    exact = exact_masked_set_distribution(n, max_masks=12)
    rng = random.Random(0)
    counts = {}
    for _ in range(samples):
        masked = frozenset(reference_mask(list(range(n)), rng, max_masks=12)[1])
        counts[masked] = counts.get(masked, 0) + 1
    assert set(counts) <= set(exact)
    for masked_set, p in exact.items():
        assert abs(counts.get(masked_set, 0) / samples - p) <= SIGMAS * math.sqrt(p * (1 - p) / samples)


@pytest.mark.parametrize(
    "lengths, length, max_masks, samples",
    [([6, 13, 25, 40], 40, 12, 6000), ([20, 47, 64], 64, 20, 4000)],  # captions; parallel text
    ids=["captions", "parallel"],
)
def test_statistics_match_the_reference(lengths, length, max_masks, samples):
    # `samples` rows per length and implementation, rows ordered by length.
    row_lengths = [n for n in lengths for _ in range(samples)]
    input_ids, attention_mask = make_batch(row_lengths, length=length, seed=12)
    masker = TextMasker(MASK_ID, VOCAB_SIZE, max_masks=max_masks)
    out = masker(input_ids, attention_mask, torch.Generator().manual_seed(13))
    vec_masked, vec_ids = masked_indicator(out, length), out["masked_input_ids"]

    rng = random.Random(14)
    ref_rows, ref_positions, ref_values = [], [], []
    for row, (ids, n) in enumerate(zip(input_ids.tolist(), row_lengths, strict=True)):
        masked_ids, masked_pos, _ = reference_mask(ids[:n], rng, max_masks=max_masks)
        ref_rows += [row] * len(masked_pos)
        ref_positions += masked_pos
        ref_values += [masked_ids[p] for p in masked_pos]
    ref_masked, ref_ids = torch.zeros_like(vec_masked), input_ids.clone()
    ref_masked[ref_rows, ref_positions] = True
    ref_ids[ref_rows, ref_positions] = torch.tensor(ref_values)

    for index, n in enumerate(lengths):
        rows = slice(index * samples, (index + 1) * samples)
        vec, ref = vec_masked[rows], ref_masked[rows]
        # Number masked: exactly n_pred in both.
        assert (vec.sum(dim=1) == n_pred(n, max_masks)).all() and (ref.sum(dim=1) == n_pred(n, max_masks)).all()
        # Per-position masking frequency; position 0 and padding never, in both.
        hits_vec, hits_ref = vec.sum(dim=0).tolist(), ref.sum(dim=0).tolist()
        assert hits_vec[0] == hits_ref[0] == 0 and sum(hits_vec[n:]) == sum(hits_ref[n:]) == 0
        for position in range(1, n):
            z = two_sample_z(hits_vec[position], samples, hits_ref[position], samples)
            assert abs(z) <= SIGMAS, (n, position, hits_vec[position], hits_ref[position])
        # Share of masked tokens with a masked neighbour, per row: spans, and their interplay with the skip rule.
        runs_vec, runs_ref = adjacent_fraction(vec), adjacent_fraction(ref)
        se = math.sqrt((runs_vec.var() + runs_ref.var()).item() / samples)
        assert abs(runs_vec.mean() - runs_ref.mean()).item() <= SIGMAS * se, (n, runs_vec.mean(), runs_ref.mean())

    # Replacement split over all masked tokens: <mask>, unchanged, another id.
    splits = []
    for masked, new_ids in ((vec_masked, vec_ids), (ref_masked, ref_ids)):
        new, old = new_ids[masked], input_ids[masked]
        splits.append([(new == MASK_ID).sum().item(), (new == old).sum().item()])
        splits[-1].append(masked.sum().item() - sum(splits[-1]))
    (split_vec, split_ref), total = splits, vec_masked.sum().item()
    assert total == ref_masked.sum().item()
    # The ids at masked positions are content ids (never MASK_ID), so with V ids the exact split is:
    exact = [0.8 + 0.1 / VOCAB_SIZE, 0.1 + 0.1 / VOCAB_SIZE, 0.1 * (VOCAB_SIZE - 2) / VOCAB_SIZE]
    for category, p in enumerate(exact):
        assert abs(two_sample_z(split_vec[category], total, split_ref[category], total)) <= SIGMAS
        assert abs(split_vec[category] / total - p) <= SIGMAS * math.sqrt(p * (1 - p) / total)
