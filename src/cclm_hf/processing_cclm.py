"""Processor class for CCLM (image processor + XLM-R tokenizer), and the original CCLM text cleaning."""

from __future__ import annotations

import re

from transformers.feature_extraction_utils import BatchFeature
from transformers.image_utils import ImageInput
from transformers.processing_utils import ProcessingKwargs, ProcessorMixin, Unpack
from transformers.tokenization_utils_base import PreTokenizedInput, TextInput
from transformers.utils import logging

from .image_processing_cclm import CCLMImageProcessor


logger = logging.get_logger(__name__)

# The punctuation the original CCLM (and X-VLM / ALBEF) data pipelines replace by a space. Note that `-` and `/` are
# handled separately (plain `str.replace`), and that non-ASCII punctuation (e.g. `，` or `。`) is kept.
_PUNCTUATION_RE = re.compile(r"([,.'!?\"()*#:;~])")
_WHITESPACE_RUN_RE = re.compile(r"\s{2,}")

# Default word budget of the original retrieval / captioning datasets (`max_words=30`).
DEFAULT_MAX_WORDS = 30


def pre_caption(caption: str, max_words: int) -> str:
    """
    Clean a caption exactly as the original CCLM code base does before tokenization.

    Steps: lower-case; replace each of ``, . ' ! ? " ( ) * # : ; ~`` by a space; replace `-` and `/` by a space;
    `<person>` -> `person`; collapse runs of two or more whitespace characters into one space; strip; keep the first
    `max_words` space-separated words.

    Words are counted by splitting on single spaces, as in the original. Text written without spaces (Chinese,
    Japanese) is therefore one "word" per run of characters and is, in practice, never truncated: this is the original
    behaviour and is kept for fidelity; truncate such text with the tokenizer (`truncation=True, max_length=...`).

    Args:
        caption (`str`):
            The raw caption.
        max_words (`int`):
            Maximum number of words to keep.

    Returns:
        `str`: The cleaned caption.

    Raises:
        `ValueError`: If nothing is left after cleaning (e.g. the caption is only punctuation or whitespace).
    """
    cleaned = _PUNCTUATION_RE.sub(" ", caption.lower())
    cleaned = cleaned.replace("-", " ").replace("/", " ").replace("<person>", "person")
    cleaned = _WHITESPACE_RUN_RE.sub(" ", cleaned)
    cleaned = cleaned.rstrip("\n").strip(" ")

    words = cleaned.split(" ")
    if len(words) > max_words:
        cleaned = " ".join(words[:max_words])

    if not cleaned:
        raise ValueError(f"pre_caption yields invalid text (raw: {caption!r})")
    return cleaned


def pre_question(question: str, max_words: int) -> str:
    """
    Clean a VQA question exactly as the original CCLM code base does before tokenization.

    Steps: lower-case; replace each of ``, . ' ! ? " ( ) * # : ; ~`` by a space; replace `-` and `/` by a space; strip
    trailing spaces; keep the first `max_words` space-separated words. Unlike [`pre_caption`], whitespace runs are not
    collapsed (so consecutive spaces count as empty "words"), `<person>` is not rewritten, leading spaces are kept and
    an empty result is returned as is.

    Args:
        question (`str`):
            The raw question.
        max_words (`int`):
            Maximum number of words to keep.

    Returns:
        `str`: The cleaned question.
    """
    cleaned = _PUNCTUATION_RE.sub(" ", question.lower()).replace("-", " ").replace("/", " ")
    cleaned = cleaned.rstrip(" ")

    words = cleaned.split(" ")
    if len(words) > max_words:
        cleaned = " ".join(words[:max_words])
    return cleaned


class CCLMProcessorKwargs(ProcessingKwargs, total=False):
    """Call-time options of [`CCLMProcessor`] on top of the standard text / image kwargs."""

    clean_captions: bool
    max_words: int


class CCLMProcessor(ProcessorMixin):
    r"""
    Constructs a CCLM processor which wraps a CCLM image processor and an XLM-R tokenizer into a single processor.

    [`CCLMProcessor`] offers all the functionalities of [`CCLMImageProcessor`] (or [`CCLMImageProcessorPil`]) and
    [`XLMRobertaTokenizer`]: `processor(images=..., text=..., return_tensors="pt", padding=..., truncation=...,
    max_length=...)` returns `input_ids`, `attention_mask` and `pixel_values` (text-only and image-only calls return
    the corresponding subset). `token_type_ids` are never returned: CCLM's text stack uses a single segment.

    Like other transformers processors it does not pad or truncate unless asked. The original CCLM retrieval
    evaluation tokenized with `padding="max_length", truncation=True, max_length=40` (the `max_tokens` of its
    configs); pass those to reproduce it.

    Args:
        image_processor ([`CCLMImageProcessor`] or [`CCLMImageProcessorPil`]):
            The image processor.
        tokenizer ([`XLMRobertaTokenizer`]):
            The tokenizer.
        clean_captions (`bool`, *optional*, defaults to `False`):
            Whether to clean the text with [`pre_caption`] (lower-casing, punctuation removal, word truncation) before
            tokenizing, as the original retrieval / captioning datasets do. Saved with the processor; can be
            overridden per call (`processor(text=..., clean_captions=True)`).
        max_words (`int`, *optional*, defaults to 30):
            Word budget of [`pre_caption`] when cleaning is enabled. Saved with the processor; can be overridden per
            call.
    """

    valid_processor_kwargs = CCLMProcessorKwargs
    # Class-level defaults of the per-modality kwargs (lowest priority, see `ProcessorMixin._merge_kwargs`).
    text_kwargs = {"return_token_type_ids": False}

    def __init__(
        self,
        image_processor,
        tokenizer,
        clean_captions: bool = False,
        max_words: int = DEFAULT_MAX_WORDS,
    ):
        if not isinstance(clean_captions, bool):
            raise TypeError(f"clean_captions must be a bool, got {clean_captions!r}")
        if isinstance(max_words, bool) or not isinstance(max_words, int) or max_words < 1:
            raise ValueError(f"max_words must be a positive integer, got {max_words!r}")
        # Plain attributes named like `__init__` arguments are what `ProcessorMixin.to_dict` serializes to
        # `processor_config.json`, and `from_pretrained` passes them back to `__init__`.
        self.clean_captions = clean_captions
        self.max_words = max_words
        super().__init__(image_processor, tokenizer)

    def __call__(
        self,
        images: ImageInput | None = None,
        text: TextInput | PreTokenizedInput | list[TextInput] | list[PreTokenizedInput] | None = None,
        videos=None,
        audio=None,
        **kwargs: Unpack[CCLMProcessorKwargs],
    ) -> BatchFeature:
        """
        Prepare images and/or text for a CCLM model.

        Args:
            images (`PIL.Image.Image`, `np.ndarray`, `torch.Tensor` or a list of them, *optional*):
                The image(s) to process.
            text (`str` or `list[str]`, *optional*):
                The text(s) to tokenize.
            clean_captions (`bool`, *optional*):
                Overrides the processor's `clean_captions` for this call.
            max_words (`int`, *optional*):
                Overrides the processor's `max_words` for this call.
            **kwargs:
                Tokenizer kwargs (`padding`, `truncation`, `max_length`, ...), image processor kwargs (`size`, ...) and
                `return_tensors`.

        Returns:
            [`BatchFeature`]: with `input_ids` and `attention_mask` when `text` is given, and `pixel_values` when
            `images` are given.
        """
        clean_captions = kwargs.pop("clean_captions", None)
        max_words = kwargs.pop("max_words", None)
        clean_captions = self.clean_captions if clean_captions is None else clean_captions
        max_words = self.max_words if max_words is None else max_words
        if text is not None and clean_captions:
            text = self.clean_text(text, max_words=max_words)
        return super().__call__(images=images, text=text, videos=videos, audio=audio, **kwargs)

    def clean_text(self, text: str | list[str], max_words: int | None = None) -> str | list[str]:
        """
        Apply [`pre_caption`] to one text or a list of texts.

        Args:
            text (`str` or `list[str]`):
                The text(s) to clean.
            max_words (`int`, *optional*):
                Word budget; defaults to the processor's `max_words`.

        Returns:
            `str` or `list[str]`: The cleaned text(s), with the same structure as `text`.
        """
        max_words = self.max_words if max_words is None else max_words
        if isinstance(text, str):
            return pre_caption(text, max_words)
        if isinstance(text, (list, tuple)) and all(isinstance(t, str) for t in text):
            return [pre_caption(t, max_words) for t in text]
        raise ValueError("Caption cleaning needs `text` to be a string or a list of strings, not pre-tokenized input.")

    @classmethod
    def from_tokenizer(cls, tokenizer, image_size: int, **kwargs) -> CCLMProcessor:
        """A processor with the default (torchvision) [`CCLMImageProcessor`] resizing to `image_size` x `image_size`,
        the model's input size, and `tokenizer`; `kwargs` go to `__init__` (`clean_captions`, `max_words`)."""
        return cls(CCLMImageProcessor(size={"height": image_size, "width": image_size}), tokenizer, **kwargs)

    @property
    def unused_input_names(self) -> list[str]:
        # Dropped from the outputs even if a caller asks the tokenizer for them: CCLM has no segment embeddings in use.
        return ["token_type_ids"]


__all__ = ["CCLMProcessor", "CCLMProcessorKwargs", "pre_caption", "pre_question"]
