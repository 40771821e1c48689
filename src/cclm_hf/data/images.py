"""Image decoding for the CCLM data pipelines.

The original CCLM code decodes images inline in every dataset class:

```python
image = Image.open(path).convert("RGB")                           # is_image_rpath: True
image = Image.open(io.BytesIO(b64decode(ann["binary"]))).convert("RGB")  # is_image_rpath: False (base64)
```

after setting `ImageFile.LOAD_TRUNCATED_IMAGES = True` (and `Image.MAX_IMAGE_PIXELS = None`) at import time of
the pre-training dataset module. With that flag Pillow silently pads a truncated file with grey, so a corrupted shard
trains on half-grey images without anybody noticing; and since the flag is process-global it also changes the
behaviour of every other library in the process.

[`load_image`] instead decodes one image *completely* (`Image.load()` inside the `try`, so truncation is detected
at decode time rather than later inside a transform), converts it to RGB, and turns every decoding failure into a
[`BadSampleError`] whose message names the record (`source`, e.g. `"shard-003.jsonl:1234"`) and the reason. The data
streams catch [`BadSampleError`] to skip the record and count it. Pillow's global flags are left untouched either way.

Like the original, EXIF orientation tags are *not* applied (the pre-training data were consumed as stored), and the
alpha channel of RGBA / LA images is dropped by `convert("RGB")` (transparent pixels keep their stored colour).
"""

from __future__ import annotations

import base64
import binascii
import io
import logging
import os
import re
import struct
from collections.abc import Mapping
from typing import Any

import numpy as np
import PIL.Image
from PIL import ImageFile


logger = logging.getLogger(__name__)

__all__ = ["BadSampleError", "load_image"]

# Strict base64 (standard and URL-safe alphabets), whitespace already removed, padded to a multiple of 4.
_BASE64_RE = re.compile(r"^[A-Za-z0-9+/\-_]+={0,2}$")
_DATA_URI_RE = re.compile(r"^data:[\w.+\-/]*;base64,", re.IGNORECASE)

# What Pillow raises for corrupt data: truncation is OSError("image file is truncated ..."), broken chunks or headers
# are SyntaxError / ValueError / EOFError / IndexError / struct.error depending on the plugin.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error)

_warned_truncated_flag = False


class BadSampleError(ValueError):
    """A single training record cannot be used (undecodable image, invalid annotation, ...).

    Data streams catch this exception to *skip and count* the record instead of crashing a multi-day run, so it must
    only be raised for problems local to one record; programming errors keep their usual exception types.

    Attributes:
        source (`str`): Where the record comes from, typically `"<file>:<line>"`.
        reason (`str`): Human-readable description of the problem.
    """

    def __init__(self, source: str, reason: str) -> None:
        self.source = source
        self.reason = reason
        super().__init__(f"{source}: {reason}")

    def __reduce__(self):  # the default pickling would call __init__(message) and fail (multiprocessing, caches)
        return (type(self), (self.source, self.reason))


def _resolve_path(path: str | os.PathLike[str], root: str | os.PathLike[str] | None) -> str:
    path = os.fspath(path)
    if root is not None and not os.path.isabs(path):
        path = os.path.join(os.fspath(root), path)
    return path


def _warn_if_truncation_is_silenced() -> None:
    """Log once when somebody else switched Pillow's global truncated-image tolerance on.

    We must not reset the flag (it belongs to whoever set it), but the caller should know that truncated files will
    then be padded with grey instead of being reported as bad samples.
    """
    global _warned_truncated_flag
    if ImageFile.LOAD_TRUNCATED_IMAGES and not _warned_truncated_flag:
        _warned_truncated_flag = True
        logger.warning(
            "PIL.ImageFile.LOAD_TRUNCATED_IMAGES is True in this process (set by another module): truncated images "
            "will be decoded silently instead of raising BadSampleError."
        )


def _loaded(image: PIL.Image.Image) -> bool:
    """Whether the pixel data of a PIL image is already in memory (lazy `Image.open` results are not)."""
    return not getattr(image, "tile", None)


# Pillow's integer modes of 16-bit files (grayscale PNG / TIFF). `convert("RGB")` clips their values to 255, which
# turns almost every pixel of a 16-bit image white; they are scaled to 8 bits first.
_HIGH_BIT_DEPTH_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def _to_8_bit(image: PIL.Image.Image) -> PIL.Image.Image:
    """A 16-bit (or 32-bit integer) grayscale image as 8-bit "L", scaled by its type's range (65535 -> 255).

    Mode "I" does not record the depth of the file: values up to 255 are kept, up to 65535 are read as 16-bit.
    """
    values = np.asarray(image, dtype=np.float64)
    if image.mode != "I" or values.max(initial=0) > 255:
        full_scale = 65535.0 if image.mode != "I" or values.max(initial=0) <= 65535 else 2.0**32 - 1
        values = values * (255.0 / full_scale)
    return PIL.Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8), mode="L")


def _finish(image: PIL.Image.Image) -> PIL.Image.Image:
    """Force the decode and convert to RGB (`convert` always returns a new, fully loaded image).

    CMYK JPEGs go through Pillow's own CMYK -> RGB conversion; 16-bit grayscale images are scaled to 8 bits first.
    (16-bit RGB PNGs are already reduced to 8 bits per channel by Pillow's decoder.)
    """
    image.load()
    if image.mode in _HIGH_BIT_DEPTH_MODES:
        image = _to_8_bit(image)
    return image.convert("RGB")


def _decode_bytes(data: bytes, source: str, what: str) -> PIL.Image.Image:
    if len(data) == 0:
        raise BadSampleError(source, f"empty {what}")
    try:
        with PIL.Image.open(io.BytesIO(data)) as image:
            return _finish(image)
    except PIL.Image.DecompressionBombError as error:
        raise BadSampleError(source, f"{what}: decompression bomb refused by Pillow: {error}") from error
    except PIL.UnidentifiedImageError as error:
        raise BadSampleError(source, f"{what}: not a recognised image format ({len(data)} bytes)") from error
    except _DECODE_ERRORS as error:
        raise BadSampleError(source, f"cannot decode {what}: {type(error).__name__}: {error}") from error


def _decode_path(path: str, source: str) -> PIL.Image.Image:
    if not os.path.isfile(path):
        raise BadSampleError(source, f"image file not found: {path!r}")
    if os.path.getsize(path) == 0:
        raise BadSampleError(source, f"image file {path!r} is empty (0 bytes)")
    try:
        with PIL.Image.open(path) as image:
            return _finish(image)
    except PIL.Image.DecompressionBombError as error:
        raise BadSampleError(source, f"image file {path!r}: decompression bomb refused by Pillow: {error}") from error
    except PIL.UnidentifiedImageError as error:
        raise BadSampleError(source, f"image file {path!r}: not a recognised image format") from error
    except _DECODE_ERRORS as error:
        raise BadSampleError(source, f"cannot decode image file {path!r}: {type(error).__name__}: {error}") from error


def _b64decode(text: str) -> bytes | None:
    """Strictly decode standard or URL-safe base64 (whitespace ignored); `None` when `text` is not base64."""
    compact = "".join(text.split())
    if not compact or len(compact) % 4 != 0 or not _BASE64_RE.match(compact):
        return None
    try:
        if "-" in compact or "_" in compact:
            return base64.urlsafe_b64decode(compact)
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        return None


def _load_string(
    value: str, root: str | os.PathLike[str] | None, source: str, is_path: bool | None
) -> PIL.Image.Image:
    if is_path is None:
        match = _DATA_URI_RE.match(value)
        if match is not None:
            value, is_path = value[match.end() :], False
    if is_path:
        return _decode_path(_resolve_path(value, root), source)
    if is_path is False:
        data = _b64decode(value)
        if data is None:
            raise BadSampleError(source, f"invalid base64 image string ({len(value)} characters)")
        return _decode_bytes(data, source, "base64 image")

    # Auto-detection. An existing file always wins; otherwise a string in the base64 alphabet is decoded as such
    # (short relative paths such as "abcd/efgh" are valid base64 too, hence the combined error message).
    path = _resolve_path(value, root)
    if os.path.isfile(path):
        return _decode_path(path, source)
    data = _b64decode(value)
    if data is None:
        raise BadSampleError(source, f"image file not found: {path!r}")
    try:
        return _decode_bytes(data, source, "base64 image")
    except BadSampleError as error:
        raise BadSampleError(
            source, f"neither an existing image file ({path!r}) nor a valid base64 image ({error.reason})"
        ) from error


def load_image(
    value: Any,
    *,
    root: str | os.PathLike[str] | None = None,
    source: str = "<unknown>",
    is_path: bool | None = None,
) -> PIL.Image.Image:
    """Decode one image completely and return it in RGB mode.

    Args:
        value:
            One of

            - a path (`str` or `os.PathLike`), relative to `root` when given and not absolute;
            - raw encoded bytes (`bytes`, `bytearray`, `memoryview`);
            - a base64 string (the `binary` field of the original jsonl shards), optionally as a `data:` URI;
            - a `PIL.Image.Image` (returned as is when already loaded and RGB, otherwise loaded and converted);
            - an undecoded `datasets.Image` dict `{"bytes": ..., "path": ...}` (`bytes` wins when not `None`,
              otherwise `path` is read, relative to `root`).
        root: Directory that relative paths are resolved against (the original's `image_root`).
        source: Where the record comes from, e.g. `"train-00003.jsonl:1234"`; repeated in every error message.
        is_path:
            How to interpret a `str`: `True` = path, `False` = base64 (the original's `is_image_rpath` flag).
            `None` (default) auto-detects: a `data:` URI or a string that is not an existing file but is valid
            base64 is decoded as base64, anything else is treated as a path.

    Returns:
        A fully decoded RGB `PIL.Image.Image`.

    Raises:
        BadSampleError: The image is missing, unreadable, truncated, not an image, or too large for Pillow's
            decompression-bomb limit. The message starts with `source`.
        TypeError: `value` has a type that can never hold an image (a programming error, not a bad record).
    """
    _warn_if_truncation_is_silenced()

    if isinstance(value, PIL.Image.Image):
        try:
            return value if value.mode == "RGB" and _loaded(value) else _finish(value)
        except _DECODE_ERRORS as error:
            raise BadSampleError(source, f"cannot decode PIL image: {type(error).__name__}: {error}") from error
    if isinstance(value, (bytes, bytearray, memoryview)):
        return _decode_bytes(bytes(value), source, "image bytes")
    if isinstance(value, str):
        return _load_string(value, root, source, is_path)
    if isinstance(value, os.PathLike):
        return _decode_path(_resolve_path(value, root), source)
    if isinstance(value, Mapping):
        data, path = value.get("bytes"), value.get("path")
        if data is not None:
            if not isinstance(data, (bytes, bytearray, memoryview)):
                raise BadSampleError(source, f"'bytes' entry of image dict has type {type(data).__name__}")
            return _decode_bytes(bytes(data), source, "image bytes")
        if path:
            return _decode_path(_resolve_path(path, root), source)
        raise BadSampleError(source, "image dict has neither 'bytes' nor 'path'")
    if value is None:
        raise BadSampleError(source, "image field is missing (None)")
    raise TypeError(f"{source}: cannot load an image from a value of type {type(value).__name__}")
