"""Retrieval: from a question to fused, relevance-checked candidates, with a status.

* ``retriever``: embed, search dense + lexical, fuse; timeout and status (``Retriever``);
* ``policy``: per question, how far to trust each retriever (``profile_query``, ``QueryProfile``)
  and the relevance floor (``is_relevant``);
* ``fusion``: combining the two retrievers' hits, by named strategies (``FUSIONS``);
* ``expansion``: lexical query expansion from the best dense hits;
* ``bm25``: the sparse vectors both ingestion and queries use.
"""

from __future__ import annotations

from app.retrieval.bm25 import LEXICAL_VERSION, LexicalEncoder
from app.retrieval.expansion import DocumentFrequencies, TermStatistics, expand_query
from app.retrieval.fusion import FUSIONS, FusionStrategy, fuse, fusion_strategy
from app.retrieval.policy import QueryProfile, is_relevant, profile_query
from app.retrieval.retriever import RetrievalResult, Retriever, RetrieverMode
from app.store import RetrievalFilters

__all__ = [
    "FUSIONS",
    "LEXICAL_VERSION",
    "DocumentFrequencies",
    "FusionStrategy",
    "LexicalEncoder",
    "QueryProfile",
    "RetrievalFilters",
    "RetrievalResult",
    "Retriever",
    "RetrieverMode",
    "TermStatistics",
    "expand_query",
    "fuse",
    "fusion_strategy",
    "is_relevant",
    "profile_query",
]
