"""Reading benchmark annotation files as distributed: json / jsonl, plain or inside a `.zip`, with record sources.

IGLUE ships its large training files zipped (`XVNLI/annotations/en/train.jsonl.zip`, `gqa/annotations/train.json.zip`,
`wit/annotations/train_en.jsonl.zip`, ...). [`open_annotation_file`] reads them in place: asked for `train.jsonl`, it
opens the file if it exists, else the member `train.jsonl` of `train.jsonl.zip` (the `.zip` may also be named
directly). A zip whose member cannot be identified (none or several candidates) is an [`AnnotationFileError`] that says
which archive to unzip.

Every record is yielded with its *source*, repeated in every error message about it:

- jsonl: `"<file>:<line>"` (1-based);
- json list: `"<file>[<index>]"` (0-based record index);
- json dict: `"<file>[<key>]"` (e.g. the question id of a GQA-style file).

For a file inside a zip, `<file>` is `"<archive>[<member>]"`.
"""

from __future__ import annotations

import json
import logging
import os
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from ...errors import CCLMUserError
from ..images import BadSampleError
from ..readers import MALFORMED_RECORD, bad_sample


logger = logging.getLogger(__name__)

__all__ = [
    "AnnotationFile",
    "AnnotationFileError",
    "OnBadRecord",
    "iter_json_records",
    "is_jsonl",
    "iter_jsonl",
    "open_annotation_file",
    "read_json",
    "resolve_annotation_file",
]

OnBadRecord = Callable[[BadSampleError], None]

# Members of a zip that are never the annotation file (macOS resource forks, folders).
_ZIP_JUNK_PREFIXES = ("__MACOSX/",)


class AnnotationFileError(CCLMUserError, ValueError):
    """An annotation file is missing, unreadable as a whole, or stored in a way that cannot be read in place.

    Unlike a [`~cclm_hf.data.images.BadSampleError`] this concerns a whole file and is never skipped.
    """


@dataclass(frozen=True)
class AnnotationFile:
    """Where an annotation file lives: a plain `path`, or `member` of the zip archive `path`."""

    path: str
    member: str | None = None

    @property
    def name(self) -> str:
        """The name used in record sources and messages."""
        return self.path if self.member is None else f"{self.path}[{self.member}]"

    def __str__(self) -> str:
        return self.name


def _zip_member(archive: str, wanted: str | None) -> str:
    try:
        with zipfile.ZipFile(archive) as handle:
            names = [
                name
                for name in handle.namelist()
                if not name.endswith("/") and not name.startswith(_ZIP_JUNK_PREFIXES)
            ]
    except zipfile.BadZipFile as error:
        raise AnnotationFileError(f"{archive}: not a valid zip archive ({error}); unzip or re-download it") from error
    if wanted is not None:
        matches = [name for name in names if os.path.basename(name) == wanted]
    else:
        matches = names
    if len(matches) == 1:
        return matches[0]
    what = f"a member named {wanted!r}" if wanted else "a single annotation file"
    found = f"found {len(matches)}: {matches[:5]}" if matches else f"its members are {names[:5]}"
    raise AnnotationFileError(
        f"{archive}: cannot read it in place: expected {what}, {found}. Unzip it (`unzip {archive} -d "
        f"{os.path.dirname(archive) or '.'}`) and pass the extracted file."
    )


def resolve_annotation_file(path: str | os.PathLike[str]) -> AnnotationFile:
    """Locate an annotation file: `path` itself, or its copy inside `path + ".zip"`, or (for a `.zip` path) the
    single annotation file of the archive.

    Raises:
        AnnotationFileError: Neither exists, or the archive's member is ambiguous.
    """
    path = os.fspath(path)
    if path.endswith(".zip") and os.path.isfile(path):
        return AnnotationFile(path, _zip_member(path, None))
    if os.path.isfile(path):
        return AnnotationFile(path)
    archive = path + ".zip"
    if os.path.isfile(archive):
        member = _zip_member(archive, os.path.basename(path))
        logger.info("Reading %s in place from %s", member, archive)
        return AnnotationFile(archive, member)
    raise AnnotationFileError(f"annotation file not found: {path} (nor {archive})")


@contextmanager
def open_annotation_file(path: str | os.PathLike[str] | AnnotationFile) -> Iterator[tuple[IO[bytes], AnnotationFile]]:
    """Open an annotation file for binary reading (see [`resolve_annotation_file`]); yields `(handle, location)`."""
    location = path if isinstance(path, AnnotationFile) else resolve_annotation_file(path)
    if location.member is None:
        with open(location.path, "rb") as handle:
            yield handle, location
    else:
        with zipfile.ZipFile(location.path) as archive, archive.open(location.member) as handle:
            yield handle, location


def read_json(path: str | os.PathLike[str] | AnnotationFile) -> tuple[Any, AnnotationFile]:
    """Parse a whole json file. Returns `(data, location)`.

    Raises:
        AnnotationFileError: The file is missing or is not valid json (with the line and column of the problem).
    """
    with open_annotation_file(path) as (handle, location):
        raw = handle.read()
    try:
        return json.loads(raw.decode("utf-8")), location
    except UnicodeDecodeError as error:
        raise AnnotationFileError(f"{location}: not valid UTF-8 at byte {error.start}") from error
    except json.JSONDecodeError as error:
        raise AnnotationFileError(f"{location}:{error.lineno}:{error.colno}: malformed json: {error.msg}") from error


def _report(error: BadSampleError, on_bad_record: OnBadRecord | None) -> None:
    if on_bad_record is None:
        raise error
    on_bad_record(error)


def iter_jsonl(
    path: str | os.PathLike[str] | AnnotationFile, on_bad_record: OnBadRecord | None = None
) -> Iterator[tuple[dict[str, Any], str]]:
    """Yield `(record, "<file>:<line>")` for each non-blank line of a jsonl file.

    A line that is not a JSON object is a bad record (`malformed_record`): passed to `on_bad_record`, or raised
    without one.
    """
    with open_annotation_file(path) as (handle, location):
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            source = f"{location}:{number}"
            try:
                record = json.loads(line.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as error:
                _report(bad_sample(source, f"malformed json line: {error}", MALFORMED_RECORD), on_bad_record)
                continue
            if not isinstance(record, dict):
                reason = f"line is a json {type(record).__name__}, not an object"
                _report(bad_sample(source, reason, MALFORMED_RECORD), on_bad_record)
                continue
            yield record, source


def iter_json_records(
    path: str | os.PathLike[str] | AnnotationFile, on_bad_record: OnBadRecord | None = None
) -> Iterator[tuple[dict[str, Any], str]]:
    """Yield `(record, source)` of a json file holding a list of objects (`"<file>[i]"`) or a dict of objects keyed by
    id (`"<file>[key]"`; the key is added to the record as `"__key__"`).

    Raises:
        AnnotationFileError: The file is not valid json, or is neither a list nor a dict.
    """
    data, location = read_json(path)
    if isinstance(data, list):
        items = ((f"{location}[{index}]", record, None) for index, record in enumerate(data))
    elif isinstance(data, dict):
        items = ((f"{location}[{key}]", record, key) for key, record in data.items())
    else:
        raise AnnotationFileError(f"{location}: expected a json list or dict of records, got {type(data).__name__}")
    for source, record, key in items:
        if not isinstance(record, dict):
            reason = f"record is a json {type(record).__name__}, not an object"
            _report(bad_sample(source, reason, MALFORMED_RECORD), on_bad_record)
            continue
        if key is not None:
            record = {**record, "__key__": key}
        yield record, source


def is_jsonl(path: str | os.PathLike[str]) -> bool:
    """Whether a path names a jsonl file (`.jsonl` or `.jsonl.zip`)."""
    name = Path(path).name
    return name.endswith((".jsonl", ".jsonl.zip"))
