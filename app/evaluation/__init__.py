"""Retrieval and answer evaluation: metrics and data-set readers (pure; no service calls)."""

from __future__ import annotations

from app.evaluation.datasets import (
    BeirDataset,
    CorpusEntry,
    DatasetError,
    QAItem,
    Query,
    detect_dataset_kind,
    load_beir,
    load_qa,
)
from app.evaluation.metrics import (
    LatencySummary,
    answer_in_texts,
    answer_recall_at_k,
    exact_match,
    mrr_at_k,
    ndcg_at_k,
    normalize_answer,
    percentile,
    recall_at_k,
    summarize,
    token_f1,
)

__all__ = [
    "BeirDataset",
    "CorpusEntry",
    "DatasetError",
    "LatencySummary",
    "QAItem",
    "Query",
    "answer_in_texts",
    "answer_recall_at_k",
    "detect_dataset_kind",
    "exact_match",
    "load_beir",
    "load_qa",
    "mrr_at_k",
    "ndcg_at_k",
    "normalize_answer",
    "percentile",
    "recall_at_k",
    "summarize",
    "token_f1",
]
