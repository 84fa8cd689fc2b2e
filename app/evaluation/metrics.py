"""Evaluation metrics: ranking quality, answer quality and latency.

Ranking metrics follow BEIR / pytrec_eval so numbers are comparable with published figures:
linear gain (the grade itself), ``log2(rank + 1)`` discount, and an *ideal* ranking built from
every judgement of the query, retrieved or not. A document is relevant when its grade is > 0;
unjudged documents count as grade 0.

Ranked lists are made of document ids. When retrieval returns several chunks of one document,
the caller maps chunks to their document ids; repeats are then dropped (first occurrence keeps
its place) *before* the cut at ``k``, so the metrics rank distinct documents, as BEIR does.

Answer metrics (``normalize_answer``, ``exact_match``, ``token_f1``) reproduce the official
SQuAD v1.1 evaluation script; ``answer_contains`` (the gold span said somewhere in the answer)
uses the same normalisation.
"""

from __future__ import annotations

import math
import random
import re
import string
from collections import Counter
from collections.abc import Mapping, Sequence

import msgspec

__all__ = [
    "LatencySummary",
    "answer_contains",
    "answer_in_texts",
    "answer_recall_at_k",
    "exact_match",
    "mean",
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


# --- ranking -------------------------------------------------------------------------------


def _top_k_distinct(ranked_ids: Sequence[str], k: int) -> list[str]:
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    seen: set[str] = set()
    top: list[str] = []
    for doc_id in ranked_ids:
        if doc_id in seen:
            continue
        seen.add(doc_id)
        top.append(doc_id)
        if len(top) == k:
            break
    return top


def _gain(grade: int) -> int:
    # Negative grades (some TREC sets use -1 for spam) must not reward or punish a ranking.
    return max(grade, 0)


def _dcg(gains: Sequence[int]) -> float:
    return sum(g / math.log2(rank + 1) for rank, g in enumerate(gains, start=1))


def ndcg_at_k(ranked_ids: Sequence[str], judgements: Mapping[str, int], k: int = 10) -> float:
    """Normalised discounted cumulative gain of the top ``k`` distinct ids.

    The ideal DCG sorts *all* of the query's judgements by grade (a relevant document that was
    never retrieved still raises the bar). 0.0 when the query has no positive judgement.
    """
    top = _top_k_distinct(ranked_ids, k)
    ideal_gains = sorted((_gain(g) for g in judgements.values()), reverse=True)[:k]
    ideal = _dcg(ideal_gains)
    if ideal == 0.0:
        return 0.0
    return _dcg([_gain(judgements.get(doc_id, 0)) for doc_id in top]) / ideal


def recall_at_k(ranked_ids: Sequence[str], judgements: Mapping[str, int], k: int = 10) -> float:
    """Share of the query's relevant documents (grade > 0) found in the top ``k``.

    The denominator is every relevant document, not ``min(k, relevant)`` (pytrec_eval's
    ``recall_k``), so a query with more than ``k`` relevant documents cannot reach 1.0.
    """
    top = _top_k_distinct(ranked_ids, k)
    relevant = {doc_id for doc_id, grade in judgements.items() if grade > 0}
    if not relevant:
        return 0.0
    return len(relevant.intersection(top)) / len(relevant)


def mrr_at_k(ranked_ids: Sequence[str], judgements: Mapping[str, int], k: int = 10) -> float:
    """``1 / rank`` of the first relevant document (grade > 0) in the top ``k``, else 0.0."""
    for rank, doc_id in enumerate(_top_k_distinct(ranked_ids, k), start=1):
        if judgements.get(doc_id, 0) > 0:
            return 1.0 / rank
    return 0.0


# --- latency -------------------------------------------------------------------------------


def mean(values: Sequence[float]) -> float:
    """Arithmetic mean; 0.0 for no values (an empty report, not a crash)."""
    return sum(values) / len(values) if values else 0.0


def median(values: Sequence[float]) -> float:
    """The middle value (mean of the two middle ones for an even count); 0.0 for no values."""
    return percentile(values, 50.0) if values else 0.0


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) with linear interpolation, as ``numpy.percentile``."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"q must be within 0..100, got {q}")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100.0
    lower = math.floor(position)
    upper = min(lower + 1, len(ordered) - 1)
    fraction = position - lower
    return ordered[lower] + (ordered[upper] - ordered[lower]) * fraction


def paired_bootstrap(
    differences: Sequence[float], *, confidence: float = 0.9, resamples: int = 10_000, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of per-query ``differences`` between two systems.

    Queries are resampled with replacement; the interval holds the central ``confidence`` share
    of the resampled means. An interval that straddles 0 says the mean difference could be luck
    of the query sample. Seeded, so a report is reproducible. (0.0, 0.0) for no differences.
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be within (0, 1), got {confidence}")
    if not differences:
        return 0.0, 0.0
    rng = random.Random(seed)
    n = len(differences)
    means = sorted(sum(rng.choices(differences, k=n)) / n for _ in range(resamples))
    tail = (1.0 - confidence) / 2.0 * 100.0
    return percentile(means, tail), percentile(means, 100.0 - tail)


class LatencySummary(msgspec.Struct, frozen=True, kw_only=True):
    """Latency distribution of one run, in the unit of the values given (usually ms)."""

    p50: float
    p95: float
    mean: float
    n: int


def summarize(values: Sequence[float]) -> LatencySummary:
    """p50, p95 and mean of ``values``. Raises ``ValueError`` for no values."""
    return LatencySummary(
        p50=percentile(values, 50.0),
        p95=percentile(values, 95.0),
        mean=mean(values),
        n=len(values),
    )


# --- answers (SQuAD v1.1) ------------------------------------------------------------------

_ARTICLES_RE = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = frozenset(string.punctuation)


def normalize_answer(s: str) -> str:
    """Lower-case, drop ASCII punctuation, drop articles, collapse whitespace (SQuAD v1.1)."""
    # Same order as the official script: articles are removed after punctuation, so "the," goes.
    text = s.lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    text = _ARTICLES_RE.sub(" ", text)
    return " ".join(text.split())


def _require_golds(golds: Sequence[str]) -> None:
    if not golds:
        raise ValueError("at least one gold answer is required")


def exact_match(prediction: str, golds: Sequence[str]) -> float:
    """1.0 if the normalised prediction equals any normalised gold answer, else 0.0."""
    _require_golds(golds)
    predicted = normalize_answer(prediction)
    return max(float(predicted == normalize_answer(gold)) for gold in golds)


def _f1(prediction: str, gold: str) -> float:
    predicted_tokens = normalize_answer(prediction).split()
    gold_tokens = normalize_answer(gold).split()
    common = Counter(predicted_tokens) & Counter(gold_tokens)
    overlap = sum(common.values())
    if overlap == 0:
        return 0.0
    precision = overlap / len(predicted_tokens)
    recall = overlap / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def token_f1(prediction: str, golds: Sequence[str]) -> float:
    """Best token-overlap F1 of the prediction against any gold answer (SQuAD v1.1)."""
    _require_golds(golds)
    return max(_f1(prediction, gold) for gold in golds)


def answer_contains(prediction: str, golds: Sequence[str]) -> float:
    """1.0 if a normalised gold answer occurs, as whole words, in the normalised prediction.

    The lenient cousin of ``exact_match`` for answerers that reply in sentences: the gold span
    must be said, but other words may surround it. Normalisation is SQuAD's, so case, punctuation
    and articles do not matter. A gold answer that normalises to nothing never matches.
    """
    _require_golds(golds)
    predicted = f" {normalize_answer(prediction)} "
    needles = [needle for needle in (normalize_answer(gold) for gold in golds) if needle]
    return max((float(f" {needle} " in predicted) for needle in needles), default=0.0)


def _fold(text: str) -> str:
    # Punctuation is kept on purpose: "3.5" must not match "35", nor "C++" match "C".
    return " ".join(text.lower().split())


def answer_in_texts(answers: Sequence[str], texts: Sequence[str]) -> bool:
    """Whether any gold answer appears verbatim (case/whitespace-folded) in any text.

    Answers that fold to the empty string are skipped: "" is a substring of everything.
    """
    needles = [needle for needle in (_fold(a) for a in answers) if needle]
    if not needles:
        return False
    haystacks = [_fold(t) for t in texts]
    return any(needle in haystack for needle in needles for haystack in haystacks)


def answer_recall_at_k(answers: Sequence[str], ranked_texts: Sequence[str], k: int) -> float:
    """1.0 if a gold answer occurs in one of the top ``k`` retrieved texts, else 0.0."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    return 1.0 if answer_in_texts(answers, ranked_texts[:k]) else 0.0
