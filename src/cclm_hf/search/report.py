"""Search results for people: a text table, JSON records and an HTML page with thumbnails."""

from __future__ import annotations

import base64
import html
import io
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..data.images import BadSampleError, load_image
from .index import CCLMIndex, SearchHit


THUMBNAIL_SIZE = 192


def results_as_records(queries: list[Any], results: list[list[SearchHit]]) -> list[dict[str, Any]]:
    """`[{"query": ..., "hits": [{"rank": 1, "id": ..., "score": ..., "similarity": ..., "row": ..., ...}]}]`."""
    return [
        {"query": str(query), "hits": [{"rank": rank, **asdict(hit)} for rank, hit in enumerate(hits, start=1)]}
        for query, hits in zip(queries, results, strict=True)
    ]


def format_results_table(queries: list[Any], results: list[list[SearchHit]]) -> str:
    """One block per query: rank, score, cosine similarity, id (and caption)."""
    blocks = []
    for query, hits in zip(queries, results, strict=True):
        lines = [f"query: {query}", f"{'rank':>4}  {'score':>9}  {'cosine':>7}  id"]
        for rank, hit in enumerate(hits, start=1):
            caption = f"  {hit.text}" if hit.text is not None else ""
            lines.append(f"{rank:>4}  {hit.score:>9.4f}  {hit.similarity:>7.4f}  {hit.id}{caption}")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def write_results_html(
    path: str | os.PathLike, queries: list[Any], results: list[list[SearchHit]], index: CCLMIndex
) -> None:
    """A self-contained page: for each query its hits as thumbnails (embedded), with rank, score and id.

    Thumbnails need the image files: ids relative to the folder the index was built from, or absolute paths. Hits
    without a readable file (PIL images, dataset rows, moved files) are shown by id.
    """
    sections = []
    for query, hits in zip(queries, results, strict=True):
        cards = []
        for rank, hit in enumerate(hits, start=1):
            thumbnail = _thumbnail(index, hit)
            picture = f'<img src="{thumbnail}" alt="{html.escape(hit.id)}">' if thumbnail else ""
            caption = f"<p>{html.escape(hit.text)}</p>" if hit.text is not None else ""
            cards.append(
                f"<figure>{picture}<figcaption><b>#{rank}</b> {hit.score:.4f}<br><code>{html.escape(hit.id)}</code>"
                f"</figcaption>{caption}</figure>"
            )
        sections.append(f"<section><h2>{html.escape(str(query))}</h2>{''.join(cards)}</section>")
    page = (
        '<!doctype html>\n<html><head><meta charset="utf-8"><title>cclm-hf search</title><style>'
        "body{font-family:sans-serif;margin:2em}section{margin-bottom:2em}"
        "figure{display:inline-block;vertical-align:top;margin:0 1em 1em 0;max-width:"
        f"{THUMBNAIL_SIZE}px}}img{{max-width:{THUMBNAIL_SIZE}px;max-height:{THUMBNAIL_SIZE}px}}"
        "figcaption{font-size:90%}code{word-break:break-all}"
        f"</style></head><body>{''.join(sections)}</body></html>\n"
    )
    Path(path).write_text(page, encoding="utf-8")


def _thumbnail(index: CCLMIndex, hit: SearchHit) -> str | None:
    if index.kind != "image":
        return None
    root = index.settings.get("images_root")
    path = Path(root) / hit.id if root else Path(hit.id)
    if not path.is_file():
        return None
    try:
        image = load_image(path, source=hit.id)
    except BadSampleError:
        return None
    image.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
