"""Multilingual image search: a gallery index (`CCLMIndex`) with contrastive search and matching-head re-ranking."""

from .index import AddReport, CCLMIndex, SearchHit


__all__ = ["AddReport", "CCLMIndex", "SearchHit"]
