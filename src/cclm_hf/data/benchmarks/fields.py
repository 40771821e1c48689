"""Field access and text cleaning shared by the benchmark readers; every failure names the record."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from ..pretraining import clean_text
from ..readers import MALFORMED_RECORD, bad_sample


__all__ = ["caption_field", "field", "join_root", "parse_bool_label"]


def field(record: Mapping[str, Any], name: str, source: str, types: type | tuple[type, ...] = str) -> Any:
    """`record[name]`, which must exist and have one of `types`; otherwise a `malformed_record` bad sample."""
    if name not in record or record[name] is None:
        raise bad_sample(source, f"record has no {name!r} field (fields: {sorted(record)[:12]})", MALFORMED_RECORD)
    value = record[name]
    if not isinstance(value, types) or isinstance(value, bool) and bool not in _as_tuple(types):
        expected = " or ".join(t.__name__ for t in _as_tuple(types))
        raise bad_sample(source, f"field {name!r} is a {type(value).__name__}, expected {expected}", MALFORMED_RECORD)
    return value


def _as_tuple(types: type | tuple[type, ...]) -> tuple[type, ...]:
    return types if isinstance(types, tuple) else (types,)


def caption_field(text: Any, max_words: int, source: str, what: str = "caption") -> str:
    """A text cleaned with the original `pre_caption(text, max_words)`; a non-string is a `malformed_record`, a text
    that is empty after cleaning an `empty_text` bad sample."""
    if not isinstance(text, str):
        raise bad_sample(source, f"{what} is a {type(text).__name__}, not a string", MALFORMED_RECORD)
    return clean_text(text, max_words, source, what)


def parse_bool_label(value: Any, source: str) -> int:
    """NLVR2 / MaRVL labels: `True` / `"True"` -> 1, `False` / `"False"` -> 0; anything else is `unknown_label`."""
    if value is True or value == "True":
        return 1
    if value is False or value == "False":
        return 0
    raise bad_sample(source, f'unknown label {value!r} (expected true/false or "True"/"False")', "unknown_label")


def join_root(root: str | os.PathLike[str] | None, path: str) -> str:
    """`path` under `root` unless it is absolute or there is no root."""
    if root is None or os.path.isabs(path):
        return path
    return os.path.join(os.fspath(root), path)
