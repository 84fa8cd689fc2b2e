"""Retrieval: from a question to fused, relevance-checked candidates, with a status.

* ``retriever``: embed, search dense + lexical, fuse; timeout and status (``Retriever``);
* ``fusion``: combining the two retrievers' hits;
* ``expansion``: lexical query expansion from the best dense hits;
* ``bm25``: the sparse vectors both ingestion and queries use.
"""

from __future__ import annotations

from app.retrieval.bm25 import LEXICAL_VERSION, LexicalEncoder
from app.retrieval.expansion import DocumentFrequencies, TermStatistics, expand_query
from app.retrieval.fusion import fuse
from app.retrieval.retriever import RetrievalResult, Retriever, RetrieverMode
from app.store import RetrievalFilters

__all__ = [
    "LEXICAL_VERSION",
    "DocumentFrequencies",
    "LexicalEncoder",
    "RetrievalFilters",
    "RetrievalResult",
    "Retriever",
    "RetrieverMode",
    "TermStatistics",
    "expand_query",
    "fuse",
]
