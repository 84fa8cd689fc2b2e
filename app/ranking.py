"""Rank and prune: from retrieved candidates to the chunks that reach the prompt.

Three pure stages:

* ``rank`` drops near-duplicates, then picks ``top_k`` with maximal marginal relevance (MMR), so
  the context is not five copies of one paragraph. What is relevant at all is decided before,
  once, by the retriever's relevance floor (``app.retrieval.policy.is_relevant``): every
  candidate that reaches ``rank`` is evidence.
* ``complete_sections`` brings the rest of a section into the context when a selected chunk's
  own heading names the question's rarest term: a list that spans chunks ("Supported formats":
  Markdown, PDF, ... in one chunk, "Other file types are skipped" in the next) is then quoted
  whole, even when its middle scores below other documents' chunks.
* ``fit_to_budget`` keeps whole chunks in rank order while they fit a token budget and cuts the
  first one that does not at a sentence boundary (``app.text.sentences``).
"""

from __future__ import annotations

import itertools
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import msgspec
import numpy as np

from app.records import ChunkRecord, ScoredChunk
from app.text.sentences import sentence_spans
from app.text.terms import terms

__all__ = [
    "SectionKey",
    "SectionPull",
    "complete_sections",
    "fit_to_budget",
    "index_terms",
    "rank",
    "text_words",
]

_SHINGLE = 5
"""Words per shingle for text near-duplicate detection."""

_TEXT_OVERLAP = 0.8
"""A chunk with at least this share of its shingles already selected adds nothing new."""

_WORD_RE = re.compile(r"\w+", re.UNICODE)


def rank(
    candidates: Sequence[ScoredChunk],
    *,
    top_k: int,
    mmr_lambda: float,
    duplicate_threshold: float,
    words_of: Callable[[str], Sequence[str]] | None = None,
) -> list[ScoredChunk]:
    """Select up to ``top_k`` mutually non-redundant chunks of ``candidates``, best first.

    The candidates are the relevant ones already (the retriever applies the one relevance floor);
    ``rank`` only chooses among them.

    1. Vector near-duplicates: drop a chunk whose cosine to a better-scored kept chunk is at
       least ``duplicate_threshold``.
    2. MMR: relevance is ``score`` min-max normalised over the remaining pool; redundancy is the
       largest cosine to an already selected chunk. A chunk without a vector has no redundancy
       with anything, so with no vectors at all the selection is simply by score.
       Text near-duplicates are skipped as MMR reaches them: a chunk whose normalised text
       appears word for word in, or has at least 80% of its word 5-shingles in, the chunks
       already selected (overlapping chunks, one paragraph ingested from two files). Checking
       there rather than over the whole pool spends the tokenising (the costly part, ~20 us a
       chunk) only on chunks that would otherwise be selected.

    The result is in selection order (the order the prompt numbers sources in). ``words_of``
    gives a text's lower-cased words (``text_words`` by default); the pipeline passes a
    remembering one, since the same chunks come back question after question.
    """
    if top_k < 0:
        raise ValueError(f"top_k must be >= 0, got {top_k}")
    pool = list(candidates)
    if not pool or top_k == 0:
        return []
    # Stable sort: equal scores keep retrieval order, so results are deterministic.
    pool.sort(key=lambda c: -c.score)

    sims, has_vec = _cosine_matrix(pool)
    keep = _drop_vector_duplicates(sims, has_vec, duplicate_threshold)
    pool = [pool[i] for i in keep]
    sims = sims[np.ix_(keep, keep)]
    return [pool[i] for i in _mmr(pool, sims, top_k, mmr_lambda, words_of or text_words)]


def _cosine_matrix(pool: Sequence[ScoredChunk]) -> tuple[np.ndarray, np.ndarray]:
    """Pairwise cosine of the pool's vectors; rows/columns of chunks without a vector are 0."""
    n = len(pool)
    has_vec = np.array([bool(c.vector) for c in pool], dtype=bool)
    sims = np.zeros((n, n), dtype=np.float32)
    if has_vec.sum() < 2:
        return sims, has_vec
    if len({len(c.vector) for c in pool if c.vector}) != 1:
        # Vectors of different sizes come from different models: cosines would be meaningless.
        return sims, np.zeros(n, dtype=bool)
    idx = np.flatnonzero(has_vec)
    # One flat pass over the floats: cheaper than numpy's walk of a nested sequence.
    rows = [pool[int(i)].vector or () for i in idx]
    mat = np.fromiter(itertools.chain.from_iterable(rows), dtype=np.float32, count=len(rows) * len(rows[0]))
    mat = mat.reshape(len(rows), -1)
    # Vectors are meant to be unit length already; normalising again costs microseconds and
    # protects the thresholds from a retriever that returns raw vectors.
    norms = np.linalg.norm(mat, axis=1, keepdims=True)
    mat /= np.where(norms > 0, norms, 1.0)
    # Not ``mat @ mat.T``: a product this size goes to BLAS's worker threads, which wait for
    # cores while the model's threads compute on all of them, and the event loop waits with
    # them (a thousand times the idle time, measured: bench/bench_ranking.py). einsum's own
    # loop runs on this thread alone.
    sims[np.ix_(idx, idx)] = np.einsum("ik,jk->ij", mat, mat)
    return sims, has_vec


def _drop_vector_duplicates(sims: np.ndarray, has_vec: np.ndarray, threshold: float) -> list[int]:
    """Indices of the score-sorted pool that are not near-copies of a better kept chunk."""
    n = len(has_vec)
    alive = np.ones(n, dtype=bool)
    close = np.triu(sims >= threshold, 1) & has_vec[:, None] & has_vec[None, :]
    # Most pools have no copy at all: only the rows with one need the greedy pass.
    for i in np.flatnonzero(close.any(axis=1)).tolist():
        # Greedy in score order: a chunk dropped as a copy cannot knock out a third chunk.
        if alive[i]:
            alive &= ~close[i]
    return np.flatnonzero(alive).tolist()


class _TextSeen:
    """Word shingles and normalised text of the chunks selected so far."""

    def __init__(self) -> None:
        self.shingles: set[tuple[str, ...]] = set()
        self.text = " "

    def covers(self, words: Sequence[str]) -> bool:
        if len(words) < _SHINGLE:
            # Too short for shingles: a duplicate only if it appears word for word.
            return bool(words) and f" {' '.join(words)} " in self.text
        shingles = set(zip(*(words[k:] for k in range(_SHINGLE)), strict=False))
        return len(shingles & self.shingles) >= _TEXT_OVERLAP * len(shingles)

    def add(self, words: Sequence[str]) -> None:
        self.shingles.update(zip(*(words[k:] for k in range(_SHINGLE)), strict=False))
        self.text += " ".join(words) + " "


def text_words(text: str) -> tuple[str, ...]:
    """The lower-cased words of ``text``, as text near-duplicates are compared."""
    return tuple(_WORD_RE.findall(text.lower()))


def _mmr(
    pool: Sequence[ScoredChunk],
    sims: np.ndarray,
    top_k: int,
    lam: float,
    words_of: Callable[[str], Sequence[str]],
) -> list[int]:
    scores = np.array([c.score for c in pool], dtype=np.float64)
    span = scores.max() - scores.min()
    relevance = (scores - scores.min()) / span if span > 0 else np.ones_like(scores)
    redundancy = np.zeros(len(pool), dtype=np.float64)
    available = np.ones(len(pool), dtype=bool)
    seen = _TextSeen()
    chosen: list[int] = []
    while len(chosen) < top_k and available.any():
        gain = lam * relevance - (1.0 - lam) * redundancy
        gain[~available] = -np.inf
        # argmax takes the first maximum: ties go to the better-scored chunk.
        best = int(np.argmax(gain))
        available[best] = False
        words = words_of(pool[best].record.text)
        if seen.covers(words):
            continue
        seen.add(words)
        chosen.append(best)
        np.maximum(redundancy, sims[best], out=redundancy)
    return chosen


SectionKey = tuple[str, str, tuple[str, ...]]
"""One section of one version of a document: (doc_id, doc_hash, heading path)."""


@dataclass(frozen=True, slots=True)
class SectionPull:
    """What ``complete_sections`` decided: the context, and which sections it completed and why."""

    chunks: list[ScoredChunk]
    """The context: the selection with each completed section's chunks together, in reading
    order, where its best-ranked chunk was; at most ``top_k`` chunks."""

    rare_terms: frozenset[str]
    """The question's index terms that the fewest candidates contain; empty when no selected
    chunk's heading names a term of the question (the question is then not analysed further)."""

    sections: tuple[SectionKey, ...] = ()
    """The sections completed (at least one chunk pulled into each), in context order."""

    pulled: tuple[str, ...] = ()
    """Point ids of the chunks brought in from the candidates (not in the selection before)."""


def complete_sections(
    selected: Sequence[ScoredChunk],
    candidates: Sequence[ScoredChunk],
    question: str,
    *,
    top_k: int,
    terms_of: Callable[[str], frozenset[str]] | None = None,
    words_of: Callable[[str], Sequence[str]] | None = None,
) -> SectionPull:
    """``selected`` with the other candidate chunks of each section whose heading names the
    question's rarest term.

    A section qualifies when the last heading of a selected chunk's heading path (the section's
    own title, not the document's: a heading equal to the document title names all of it)
    contains one of the question's rarest index terms (``app.text.terms``, the terms BM25
    indexes). Rarest means contained in the fewest ``candidates``: the candidates are what the
    question matched, so the term they least share is what tells them apart ("format" in "Which
    file formats can I ingest?", where nearly every candidate says "ingest" and "file"), a
    statistic of this question's own evidence that needs no corpus-wide pass.

    Only candidates are pulled: chunks that passed the relevance floor already, so nothing that
    is no evidence reaches the prompt this way. A candidate whose text the context already holds
    (the overlap of neighbouring chunks aside, the same check ``rank`` makes) is not pulled. The
    section's chunks go together, in chunk order, where its best-ranked chunk was; the result is
    cut to ``top_k``, so a pulled chunk displaces the lowest-ranked ones, never one ranked above
    its section. ``fit_to_budget`` applies the token budget after.

    ``terms_of``: a chunk text's index terms (``index_terms`` by default); analysing the
    candidates is the costly part, so the pipeline passes a remembering one. ``words_of``: as
    ``rank``'s (``text_words`` by default).
    """
    unchanged = SectionPull(chunks=list(selected)[:top_k], rare_terms=frozenset())
    asked = frozenset(terms(question))
    if not asked or not selected or top_k <= 0:
        return unchanged
    named = {id(c): asked & _heading_terms(c.record) for c in selected}
    if not any(named.values()):
        return unchanged  # decided on the few headings alone, no candidate analysed
    rare = _rarest(asked, [*selected, *candidates], terms_of or index_terms)
    sections = list(dict.fromkeys(_section(c.record) for c in selected if named[id(c)] & rare))
    if not sections:
        return SectionPull(chunks=list(selected)[:top_k], rare_terms=rare)
    chosen = {c.record.point_id for c in selected}
    words = words_of or text_words
    seen = _TextSeen()
    for c in selected:
        seen.add(words(c.record.text))
    members: dict[SectionKey, list[ScoredChunk]] = {key: [] for key in sections}
    for c in selected:
        if (key := _section(c.record)) in members:
            members[key].append(c)
    pulled: dict[str, None] = {}  # an ordered set of point ids
    for c in candidates:
        key = _section(c.record)
        if key not in members or c.record.point_id in chosen:
            continue
        found = words(c.record.text)
        if seen.covers(found):
            continue
        seen.add(found)
        chosen.add(c.record.point_id)
        members[key].append(c)
        pulled[c.record.point_id] = None
    # A section none of whose chunks was pulled stays as ranked: regrouping it would renumber
    # the sources for nothing.
    completed = {_section(c.record) for c in candidates if c.record.point_id in pulled}
    if not completed:
        return SectionPull(chunks=list(selected)[:top_k], rare_terms=rare)
    out: list[ScoredChunk] = []
    for c in selected:
        key = _section(c.record)
        if key not in completed:
            out.append(c)
        elif key in members:
            out.extend(sorted(members.pop(key), key=lambda m: m.record.chunk_index))
    kept = out[:top_k]
    kept_ids = {c.record.point_id for c in kept}
    return SectionPull(
        chunks=kept,
        rare_terms=rare,
        sections=tuple(key for key in sections if key in completed),
        pulled=tuple(p for p in pulled if p in kept_ids),
    )


def _section(record: ChunkRecord) -> SectionKey:
    return (record.doc_id, record.doc_hash, record.heading_path)


def _heading_terms(record: ChunkRecord) -> frozenset[str]:
    """Index terms of the chunk's own section title; none for a document's title or top."""
    if not record.heading_path:
        return frozenset()
    title = record.heading_path[-1]
    if title.strip().casefold() == record.title.strip().casefold():
        return frozenset()
    return frozenset(terms(title))


def index_terms(text: str) -> frozenset[str]:
    """The distinct index terms of ``text`` (``app.text.terms``), as section completion reads a
    chunk's embedding text."""
    return frozenset(terms(text))


def _rarest(
    asked: frozenset[str], pool: Sequence[ScoredChunk], terms_of: Callable[[str], frozenset[str]]
) -> frozenset[str]:
    """The terms of ``asked`` contained in the fewest chunks of ``pool`` (and in at least one)."""
    counts: Counter[str] = Counter()
    seen: set[str] = set()
    for c in pool:
        if c.record.point_id in seen:
            continue
        seen.add(c.record.point_id)
        counts.update(asked.intersection(terms_of(c.record.embedding_text())))
    if not counts:
        return frozenset()
    fewest = min(counts.values())
    return frozenset(term for term, n in counts.items() if n == fewest)


def fit_to_budget(
    chunks: Sequence[ScoredChunk],
    budget_tokens: int,
    count: Callable[[str], int],
    *,
    per_chunk_overhead: int = 0,
) -> list[ScoredChunk]:
    """The longest rank-order prefix of ``chunks`` whose cost fits ``budget_tokens``.

    A chunk costs ``count(text) + per_chunk_overhead`` (the overhead pays for its delimiters and
    attributes in the prompt). Whole chunks are kept while they fit; the first that does not is
    cut to its longest prefix of whole sentences that fits (a copy with a shorter
    ``record.text``; ``text_hash`` still names the full chunk), or dropped if not even one
    sentence fits, and nothing after it is considered: a later, smaller chunk would jump the
    ranking. The total never exceeds the budget, provided ``count`` is monotone in prefixes.
    """
    kept: list[ScoredChunk] = []
    used = 0
    for chunk in chunks:
        cost = count(chunk.record.text) + per_chunk_overhead
        if used + cost <= budget_tokens:
            kept.append(chunk)
            used += cost
            continue
        cut = _cut_to_fit(chunk.record.text, budget_tokens - used - per_chunk_overhead, count)
        if cut is not None:
            record = msgspec.structs.replace(chunk.record, text=cut)
            kept.append(msgspec.structs.replace(chunk, record=record))
        break
    return kept


def _cut_to_fit(text: str, budget: int, count: Callable[[str], int]) -> str | None:
    """Longest prefix of whole sentences of ``text`` that costs at most ``budget``, or None."""
    if budget <= 0:
        return None
    ends = [end for _, end in sentence_spans(text)]
    # Binary search over the number of sentences: counting is the expensive part, and prefix
    # cost grows with the prefix. Every candidate is counted as the exact string returned.
    lo, hi, best = 1, len(ends), None
    while lo <= hi:
        mid = (lo + hi) // 2
        if count(text[: ends[mid - 1]]) <= budget:
            best, lo = mid, mid + 1
        else:
            hi = mid - 1
    return text[: ends[best - 1]] if best else None
