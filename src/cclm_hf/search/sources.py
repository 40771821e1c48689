"""Where gallery images come from: a folder, a list of paths or PIL images, or a `datasets` image column."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any


IMAGE_EXTENSIONS = frozenset({".bmp", ".gif", ".jpeg", ".jpg", ".png", ".tif", ".tiff", ".webp"})


def folder_images(images_dir: str | os.PathLike, recursive: bool = True) -> list[tuple[str, Path]]:
    """`(id, path)` of the image files under `images_dir`, sorted; the id is the path relative to the folder.

    Files are recognised by their extension (`IMAGE_EXTENSIONS`, any case); other files are not part of the gallery.
    Whether an image file can be decoded is only found out when it is embedded.
    """
    root = Path(images_dir)
    if not root.is_dir():
        raise NotADirectoryError(f"images folder not found: {str(root)!r}")
    candidates = root.rglob("*") if recursive else root.iterdir()
    files = sorted(path for path in candidates if path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file())
    return [(path.relative_to(root).as_posix(), path) for path in files]


def listed_items(
    items: Sequence[Any], ids: Sequence[str] | None, first_number: int, ids_from_paths: bool
) -> list[tuple[str, Any]]:
    """Pair items with ids: the given ones; else the item itself when it is a path (and `ids_from_paths`); else a
    running number starting at `first_number`."""
    if ids is not None:
        if len(ids) != len(items):
            raise ValueError(f"got {len(ids)} ids for {len(items)} items")
        return [(str(item_id), item) for item_id, item in zip(ids, items, strict=True)]
    return [
        (os.fspath(item) if ids_from_paths and isinstance(item, (str, os.PathLike)) else str(first_number + n), item)
        for n, item in enumerate(items)
    ]


def dataset_images(dataset: Iterable[dict], image_column: str, id_column: str | None) -> Iterator[tuple[str, Any]]:
    """`(id, undecoded image)` of a `datasets.Dataset` / `IterableDataset`; the id is `id_column` or the row number.

    The image column is read undecoded (`datasets.Image(decode=False)`), so that an unreadable image is reported
    (or skipped) by the index builder like a bad file in a folder, naming its row, instead of failing inside
    `datasets`.
    """
    import datasets

    features = getattr(dataset, "features", None)
    for column in (image_column, id_column):
        if features is not None and column is not None and column not in features:
            raise KeyError(f"the dataset has no column {column!r}; columns: {sorted(features)}")
    if features is not None and isinstance(features[image_column], datasets.Image):
        dataset = dataset.cast_column(image_column, datasets.Image(decode=False))
    for row_number, row in enumerate(dataset):
        yield (str(row[id_column]) if id_column else str(row_number)), row[image_column]
