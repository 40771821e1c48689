"""Exact maximum-inner-product search over normalised embeddings: torch (default) or FAISS (`pip install faiss-cpu`).

Both are exact (FAISS through a flat inner-product index), so they return the same neighbours; FAISS is the faster
one on large galleries with many queries.
"""

from __future__ import annotations

from typing import Literal

import torch


NearestBackend = Literal["torch", "faiss"]


def top_k_torch(
    queries: torch.Tensor, gallery: torch.Tensor, k: int, gallery_chunk_size: int = 65536
) -> tuple[torch.Tensor, torch.Tensor]:
    """`(scores, indices)` `[Q, k]` of the `k` largest inner products, best first, computed in fp32.

    The gallery is read in chunks of `gallery_chunk_size` rows (it may be stored in fp16/bf16), so the similarity
    matrix never has more than `Q x gallery_chunk_size` entries.
    """
    queries = queries.float()
    best_scores = torch.empty(len(queries), 0, device=queries.device)
    best_indices = torch.empty(len(queries), 0, dtype=torch.long, device=queries.device)
    for start in range(0, len(gallery), gallery_chunk_size):
        chunk = gallery[start : start + gallery_chunk_size].to(queries.device, torch.float32)
        chunk_scores, chunk_indices = (queries @ chunk.t()).topk(min(k, len(chunk)), dim=1)
        scores = torch.cat([best_scores, chunk_scores], dim=1)
        indices = torch.cat([best_indices, chunk_indices + start], dim=1)
        best_scores, order = scores.topk(min(k, scores.shape[1]), dim=1)
        best_indices = indices.gather(1, order)
    return best_scores, best_indices


class FaissFlatIndex:
    """An exact FAISS inner-product index (`IndexFlatIP`) over a gallery's embeddings."""

    def __init__(self, gallery: torch.Tensor):
        faiss = import_faiss()
        self.index = faiss.IndexFlatIP(gallery.shape[1])
        self.index.add(gallery.float().cpu().contiguous().numpy())

    def __len__(self) -> int:
        return self.index.ntotal

    def search(self, queries: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        scores, indices = self.index.search(queries.float().cpu().contiguous().numpy(), min(k, len(self)))
        return torch.from_numpy(scores).to(queries.device), torch.from_numpy(indices).to(queries.device)


def import_faiss():
    try:
        import faiss
    except ImportError as error:
        raise ImportError(
            "backend='faiss' needs FAISS: pip install 'cclm-hf[faiss]' (or pip install faiss-cpu)"
        ) from error
    return faiss
