"""Settings: retrieval (``app.retrieval``): the retrievers, fusion, the relevance floor, expansion."""

from __future__ import annotations

from typing import Annotated, Literal

from msgspec import Meta

from app.settings.base import PositiveFloat, UnitFloat, _Section

__all__ = ["FusionName", "RetrievalSettings", "RetrieverMode"]


RetrieverMode = Literal["hybrid", "dense", "lexical"]
"""Which retrievers feed the ranking stage: both, or one alone (the baselines hybrid is measured by)."""

FusionName = Literal["weighted", "rrf", "dbsf"]
"""Fusion strategies (``app.retrieval.fusion``): weighted min-max with dense feedback (the
default), reciprocal-rank fusion, distribution-based score fusion."""


class RetrievalSettings(_Section, frozen=True):
    mode: RetrieverMode = "hybrid"
    """Which retrievers feed the ranking stage."""

    fusion: FusionName = "weighted"
    """How hybrid mode combines the two retrievers (``app.retrieval.fusion``). ``rrf`` and
    ``dbsf`` are there to reproduce the comparisons in docs/evaluation.md; they measured worse."""

    top_k: Annotated[int, Meta(ge=1, le=50)] = 6
    """Chunks that may reach the prompt by default."""

    max_top_k: Annotated[int, Meta(ge=1, le=100)] = 20
    """Largest ``top_k`` a client may ask for."""

    candidates: Annotated[int, Meta(ge=1, le=1000)] = 50
    """Candidates fetched from each retriever before fusion and ranking."""

    timeout_s: PositiveFloat = 3.0
    """Budget for embedding the question and searching the store, queueing included. Past it the
    status is timeout, and work of the retrieval that has not started yet is dropped unrun."""

    queue_size: Annotated[int, Meta(ge=1, le=100_000)] = 256
    """Retrievals admitted at once (waiting for the embedding model or a store worker, or running;
    ``app.retrieval.admission``). One more is refused at once with the status ``timeout`` and a
    detail saying the service is busy, instead of joining a backlog. Every admitted retrieval
    carries its deadline (``timeout_s``) and is dropped before its work runs once it has passed
    or its client has left, so the queue is empty ``timeout_s`` after a burst whatever the bound.
    The bound decides who waits: past about what the service answers within ``timeout_s``, a
    request admitted would only wait for its timeout, so it is better told at once. Only a slow
    service has this many in flight (docs/load.md)."""

    search_workers: Annotated[int, Meta(ge=0, le=64)] = 0
    """Threads that run store searches (and the fusion after them) in parallel: Qdrant Edge takes
    concurrent reads, and a server concurrent requests. 0 chooses from the CPU count (twice the
    cores, at least 2 and at most 8)."""

    batch_window_ms: Annotated[float, Meta(ge=0.0, le=100.0)] = 2.0
    """How long a question waits for others to share its embedding call
    (``app.embedding.batching``). Only when questions are arriving that closely; a question after
    a quiet spell is embedded at once, and while the model is busy questions gather anyway.
    0 turns the wait off (batches then form only while the model is busy)."""

    batch_max: Annotated[int, Meta(ge=1, le=1024)] = 32
    """Most questions embedded in one model call. Larger batches cost less per question, but
    every question of a batch waits for all of it: on a loaded machine a batch that outlasts the
    timeout times out whole."""

    relevance_floor: UnitFloat = 0.7
    """Minimum calibrated relevance (0-1, ``app.retrieval.calibration``: from the dense cosine and
    the share of the query's attainable BM25 score) for a chunk to count as relevant; the same
    figure users see as a source's score. Below it a chunk counts only as a lexical hit, and only
    where the query policy lets a lexical match count alone (text the model cannot read, a
    question naming an identifier, lexical mode), and then only with a lexical share of at least
    ``app.retrieval.policy.LEXICAL_ALONE_MIN_SHARE``. The one relevance floor: the retriever
    applies it, ranking does not. Nothing left means the retrieval status is ``empty``. Chosen on
    the labelled answerable and unanswerable questions of bench/data/noanswer (``python
    bench/noanswer.py``, docs/evaluation.md "Calibration"): higher empties more unanswerable
    questions and loses more answers.

    It decides whether a question has an answer in the knowledge base at all: once one candidate
    reaches it, the others need only ``companion_floor``."""

    companion_floor: UnitFloat = 0.2
    """Once a question has a candidate at ``relevance_floor``, the calibrated relevance the others
    need to come along into ranking (``app.retrieval.policy.relevant_candidates``). Lower than the
    relevance floor so that an answerable question keeps its weaker relevant chunks: with one
    floor of 0.7 for both, tests/data/eval/en-kb lost 0.03 nDCG@10; at 0.2 or below it loses
    none (docs/evaluation.md, "Calibration")."""

    adaptive_weighting: bool = True
    """Choose the dense weight per question (``app.retrieval.policy``: readability, identifiers,
    length), and let a lexical match count alone where the model cannot read the text or the
    question names an identifier. Off: every question gets ``dense_weight`` and the cosine alone
    judges relevance (a fixed-weight baseline). Expansion has its own settings either way."""

    dense_weight: UnitFloat = 0.9
    """Weight of the dense retriever in hybrid fusion when the embedding model reads the query and
    its top candidates well (English prose); the lexical retriever gets the rest. Measured in
    docs/evaluation.md: on English sets BM25 adds little, so it mostly breaks ties."""

    opaque_dense_weight: UnitFloat = 0.2
    """Dense weight when the text is opaque to the embedding model (other languages, codes, product
    names) or the question names an identifier (E6305, x86_64), where BM25 is the reliable
    retriever. Set it equal to ``dense_weight`` to turn only the readability-dependent part off;
    ``adaptive_weighting`` turns all of it off."""

    readable_tokens_per_word: Annotated[float, Meta(ge=1.0, le=10.0)] = 1.5
    """Model tokens per word of the query and its top candidates up to which the text counts as
    readable (English prose: ~1.3). Measured once per question, on the question and the texts of
    its three best dense hits. Between this and ``opaque_tokens_per_word`` the dense weight
    moves linearly from ``dense_weight`` to ``opaque_dense_weight``."""

    opaque_tokens_per_word: Annotated[float, Meta(ge=1.0, le=10.0)] = 2.0
    """Model tokens per word from which the text counts as opaque (German prose: ~2.4)."""

    short_question_terms: Annotated[int, Meta(ge=1, le=100)] = 4
    """Questions of up to this many index terms (distinct words after stop words) get the full
    ``dense_weight``."""

    long_question_terms: Annotated[int, Meta(ge=1, le=100)] = 8
    """From this many index terms on, a question gets ``long_question_dense_weight``; linear in
    between. Long, specific questions are where BM25 beats the embedding model."""

    long_question_dense_weight: UnitFloat = 0.5
    """Dense weight for long questions (the lower of this and the readability weight applies)."""

    feedback_docs: Annotated[int, Meta(ge=0, le=50)] = 5
    """Pseudo-relevance feedback: the best this many first-pass fused candidates form a mean vector
    that expands the query on the dense side. 0 turns feedback off. Hybrid mode only."""

    feedback_weight: Annotated[float, Meta(ge=0.0, le=5.0)] = 0.75
    """Weight of a candidate's cosine to that mean vector, added to its cosine to the query."""

    expansion_terms: Annotated[int, Meta(ge=0, le=200)] = 20
    """Lexical query expansion (hybrid mode, readable questions only): terms taken from the best
    dense hits and added to the BM25 query (``app.retrieval.expansion``). 0 turns expansion off and
    searches both retrievers in one round trip."""

    expansion_max_question_terms: Annotated[int, Meta(ge=1, le=100)] = 5
    """Only questions of at most this many index terms are expanded; longer ones already name
    what they look for."""

    expansion_docs: Annotated[int, Meta(ge=1, le=100)] = 10
    """How many of the best dense hits the expansion terms are taken from."""

    expansion_min_cosine: Annotated[float, Meta(ge=-1.0, le=1.0)] = 0.3
    """Dense hits below this cosine to the question lend no expansion terms: the model has not
    found them relevant, and expanding from them only adds noise."""

    expansion_weight: Annotated[float, Meta(gt=0.0, le=1.0)] = 0.5
    """Query weight of the best expansion term (a question's own terms weigh 1.0); the other
    expansion terms weigh in proportion to their feedback score."""

    statistics_sample: Annotated[int, Meta(ge=100, le=1_000_000)] = 2000
    """Points sampled from the collection to estimate how common each term is, which picks
    expansion terms (Qdrant applies IDF but does not expose it). ~40 ms per 2,000 points on the
    embedded store."""

    statistics_ttl_s: PositiveFloat = 300.0
    """Age after which that sample is taken again, so newly ingested documents count."""
