"""Train a small XLM-R-compatible tokenizer from text, offline and in milliseconds (tests, demos, toy models)."""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable, Iterator

from tokenizers import Regex, Tokenizer, pre_tokenizers
from tokenizers.models import Unigram
from tokenizers.trainers import UnigramTrainer
from transformers import XLMRobertaTokenizer
from transformers.utils import logging


logger = logging.get_logger(__name__)

# XLM-R's (fairseq's) dictionary layout: these four come first, in this order, and `<mask>` is the last id.
XLM_R_LEADING_SPECIAL_TOKENS = ("<s>", "<pad>", "</s>", "<unk>")
XLM_R_MASK_TOKEN = "<mask>"
# The metaspace symbol of SentencePiece / XLM-R: marks "a word starts here".
_METASPACE = "\u2581"

# Scripts written without spaces between words. Without splitting, a Unigram model trained on a small corpus keeps
# whole Chinese/Japanese phrases as single pieces. (Hangul is written with spaces and is left alone.)
_CJK_CODE_POINT_RANGES = (
    (0x3000, 0x303F),  # CJK symbols and punctuation (、。「」...)
    (0x3040, 0x309F),  # Hiragana
    (0x30A0, 0x30FF),  # Katakana
    (0x31F0, 0x31FF),  # Katakana phonetic extensions
    (0x3400, 0x4DBF),  # CJK unified ideographs extension A
    (0x4E00, 0x9FFF),  # CJK unified ideographs
    (0xF900, 0xFAFF),  # CJK compatibility ideographs
    (0xFF00, 0xFFEF),  # Halfwidth and fullwidth forms (，！？...)
    (0x20000, 0x2A6DF),  # CJK unified ideographs extensions B..F
    (0x2A700, 0x2CEAF),
    (0x2F800, 0x2FA1F),  # CJK compatibility ideographs supplement
)
# A character class of the ranges above (literal characters rather than escapes: the `tokenizers` regex engine,
# Oniguruma, and Python's `re` spell code-point escapes differently).
CJK_CHARACTER_PATTERN = "[" + "".join(f"{chr(lo)}-{chr(hi)}" for lo, hi in _CJK_CODE_POINT_RANGES) + "]"


def _training_pre_tokenizer(split_cjk_characters: bool) -> pre_tokenizers.PreTokenizer:
    # Same pre-tokenization as `XLMRobertaTokenizer` (whitespace split, then "▁" prepended to every word), optionally
    # followed by isolating each CJK character. The CJK split comes *after* the metaspace so that a Chinese run
    # "▁一只猫" trains as "▁", "一", "只", "猫": exactly the segmentation that the final tokenizer produces without
    # the split (see `train_xlm_roberta_tokenizer`).
    steps = [
        pre_tokenizers.WhitespaceSplit(),
        pre_tokenizers.Metaspace(replacement=_METASPACE, prepend_scheme="always"),
    ]
    if split_cjk_characters:
        steps.append(pre_tokenizers.Split(Regex(CJK_CHARACTER_PATTERN), behavior="isolated"))
    return pre_tokenizers.Sequence(steps)


def _whole_word_vocab(texts: Iterable[str], split_cjk_characters: bool) -> list[tuple[str, float]]:
    """Unigram pieces: every pre-tokenized word (log relative frequency) and, far less likely, every character."""
    pre_tokenizer = _training_pre_tokenizer(split_cjk_characters)
    words: Counter[str] = Counter()
    for text in texts:
        words.update(piece for piece, _ in pre_tokenizer.pre_tokenize_str(text))
    if not words:
        raise ValueError("Cannot build a vocabulary from an empty corpus")
    total = sum(words.values())
    characters = sorted({char for word in words for char in word} | {_METASPACE})
    # a character costs more than any whole word, so Viterbi segments known words as one piece
    character_score = math.log(1 / total) - 10.0
    vocab = [(token, 0.0) for token in XLM_R_LEADING_SPECIAL_TOKENS]
    vocab += [(word, math.log(count / total)) for word, count in sorted(words.items(), key=lambda item: -item[1])]
    vocab += [(char, character_score) for char in characters if char not in words]
    vocab.append((XLM_R_MASK_TOKEN, 0.0))
    return vocab


def train_xlm_roberta_tokenizer(
    texts: Iterable[str],
    vocab_size: int = 500,
    split_cjk_characters: bool = True,
    max_piece_length: int = 16,
    model_max_length: int = 512,
    whole_words: bool = False,
) -> XLMRobertaTokenizer:
    """
    Train a small SentencePiece-style Unigram vocabulary on `texts` and wrap it as an [`XLMRobertaTokenizer`].

    The special tokens are laid out as in XLM-R: `<s>`=0, `<pad>`=1, `</s>`=2, `<unk>`=3 and `<mask>` is the last id
    (`len(tokenizer) - 1`), so encodings look like XLM-R's (`<s> ... </s>`, pads = 1). Training uses the `tokenizers`
    library and takes milliseconds on a few KB of text; nothing is downloaded. The result saves and reloads with
    `save_pretrained` / `from_pretrained` (or `AutoTokenizer`) like any XLM-R tokenizer.

    With `split_cjk_characters=True`, CJK ideographs, kana and CJK punctuation are isolated into single characters
    during training, so the vocabulary holds no piece that spans two CJK characters (or a CJK character and a word
    start). Chinese / Japanese text, which has no spaces, is then tokenized character by character, instead of into
    the whole phrases a small corpus would otherwise produce. The split is only needed at training time: the returned
    tokenizer keeps XLM-R's own pre-tokenizer (which [`XLMRobertaTokenizer`] rebuilds when loaded anyway), and with
    this vocabulary its Viterbi segmentation of CJK text is character-level.

    Args:
        texts (`Iterable[str]`):
            Training sentences.
        vocab_size (`int`, *optional*, defaults to 500):
            Target size of the whole vocabulary, special tokens and `<mask>` included. It is an upper bound: on a
            small corpus the trainer may stop with fewer pieces. (Every character seen in `texts` is kept, which can
            make the vocabulary exceed this size on a corpus with a large alphabet.)
        split_cjk_characters (`bool`, *optional*, defaults to `True`):
            Whether to train on CJK text split into characters (see above).
        max_piece_length (`int`, *optional*, defaults to 16):
            Longest piece, in characters.
        model_max_length (`int`, *optional*, defaults to 512):
            The tokenizer's `model_max_length` (what `truncation=True` truncates to without `max_length`); 512 as for
            XLM-R (its 514 positions minus the padding offset).
        whole_words (`bool`, *optional*, defaults to `False`):
            Skip the Unigram trainer and make every pre-tokenized word of `texts` a piece (scored by its frequency),
            plus every character as a fallback; `vocab_size` is then ignored. On a corpus with few distinct words
            (a synthetic demo) the trainer falls back to single characters, which makes sequences several times
            longer; whole words keep them short.

    Returns:
        [`XLMRobertaTokenizer`]: The trained tokenizer.
    """
    num_reserved = len(XLM_R_LEADING_SPECIAL_TOKENS) + 1  # + <mask>
    if vocab_size <= num_reserved:
        raise ValueError(f"vocab_size must exceed the {num_reserved} special tokens, got {vocab_size}")

    num_texts = 0

    def _count(iterable: Iterable[str]) -> Iterator[str]:
        nonlocal num_texts
        for text in iterable:
            num_texts += 1
            yield text

    if whole_words:
        vocab = _whole_word_vocab(texts, split_cjk_characters)
        logger.info(f"Built a whole-word vocabulary of {len(vocab)} pieces")
        return XLMRobertaTokenizer(vocab=vocab, model_max_length=model_max_length)

    backend = Tokenizer(Unigram())
    backend.pre_tokenizer = _training_pre_tokenizer(split_cjk_characters)
    trainer = UnigramTrainer(
        vocab_size=vocab_size - 1,  # room for <mask>, appended below so that it gets the last id
        special_tokens=list(XLM_R_LEADING_SPECIAL_TOKENS),
        unk_token="<unk>",
        max_piece_length=max_piece_length,
        show_progress=False,
    )
    backend.train_from_iterator(_count(texts), trainer=trainer)
    if num_texts == 0:
        raise ValueError("Cannot train a tokenizer on an empty corpus")

    # `tokenizers` has no Python accessor for Unigram scores: read them from the serialized model.
    vocab = [(piece, float(score)) for piece, score in json.loads(backend.to_str())["model"]["vocab"]]
    if tuple(piece for piece, _ in vocab[: len(XLM_R_LEADING_SPECIAL_TOKENS)]) != XLM_R_LEADING_SPECIAL_TOKENS:
        raise RuntimeError(f"Unexpected special-token layout after training: {vocab[:4]}")
    vocab.append((XLM_R_MASK_TOKEN, 0.0))
    logger.info(f"Trained a Unigram vocabulary of {len(vocab)} pieces on {num_texts} texts")

    # In transformers 5.x `XLMRobertaTokenizer(vocab_file=...)` ignores the file; the `vocab=[(piece, score), ...]`
    # constructor builds the Unigram backend (unk id 3) with XLM-R's pre-tokenizer, decoder and `<s> A </s>` template.
    return XLMRobertaTokenizer(vocab=vocab, model_max_length=model_max_length)


__all__ = ["CJK_CHARACTER_PATTERN", "train_xlm_roberta_tokenizer"]
