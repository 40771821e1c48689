"""`CCLMIndex`: a gallery of images (or captions) embedded once, searched in two stages.

Stage 1 ranks the whole gallery by the cosine similarity of the normalised contrastive embeddings (exact, torch or
FAISS). Stage 2 (optional) re-scores the top `rerank_k` candidates of every query with the matching head, through
`cclm_hf.retrieval.itm_scores`, the re-ranker the benchmark evaluation uses too. For that the index keeps what the
fusion layers read: the image tokens of an image gallery, the text-only states of a caption gallery.

On disk (`directory`):

    index.json              format, kind, storage dtype, settings, the model's identity (see `identity.py`)
    shard-00000.safetensors embeds [n, E] (+ tokens [n, 1 + P, D] | states [n, L, H] + attention_mask [n, L]);
    shard-00001.safetensors the ids (and captions) of the rows in the safetensors metadata
    ...

An index bound to a directory writes every `shard_size` new rows as a shard at once and reads its shards back
memory-mapped, so building a large gallery never holds more than one shard in memory, and a build that is
interrupted continues where it stopped: building into the same directory again skips the ids already there.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any, Literal

import PIL.Image
import torch
from tqdm.auto import tqdm

from ..data.images import BadSampleError, load_image
from ..modeling_cclm import CCLMModel
from ..retrieval import EncodedImages, EncodedTexts, encode_images, encode_texts, itm_scores
from .identity import check_model_identity, model_identity
from .nearest import FaissFlatIndex, NearestBackend, top_k_torch
from .sources import dataset_images, folder_images, listed_items
from .store import SHARD_PATTERN, RowStore, Shard, next_shard_path, read_shard, write_shard


logger = logging.getLogger(__name__)

INDEX_FILE = "index.json"
FORMAT = "cclm-hf-index"
FORMAT_VERSION = 1

IndexKind = Literal["image", "text"]
RerankRule = Literal["itm", "itc", "itm+itc"]
OnError = Literal["raise", "skip"]

_STORAGE_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
DEFAULT_RERANK_K = 128
# CCLM's retrieval configs tokenise captions to `max_tokens` 40
DEFAULT_TEXT_MAX_LENGTH = 40


@dataclass
class SearchHit:
    """One result of a query.

    Attributes:
        id: the gallery item's id (for a folder: the path relative to the folder).
        score: the ranking score under the search's rule: the cosine similarity (`rerank=None` / `"itc"`), the ITM
            logit of class "match" (`"itm"`), or their sum (`"itm+itc"`).
        similarity: the stage-1 cosine similarity of the contrastive embeddings.
        row: the item's row in the index.
        text: the caption, for a caption index.
    """

    id: str
    score: float
    similarity: float
    row: int
    text: str | None = None


@dataclass
class AddReport:
    """What an `add` did: rows added, unreadable images skipped `(id, reason)`, ids already in the index."""

    added: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    already_indexed: int = 0


class CCLMIndex:
    """Normalised embeddings, ids and (optionally) re-ranking states of a gallery, with two-stage search.

    Build one with `from_folder`, `from_images`, `from_dataset` (image galleries, searched with text queries in any
    language) or `from_texts` (caption galleries, searched with image queries); extend it with `add`; `save` /
    `load` it. `model` is a `CCLMForImageTextRetrieval` (or any head with `.cclm` and `.itm_head`; a bare
    `CCLMModel` can build and search without re-ranking), in eval mode; `processor` its `CCLMProcessor`.
    """

    def __init__(
        self,
        model,
        processor,
        settings: dict[str, Any],
        directory: str | os.PathLike | None = None,
        shard_size: int = 1024,
    ):
        """Use the `create` / `from_*` / `load` class methods; this binds already validated `settings`."""
        if model.training:
            raise ValueError("the model is in training mode (dropout is active): call model.eval() first")
        self.model = model
        self.processor = processor
        self.settings = settings
        self.directory = Path(directory) if directory is not None else None
        self.shard_size = shard_size
        self._shards: list[Shard] = []
        self._id_set: set[str] = set()
        self._identity: dict[str, Any] | None = None
        self._cache: dict[str, Any] = {}

    # ---------------------------------------------------------------- creation, loading, saving

    @classmethod
    def create(
        cls,
        model,
        processor,
        kind: IndexKind = "image",
        directory: str | os.PathLike | None = None,
        dtype: str | torch.dtype | None = None,
        store_rerank_states: bool | None = None,
        text_max_length: int | None = None,
        shard_size: int = 1024,
    ) -> CCLMIndex:
        """An empty index, or the index already in `directory` (to extend it or to resume its build).

        Args:
            kind: `"image"` (a gallery of images, text queries) or `"text"` (a gallery of captions, image queries).
            directory: where to keep the index; `None` keeps it in memory (`save` writes it later).
            dtype: storage dtype of embeddings and re-ranking states, `"float32"` (default), `"float16"` or
                `"bfloat16"`; re-ranking upcasts to the model's dtype.
            store_rerank_states: keep the image tokens (or text-only states) the matching head re-ranks with
                (default `True`); without them the index is smaller but only `rerank=None` / `"itc"` work.
            text_max_length: token budget of captions and text queries (default 40, as CCLM's retrieval configs).
            shard_size: rows per shard file (and the most an interrupted build has to redo).

        Settings left `None` take the existing index's values, or the defaults for a new one; an explicit value
        that differs from an existing index's is an error.
        """
        requested = {
            "kind": kind,
            "dtype": _dtype_name(dtype) if dtype is not None else None,
            "store_rerank_states": store_rerank_states,
            "text_max_length": text_max_length,
        }
        if directory is not None and (Path(directory) / INDEX_FILE).is_file():
            index = cls.load(directory, model, processor, shard_size=shard_size)
            for name, value in requested.items():
                if value is not None and index.settings.get(name) != value:
                    raise ValueError(
                        f"{Path(directory) / INDEX_FILE} has {name}={index.settings.get(name)!r}, but "
                        f"{name}={value!r} was asked for: continue it with the same settings, or use another "
                        "directory"
                    )
            return index
        defaults = {"dtype": "float32", "store_rerank_states": True, "text_max_length": DEFAULT_TEXT_MAX_LENGTH}
        settings = {name: defaults.get(name) if value is None else value for name, value in requested.items()}
        settings["images_root"] = None  # the folder image ids are relative to, set by `add_folder`
        index = cls(model, processor, settings, directory, shard_size)
        if directory is not None:
            directory = Path(directory)
            if directory.exists() and any(directory.iterdir()):
                raise FileExistsError(f"{str(directory)!r} is not empty and holds no {INDEX_FILE}: choose another")
            directory.mkdir(parents=True, exist_ok=True)
            index._write_index_file(directory)
        return index

    @classmethod
    def load(cls, directory: str | os.PathLike, model, processor, shard_size: int = 1024) -> CCLMIndex:
        """Open a saved index (shards memory-mapped); refuses a `model` other than the one it was built with."""
        directory = Path(directory)
        index_file = directory / INDEX_FILE
        if not index_file.is_file():
            raise FileNotFoundError(f"no index at {str(directory)!r} ({INDEX_FILE} not found)")
        manifest = json.loads(index_file.read_text())
        if manifest.get("format") != FORMAT or manifest.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"{index_file}: not a {FORMAT} file of version {FORMAT_VERSION} (format "
                f"{manifest.get('format')!r}, version {manifest.get('format_version')!r})"
            )
        index = cls(model, processor, manifest["settings"], directory, shard_size)
        check_model_identity(manifest["model"], index._base_model, f"the index at {str(directory)!r}")
        index._identity = manifest["model"]
        for path in sorted(directory.glob(SHARD_PATTERN)):
            index._attach(read_shard(path))
        return index

    def save(self, directory: str | os.PathLike) -> None:
        """Write the index to `directory` (which must not hold an index yet); a no-op for its own directory."""
        directory = Path(directory)
        if self.directory is not None and directory.resolve() == self.directory.resolve():
            return  # every shard was written when it was added
        if (directory / INDEX_FILE).exists():
            raise FileExistsError(f"{str(directory)!r} already holds an index")
        directory.mkdir(parents=True, exist_ok=True)
        for shard in self._shards:
            write_shard(next_shard_path(directory), shard.tensors, shard.ids, shard.texts)
        self._write_index_file(directory)

    def _write_index_file(self, directory: Path) -> None:
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "settings": self.settings,
            "model": self.identity,
        }
        temporary = directory / (INDEX_FILE + ".tmp")
        temporary.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
        os.replace(temporary, directory / INDEX_FILE)

    # ---------------------------------------------------------------- builders

    @classmethod
    def from_folder(
        cls,
        model,
        processor,
        images_dir: str | os.PathLike,
        directory: str | os.PathLike | None = None,
        recursive: bool = True,
        on_error: OnError = "raise",
        batch_size: int = 32,
        **create_kwargs,
    ) -> CCLMIndex:
        """Index the image files under `images_dir` (see `add_folder`); `create_kwargs` go to `create`."""
        index = cls.create(model, processor, "image", directory, **create_kwargs)
        index.add_folder(images_dir, recursive, on_error=on_error, batch_size=batch_size)
        return index

    @classmethod
    def from_images(
        cls,
        model,
        processor,
        images: Sequence[Any],
        ids: Sequence[str] | None = None,
        directory: str | os.PathLike | None = None,
        on_error: OnError = "raise",
        batch_size: int = 32,
        **create_kwargs,
    ) -> CCLMIndex:
        """Index image paths or PIL images (ids: the given ones, else the paths, else "0", "1", ...)."""
        index = cls.create(model, processor, "image", directory, **create_kwargs)
        index.add(images, ids, on_error=on_error, batch_size=batch_size, skip_existing=directory is not None)
        return index

    @classmethod
    def from_dataset(
        cls,
        model,
        processor,
        dataset: Iterable[dict],
        image_column: str = "image",
        id_column: str | None = None,
        directory: str | os.PathLike | None = None,
        on_error: OnError = "raise",
        batch_size: int = 32,
        **create_kwargs,
    ) -> CCLMIndex:
        """Index the image column of a `datasets` dataset (see `add_dataset`)."""
        index = cls.create(model, processor, "image", directory, **create_kwargs)
        index.add_dataset(dataset, image_column, id_column, on_error=on_error, batch_size=batch_size)
        return index

    @classmethod
    def from_texts(
        cls,
        model,
        processor,
        texts: Sequence[str],
        ids: Sequence[str] | None = None,
        directory: str | os.PathLike | None = None,
        batch_size: int = 128,
        **create_kwargs,
    ) -> CCLMIndex:
        """Index captions (ids: the given ones, else "0", "1", ...), to search them with image queries."""
        index = cls.create(model, processor, "text", directory, **create_kwargs)
        index.add(texts, ids, batch_size=batch_size, skip_existing=directory is not None)
        return index

    def add_folder(
        self,
        images_dir: str | os.PathLike,
        recursive: bool = True,
        on_error: OnError = "raise",
        batch_size: int = 32,
    ) -> AddReport:
        """Add the image files under `images_dir` that are not indexed yet; ids are the paths relative to it.

        Run again on the same folder and index directory, this resumes an interrupted build, or adds the photos
        that are new since. An index holds one folder: another folder's relative paths would collide.
        """
        self._require_kind("image", "add_folder")
        images_root = str(Path(images_dir).resolve())
        if self.settings["images_root"] not in (None, images_root):
            raise ValueError(
                f"this index holds the folder {self.settings['images_root']!r}, not {images_root!r}: use another "
                "index directory for another folder"
            )
        files = folder_images(images_dir, recursive)
        if self.settings["images_root"] is None:
            self.settings["images_root"] = images_root
            if self.directory is not None:
                self._write_index_file(self.directory)
        return self._add_pairs(files, on_error=on_error, batch_size=batch_size, skip_existing=True)

    def add_dataset(
        self,
        dataset: Iterable[dict],
        image_column: str = "image",
        id_column: str | None = None,
        on_error: OnError = "raise",
        batch_size: int = 32,
    ) -> AddReport:
        """Add the images of a `datasets.Dataset` / `IterableDataset` column (ids: `id_column`, else row numbers).

        Rows whose id is indexed already are left out, so that an interrupted build resumes.
        """
        self._require_kind("image", "add_dataset")
        pairs = dataset_images(dataset, image_column, id_column)
        return self._add_pairs(pairs, on_error=on_error, batch_size=batch_size, skip_existing=True)

    def add(
        self,
        items: Sequence[Any],
        ids: Sequence[str] | None = None,
        on_error: OnError = "raise",
        batch_size: int = 32,
        skip_existing: bool = False,
    ) -> AddReport:
        """Embed and append images (paths, PIL images, `datasets` image dicts) or, to a caption index, texts.

        Args:
            ids: one per item; default: the paths of path items, else running numbers.
            on_error: an unreadable image raises a `BadSampleError` naming it (`"raise"`), or is logged, counted in
                the report and left out (`"skip"`).
            skip_existing: leave out items whose id is already indexed (resuming); otherwise such an id is an error.
        """
        pairs = listed_items(items, ids, len(self), ids_from_paths=self.kind == "image")
        return self._add_pairs(pairs, on_error=on_error, batch_size=batch_size, skip_existing=skip_existing)

    def _add_pairs(
        self, pairs: Iterable[tuple[str, Any]], on_error: OnError, batch_size: int, skip_existing: bool
    ) -> AddReport:
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        report = AddReport()
        total = None
        if isinstance(pairs, list):  # the progress bar's total
            total = len(pairs) - (sum(item_id in self._id_set for item_id, _ in pairs) if skip_existing else 0)
        new_pairs = self._new_pairs(pairs, skip_existing, report)
        pending: list[Shard] = []
        with tqdm(total=total, desc=f"indexing {self.kind}s", unit=self.kind) as progress:
            while batch := list(islice(new_pairs, batch_size)):
                progress.update(len(batch))
                rows = self._encode_batch(batch, on_error, report)
                if rows is not None:
                    pending.append(rows)
                    report.added += len(rows)
                if sum(len(rows) for rows in pending) >= self.shard_size:
                    self._append(pending)
                    pending = []
        if pending:
            self._append(pending)
        if report.already_indexed:
            logger.info("%d item(s) already indexed, left out", report.already_indexed)
        if report.skipped:
            logger.warning("skipped %d unreadable image(s): %s", len(report.skipped), [i for i, _ in report.skipped])
        return report

    def _new_pairs(
        self, pairs: Iterable[tuple[str, Any]], skip_existing: bool, report: AddReport
    ) -> Iterator[tuple[str, Any]]:
        seen: set[str] = set()
        for item_id, item in pairs:
            if item_id in self._id_set:
                if not skip_existing:
                    raise ValueError(f"id {item_id!r} is already in the index")
                report.already_indexed += 1
                continue
            if item_id in seen:
                raise ValueError(f"id {item_id!r} appears twice in the items to add")
            seen.add(item_id)
            yield item_id, item

    @torch.no_grad()
    def _encode_batch(self, batch: list[tuple[str, Any]], on_error: OnError, report: AddReport) -> Shard | None:
        """The rows of one batch (tensors in the storage dtype, on the CPU); `None` when nothing was readable."""
        storage = _STORAGE_DTYPES[self.settings["dtype"]]
        keep_states = self.settings["store_rerank_states"]
        if self.kind == "text":
            texts = [text for _, text in batch]
            for item_id, text in batch:
                if not isinstance(text, str):
                    raise TypeError(f"caption {item_id!r} is a {type(text).__name__}, not a str")
            # stored captions share one length, so that any of them can be gathered together for re-ranking
            encoded = self._encode_texts(texts, padding="max_length", batch_size=len(texts))
            tensors = {"embeds": encoded.embeds}
            if keep_states:
                tensors |= {"states": encoded.states, "attention_mask": encoded.attention_mask.bool()}
            ids = [item_id for item_id, _ in batch]
        else:
            ids, images = [], []
            for item_id, item in batch:
                try:
                    images.append(load_image(item, source=item_id))
                except BadSampleError as error:
                    if on_error == "raise":
                        raise
                    logger.warning("skipping unreadable image %s", error)
                    report.skipped.append((item_id, error.reason))
                    continue
                ids.append(item_id)
            if not images:
                return None
            encoded = self._encode_images(images)
            tensors = {"embeds": encoded.embeds} | ({"tokens": encoded.tokens} if keep_states else {})
            texts = None
        tensors = {
            name: tensor.cpu() if tensor.dtype == torch.bool else tensor.to("cpu", storage)
            for name, tensor in tensors.items()
        }
        return Shard(None, tensors, ids, texts)

    def _encode_images(self, images: list[PIL.Image.Image]) -> EncodedImages:
        pixel_values = self.processor(images=images, return_tensors="pt")["pixel_values"]
        return encode_images(self._base_model, pixel_values, batch_size=len(images), show_progress=False)

    def _encode_texts(self, texts: list[str], padding: str | bool, batch_size: int) -> EncodedTexts:
        inputs = self.processor(
            text=texts,
            padding=padding,
            truncation=True,
            max_length=self.settings["text_max_length"],
            return_tensors="pt",
        )
        return encode_texts(
            self._base_model, inputs["input_ids"], inputs["attention_mask"], batch_size, show_progress=False
        )

    def _append(self, batches: list[Shard]) -> None:
        ids = [item_id for batch in batches for item_id in batch.ids]
        tensors = {name: torch.cat([batch.tensors[name] for batch in batches]) for name in batches[0].tensors}
        texts = None if self.kind == "image" else [text for batch in batches for text in batch.texts]
        if self.directory is None:
            self._attach(Shard(None, tensors, ids, texts))
            return
        path = next_shard_path(self.directory)
        write_shard(path, tensors, ids, texts)
        self._attach(read_shard(path))  # memory-mapped: the rows leave RAM

    def _attach(self, shard: Shard) -> None:
        duplicated = self._id_set.intersection(shard.ids)
        if duplicated:
            raise ValueError(f"{shard.path or 'new rows'}: ids already in the index: {sorted(duplicated)[:5]}")
        self._shards.append(shard)
        self._id_set.update(shard.ids)
        self._cache = {}

    # ---------------------------------------------------------------- contents

    @property
    def kind(self) -> IndexKind:
        return self.settings["kind"]

    def _require_kind(self, kind: IndexKind, what: str) -> None:
        if self.kind != kind:
            raise ValueError(f"{what} needs an {kind} index, but this is a {self.kind} index")

    @property
    def _base_model(self) -> CCLMModel:
        return self.model.base_model

    @property
    def identity(self) -> dict[str, Any]:
        """The model identity recorded in `index.json` (name and probe embeddings)."""
        if self._identity is None:
            self._identity = model_identity(self._base_model)
        return self._identity

    def __len__(self) -> int:
        return sum(len(shard) for shard in self._shards)

    @property
    def ids(self) -> list[str]:
        return self._cached("ids", lambda: [item_id for shard in self._shards for item_id in shard.ids])

    @property
    def texts(self) -> list[str] | None:
        """The captions of a caption index (`None` for an image index)."""
        if self.kind == "image":
            return None
        return self._cached("texts", lambda: [text for shard in self._shards for text in shard.texts])

    @property
    def embeds(self) -> torch.Tensor:
        """`[N, E]` normalised embeddings in the storage dtype (in memory)."""
        return self._cached("embeds", lambda: torch.cat([shard.tensors["embeds"] for shard in self._shards]))

    def rerank_store(self, name: str) -> RowStore:
        """The memory-mapped rows `tokens` (image index) or `states` / `attention_mask` (caption index)."""
        if not self.settings["store_rerank_states"]:
            what = "image tokens" if self.kind == "image" else "text states"
            raise ValueError(
                f"this index was built without the {what} the matching head needs (store_rerank_states=False): "
                "search it with rerank=None or 'itc', or rebuild it with store_rerank_states=True"
            )
        return self._cached(name, lambda: RowStore([shard.tensors[name] for shard in self._shards]))

    def _cached(self, name: str, compute):
        if name not in self._cache:
            self._cache[name] = compute()
        return self._cache[name]

    # ---------------------------------------------------------------- search

    @torch.no_grad()
    def search(
        self,
        queries: str | os.PathLike | PIL.Image.Image | Sequence[Any],
        k: int = 10,
        rerank: RerankRule | None = None,
        rerank_k: int | None = None,
        batch_size: int = 64,
        chunk_size: int = 128,
        backend: NearestBackend = "torch",
    ) -> list[list[SearchHit]]:
        """The `k` best gallery items of every query, best first.

        Args:
            queries: texts in any language for an image index; images (PIL images or paths) for a caption index.
                One query may be passed alone; the result is always a list with one list of hits per query.
            k: hits per query; a `k` larger than the gallery returns the whole gallery, ranked.
            rerank: `None` or `"itc"`: rank by the contrastive cosine similarity (the dual encoder's rule; no
                second stage). `"itm"`: re-score the top `rerank_k` with the matching head's logit of class
                "match", the rule of the CCLM paper. `"itm+itc"`: that logit plus the cosine similarity, the rule of
                LAVIS (ALBEF/BLIP).
            rerank_k: stage-1 candidates per query that the matching head re-scores, at least `k`; default
                `max(k, 128)` (128: CCLM's `k_test` for xFlickr&CO, WIT and Multi30K).
            batch_size: queries encoded at once.
            chunk_size: query-candidate pairs the matching head gathers at once (bounds its memory).
            backend: stage-1 nearest neighbours with `"torch"` or `"faiss"`; both are exact.
        """
        if isinstance(queries, (str, os.PathLike, PIL.Image.Image)):
            queries = [queries]
        queries = list(queries)
        if rerank not in (None, "itc", "itm", "itm+itc"):
            raise ValueError(f"rerank must be None, 'itc', 'itm' or 'itm+itc', got {rerank!r}")
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        uses_itm = rerank in ("itm", "itm+itc")
        rerank_k = max(k, DEFAULT_RERANK_K) if rerank_k is None else rerank_k
        if uses_itm and rerank_k < k:
            raise ValueError(f"rerank_k ({rerank_k}) must be at least k ({k})")
        if uses_itm and not hasattr(self.model, "itm_head"):
            raise ValueError(
                f"rerank={rerank!r} needs a model with the matching head (CCLMForImageTextRetrieval), got "
                f"{type(self.model).__name__}"
            )
        if len(self) == 0:
            raise ValueError("the index is empty: add images or texts before searching")
        if not queries:
            return []
        if k > len(self):
            logger.warning("k=%d is larger than the gallery (%d items): returning all of them, ranked", k, len(self))
        k = min(k, len(self))
        num_candidates = min(rerank_k, len(self)) if uses_itm else k

        encoded = self._encode_queries(queries, batch_size)
        if backend == "faiss":
            similarity, candidates = self._faiss_index().search(encoded.embeds, num_candidates)
        elif backend == "torch":
            similarity, candidates = top_k_torch(encoded.embeds, self.embeds, num_candidates)
        else:
            raise ValueError(f"backend must be 'torch' or 'faiss', got {backend!r}")
        similarity, candidates = similarity.cpu(), candidates.cpu()

        scores = similarity
        if uses_itm:
            scores = self._itm_scores(encoded, candidates, chunk_size).view_as(similarity)
            if rerank == "itm+itc":
                scores = scores + similarity
        scores, order = scores.topk(k, dim=1)
        rows, similarity = candidates.gather(1, order), similarity.gather(1, order)
        per_query = zip(rows.tolist(), scores.tolist(), similarity.tolist(), strict=True)
        return [self._hits(*values) for values in per_query]

    def _encode_queries(self, queries: list[Any], batch_size: int) -> EncodedImages | EncodedTexts:
        if self.kind == "image":
            if not all(isinstance(query, str) for query in queries):
                raise TypeError("an image index is searched with text queries (str)")
            return self._encode_texts(queries, padding=True, batch_size=batch_size)
        parts = []
        for start in range(0, len(queries), batch_size):
            batch = queries[start : start + batch_size]
            images = [load_image(query, source=f"query {start + n}") for n, query in enumerate(batch)]
            parts.append(self._encode_images(images))
        return EncodedImages(torch.cat([part.tokens for part in parts]), torch.cat([part.embeds for part in parts]))

    def _itm_scores(
        self, queries: EncodedImages | EncodedTexts, candidates: torch.LongTensor, chunk_size: int
    ) -> torch.Tensor:
        query_of_pair = torch.arange(len(candidates)).repeat_interleave(candidates.shape[1])
        if self.kind == "image":
            gallery = EncodedImages(self.rerank_store("tokens"), self.embeds)
            return itm_scores(self.model, gallery, queries, candidates.flatten(), query_of_pair, chunk_size)
        gallery = EncodedTexts(self.rerank_store("states"), self.rerank_store("attention_mask"), self.embeds)
        return itm_scores(self.model, queries, gallery, query_of_pair, candidates.flatten(), chunk_size)

    def _faiss_index(self) -> FaissFlatIndex:
        return self._cached("faiss", lambda: FaissFlatIndex(self.embeds))

    def _hits(self, rows: list[int], scores: list[float], similarities: list[float]) -> list[SearchHit]:
        ids, texts = self.ids, self.texts
        return [
            SearchHit(ids[row], score, similarity, row, texts[row] if texts is not None else None)
            for row, score, similarity in zip(rows, scores, similarities, strict=True)
        ]


def _dtype_name(dtype: str | torch.dtype) -> str:
    name = str(dtype).removeprefix("torch.")
    if name not in _STORAGE_DTYPES:
        raise ValueError(f"storage dtype must be one of {sorted(_STORAGE_DTYPES)}, got {dtype!r}")
    return name
