"""Text primitives shared by ingestion, retrieval and generation: one home for each rule.

* ``tokens``: the token-counter protocol, and the conservative Claude estimate for prompts;
* ``sentences``: the one sentence splitter;
* ``terms``: the index terms (stemming, stop words) that BM25 and the answerer count.
"""

from __future__ import annotations

from app.text.sentences import sentence_spans, split_sentences
from app.text.terms import terms
from app.text.tokens import ClaudeTokenEstimate, TokenCounter, Tokenizer

__all__ = ["ClaudeTokenEstimate", "TokenCounter", "Tokenizer", "sentence_spans", "split_sentences", "terms"]
