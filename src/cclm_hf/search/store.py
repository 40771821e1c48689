"""Index shards on disk: safetensors files read back memory-mapped, and row stores spanning several shards.

A shard is a plain safetensors file (readable with `safetensors.safe_open`) whose `__metadata__` carries the ids
(and, for caption indexes, the texts) of its rows as JSON. It is written to a temporary name and renamed, so a shard
on disk is always complete: an interrupted build leaves whole shards behind, never half of one.

`safetensors.safe_open(...).get_tensor` copies a tensor into memory; a gallery's image tokens (300 KB per image at
Swin-B 384 in fp16) must not, so `read_shard` maps the file with `numpy.memmap` at the offsets of the safetensors
header instead, and only the rows a search touches are read.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file


SHARD_PATTERN = "shard-*.safetensors"

# safetensors dtype -> the numpy dtype the bytes are mapped with, and the torch dtype they are viewed as
_DTYPES = {
    "F32": (np.float32, torch.float32),
    "F16": (np.float16, torch.float16),
    "BF16": (np.int16, torch.bfloat16),
    "BOOL": (np.bool_, torch.bool),
    "I64": (np.int64, torch.int64),
}


@dataclass
class Shard:
    """Rows of an index: tensors (memory-mapped when read from `path`) and the ids / texts of the rows."""

    path: Path | None
    tensors: dict[str, torch.Tensor]
    ids: list[str]
    texts: list[str] | None = None

    def __len__(self) -> int:
        return len(self.ids)


def next_shard_path(directory: str | os.PathLike) -> Path:
    """`shard-NNNNN.safetensors`, numbered after the last shard in `directory` (never over an existing one)."""
    numbers = [int(path.name.split("-")[1].split(".")[0]) for path in Path(directory).glob(SHARD_PATTERN)]
    return Path(directory) / f"shard-{max(numbers, default=-1) + 1:05d}.safetensors"


def write_shard(
    path: str | os.PathLike, tensors: dict[str, torch.Tensor], ids: list[str], texts: list[str] | None = None
) -> None:
    """Write `tensors` (rows aligned with `ids`, at least one) atomically: to `path.tmp`, then renamed."""
    if not ids:
        raise ValueError(f"{path}: an index shard needs at least one row")
    path = Path(path)
    metadata = {"ids": json.dumps(ids, ensure_ascii=False)}
    if texts is not None:
        metadata["texts"] = json.dumps(texts, ensure_ascii=False)
    temporary = path.with_name(path.name + ".tmp")
    save_file({name: tensor.contiguous() for name, tensor in tensors.items()}, str(temporary), metadata=metadata)
    os.replace(temporary, path)


def read_shard(path: str | os.PathLike) -> Shard:
    """Open a shard; its tensors are views of the memory-mapped file (copy-on-write, the file is never changed)."""
    path = Path(path)
    with open(path, "rb") as handle:
        (header_size,) = struct.unpack("<Q", handle.read(8))
        header = json.loads(handle.read(header_size))
    metadata = header.pop("__metadata__", {}) or {}
    if "ids" not in metadata:
        raise ValueError(f"{path}: not an index shard (no 'ids' in the safetensors metadata)")
    data_start = 8 + header_size
    tensors = {}
    for name, entry in header.items():
        if entry["dtype"] not in _DTYPES:
            raise ValueError(f"{path}: tensor {name!r} has dtype {entry['dtype']}, which index shards do not use")
        numpy_dtype, torch_dtype = _DTYPES[entry["dtype"]]
        begin = entry["data_offsets"][0]
        array = np.memmap(path, dtype=numpy_dtype, mode="c", offset=data_start + begin, shape=tuple(entry["shape"]))
        tensors[name] = torch.from_numpy(array).view(torch_dtype)
    ids = json.loads(metadata["ids"])
    texts = json.loads(metadata["texts"]) if "texts" in metadata else None
    for name, tensor in tensors.items():
        if tensor.shape[0] != len(ids):
            raise ValueError(f"{path}: tensor {name!r} has {tensor.shape[0]} rows for {len(ids)} ids")
    return Shard(path, tensors, ids, texts)


class RowStore:
    """Rows `[N, ...]` stored as consecutive parts (shards); `store[rows]` gathers them into one tensor.

    Only the parts that hold requested rows are touched, and only those rows are read: the Python loop runs over
    the parts involved, never over rows.
    """

    def __init__(self, parts: list[torch.Tensor]):
        if not parts:
            raise ValueError("a RowStore needs at least one part")
        self.parts = parts
        self.row_shape = tuple(parts[0].shape[1:])
        self.dtype = parts[0].dtype
        for part in parts:
            if tuple(part.shape[1:]) != self.row_shape or part.dtype != self.dtype:
                raise ValueError(
                    f"parts of a RowStore must agree: rows {self.row_shape} {self.dtype}, got "
                    f"{tuple(part.shape[1:])} {part.dtype}"
                )
        self.offsets = torch.tensor([0] + [len(part) for part in parts]).cumsum(0)

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getitem__(self, rows: torch.LongTensor) -> torch.Tensor:
        rows = torch.as_tensor(rows, dtype=torch.long).cpu()
        if len(rows) and (rows.min() < 0 or rows.max() >= len(self)):
            raise IndexError(f"row index out of range for a store of {len(self)} rows")
        part_of_row = torch.searchsorted(self.offsets[1:], rows, right=True)
        gathered = torch.empty((len(rows), *self.row_shape), dtype=self.dtype)
        for part in part_of_row.unique().tolist():
            selected = part_of_row == part
            gathered[selected] = self.parts[part][rows[selected] - self.offsets[part]]
        return gathered
