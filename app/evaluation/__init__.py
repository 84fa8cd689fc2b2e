"""Retrieval and answer evaluation: metrics, data-set readers, and the run that ties them to the service.

Metrics and readers are pure. The run (``EvalSession`` and its reports, in ``runner``) builds the
whole service, so it is imported on first use: importing the metrics stays cheap.
"""

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
    answer_contains,
    answer_in_texts,
    answer_recall_at_k,
    exact_match,
    median,
    mrr_at_k,
    ndcg_at_k,
    normalize_answer,
    paired_bootstrap,
    percentile,
    recall_at_k,
    summarize,
    token_f1,
)

_RUNNER_EXPORTS = frozenset(
    {
        "EvalSession",
        "QAOutcome",
        "QAReport",
        "RankingMetrics",
        "RetrievalReport",
        "eval_settings",
        "evaluate_dataset",
    }
)

__all__ = [
    "BeirDataset",
    "CorpusEntry",
    "DatasetError",
    "EvalSession",
    "LatencySummary",
    "QAItem",
    "QAOutcome",
    "QAReport",
    "Query",
    "RankingMetrics",
    "RetrievalReport",
    "answer_contains",
    "answer_in_texts",
    "answer_recall_at_k",
    "detect_dataset_kind",
    "eval_settings",
    "evaluate_dataset",
    "exact_match",
    "load_beir",
    "load_qa",
    "median",
    "mrr_at_k",
    "ndcg_at_k",
    "normalize_answer",
    "paired_bootstrap",
    "percentile",
    "recall_at_k",
    "summarize",
    "token_f1",
]


def __getattr__(name: str) -> object:
    if name in _RUNNER_EXPORTS:
        from app.evaluation import runner

        return getattr(runner, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
