"""Retrieval: from a question to fused, relevance-checked candidates, with a status.

* ``retriever``: embed, search dense + lexical, fuse; timeout and status (``Retriever``);
* ``policy``: per question, how far to trust each retriever (``profile_query``, ``QueryProfile``)
  and the relevance floor (``is_relevant``);
* ``calibration``: calibrated relevance (0-1, the same scale for every question) from the cosine
  and the share of the query's attainable BM25 score (``RELEVANCE_MODEL``, ``JudgedChunk``);
* ``fusion``: combining the two retrievers' hits, by named strategies (``FUSIONS``);
* ``expansion``: lexical query expansion from the best dense hits;
* ``bm25``: the sparse vectors both ingestion and queries use.
"""

from __future__ import annotations

from app.retrieval.bm25 import LEXICAL_VERSION, LexicalEncoder
from app.retrieval.calibration import (
    RELEVANCE_MODEL,
    JudgedChunk,
    RelevanceModel,
    lexical_share,
    max_lexical_score,
    relevance_of,
)
from app.retrieval.expansion import DocumentFrequencies, TermStatistics, expand_query
from app.retrieval.fusion import FUSIONS, FusionStrategy, fuse, fusion_strategy
from app.retrieval.policy import QueryProfile, is_relevant, profile_query, relevant_candidates
from app.retrieval.retriever import Judged, RetrievalResult, Retriever, RetrieverMode
from app.store import RetrievalFilters

__all__ = [
    "FUSIONS",
    "LEXICAL_VERSION",
    "RELEVANCE_MODEL",
    "DocumentFrequencies",
    "FusionStrategy",
    "Judged",
    "JudgedChunk",
    "LexicalEncoder",
    "QueryProfile",
    "RelevanceModel",
    "RetrievalFilters",
    "RetrievalResult",
    "Retriever",
    "RetrieverMode",
    "TermStatistics",
    "expand_query",
    "fuse",
    "fusion_strategy",
    "is_relevant",
    "lexical_share",
    "max_lexical_score",
    "profile_query",
    "relevance_of",
    "relevant_candidates",
]
