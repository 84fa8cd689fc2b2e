"""Lexical query expansion from dense feedback, and the sampled term statistics it relies on."""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest

from app.records import SearchHit, SparseTerms
from app.retrieval import Retriever
from app.retrieval.bm25 import LexicalEncoder
from app.retrieval.expansion import DocumentFrequencies, TermStatistics, expand_query
from app.settings import RetrievalSettings
from tests.factories import chunk_record

pytestmark = pytest.mark.unit

QUERY = SparseTerms([1, 2], [1.0, 1.0])


def vector(weights: dict[int, float]) -> SparseTerms:
    indices = sorted(weights)
    return SparseTerms(indices, [weights[i] for i in indices])


# --- document frequencies ---------------------------------------------------------------------


def test_idf_follows_qdrants_formula_on_the_sample() -> None:
    frequencies = DocumentFrequencies.of(
        [vector({7: 1.0, 8: 1.0}), vector({7: 1.0}), vector({9: 1.0}), vector({})]
    )
    assert frequencies.documents == 4
    assert frequencies.idf(7) == pytest.approx(math.log((4 - 2 + 0.5) / (2 + 0.5) + 1))
    assert frequencies.idf(8) == pytest.approx(math.log((4 - 1 + 0.5) / (1 + 0.5) + 1))
    # A term the sample never saw counts as the rarest there is.
    assert frequencies.idf(12345) == pytest.approx(math.log((4 + 0.5) / 0.5 + 1))
    assert frequencies.idf(12345) > frequencies.idf(8) > frequencies.idf(7)


# --- choosing expansion terms -----------------------------------------------------------------

# Term 50 is in every sampled document (a common word); 60 and 70 are rare.
FREQUENCIES = DocumentFrequencies.of(
    [vector({50: 1.0, 60: 1.0}), vector({50: 1.0}), vector({50: 1.0, 70: 1.0}), vector({50: 1.0})]
)


def test_terms_shared_by_the_feedback_and_rare_in_the_corpus_are_added() -> None:
    feedback = [vector({1: 1.0, 50: 1.0, 60: 1.0}), vector({50: 1.0, 60: 1.0, 70: 0.2})]

    expanded = expand_query(QUERY, feedback, FREQUENCIES, terms=10, weight=0.5)
    weights = dict(zip(expanded.indices, expanded.values, strict=True))

    assert weights[1] == weights[2] == 1.0  # the question's own terms keep their weight
    assert weights[60] == 0.5  # the best expansion term gets exactly the configured weight
    # Just as frequent in the feedback, but common in the corpus: ranked below the rare term.
    assert 0.0 < weights[50] < weights[60]
    assert 0.0 < weights[70] < weights[60]
    assert expanded.indices == sorted(expanded.indices)


def test_at_most_the_configured_number_of_terms_is_added() -> None:
    feedback = [vector({50: 1.0, 60: 1.0, 70: 1.0})]
    expanded = expand_query(QUERY, feedback, FREQUENCIES, terms=1, weight=0.5)
    assert expanded.indices == [1, 2, 60] or expanded.indices == [1, 2, 70]
    assert len(expanded) == len(QUERY) + 1


@pytest.mark.parametrize(
    ("feedback", "terms"),
    [([], 10), ([vector({60: 1.0})], 0), ([vector({1: 1.0, 2: 1.0})], 10), ([vector({})], 10)],
    ids=["no feedback", "expansion off", "feedback has only query terms", "empty feedback vector"],
)
def test_without_anything_to_add_the_query_is_returned_as_is(feedback: list[SparseTerms], terms: int) -> None:
    assert expand_query(QUERY, feedback, FREQUENCIES, terms=terms, weight=0.5) is QUERY


def test_expansion_is_deterministic_when_scores_tie() -> None:
    feedback = [vector({60: 1.0, 70: 1.0})]  # 60 and 70 are equally rare and equally frequent
    first = expand_query(QUERY, feedback, FREQUENCIES, terms=1, weight=0.5)
    again = expand_query(QUERY, list(reversed(feedback)), FREQUENCIES, terms=1, weight=0.5)
    assert first == again == SparseTerms([1, 2, 60], [1.0, 1.0, 0.5])


# --- term statistics: sampling, expiry, faults ------------------------------------------------


class CountingSampler:
    def __init__(self, sample: list[SparseTerms]) -> None:
        self.sample = sample
        self.calls = 0

    def sample_sparse(self, limit: int) -> list[SparseTerms]:
        self.calls += 1
        return self.sample[:limit]


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_statistics_are_sampled_once_and_reused_until_they_expire() -> None:
    clock, sampler = Clock(), CountingSampler([vector({1: 1.0}), vector({2: 1.0}), vector({3: 1.0})])
    statistics = TermStatistics(sample_size=2, ttl_s=60.0, clock=clock)

    first = statistics.get(sampler)
    clock.now += 59.0
    assert statistics.get(sampler) is first
    assert sampler.calls == 1
    assert first is not None and first.documents == 2  # the sample size is respected

    clock.now += 2.0
    sampler.sample.append(vector({4: 1.0}))
    statistics.get(sampler)
    assert sampler.calls == 2


def test_an_empty_collection_gives_no_statistics_and_is_sampled_again_next_time() -> None:
    sampler = CountingSampler([])
    statistics = TermStatistics(sample_size=100, ttl_s=600.0, clock=Clock())
    assert statistics.get(sampler) is None
    sampler.sample.append(vector({1: 1.0}))
    refreshed = statistics.get(sampler)
    assert refreshed is not None and refreshed.documents == 1


def test_while_one_worker_rebuilds_expired_statistics_the_others_use_the_previous_ones() -> None:
    clock = Clock()
    statistics = TermStatistics(sample_size=100, ttl_s=10.0, clock=clock)
    previous = statistics.get(CountingSampler([vector({1: 1.0})]))
    clock.now += 11.0

    entered, release = threading.Event(), threading.Event()

    class SlowSampler:
        def sample_sparse(self, limit: int) -> list[SparseTerms]:
            entered.set()
            release.wait(5.0)
            return [vector({2: 1.0}), vector({3: 1.0})]

    rebuilding = threading.Thread(target=statistics.get, args=(SlowSampler(),))
    rebuilding.start()
    try:
        assert entered.wait(5.0)
        assert statistics.get(CountingSampler([])) is previous  # does not wait for the rebuild
    finally:
        release.set()
        rebuilding.join(5.0)
    assert statistics.get(CountingSampler([])).documents == 2  # type: ignore[union-attr]


def test_a_store_error_while_sampling_propagates() -> None:
    class BrokenSampler:
        def sample_sparse(self, limit: int) -> list[SparseTerms]:
            raise ConnectionError("store went away")

    with pytest.raises(ConnectionError):
        TermStatistics(sample_size=100, ttl_s=60.0).get(BrokenSampler())


# --- how the retriever expands ---------------------------------------------------------------
# Whether a question is expanded at all is the query policy's decision (tests/unit/test_policy.py);
# here, what expansion does once decided.


class SampledStore:
    def __init__(self, *, broken: bool = False) -> None:
        self.broken = broken

    def sample_sparse(self, limit: int, *, query_filter: object = None) -> list[SparseTerms]:
        if self.broken:
            raise TimeoutError("sampling timed out")
        encoder = LexicalEncoder()
        return [encoder.encode_document(t) for t in ("backup restore", "snapshot retention", "payroll team")]


class NoTokenizer:
    def count(self, text: str) -> int:
        raise AssertionError("expansion itself reads no text with the model")


def dense_hits(cosine: float = 0.8) -> list[SearchHit]:
    encoder = LexicalEncoder()
    texts = ["Nightly snapshots are kept for thirty days.", "Snapshots restore a deleted volume."]
    return [
        SearchHit(
            record=chunk_record(f"p{n}", text=text, title="Backups", source=f"ops/{n}.md"),
            score=cosine,
            vector=np.zeros(3, dtype=np.float32),
            sparse=encoder.encode_document(text),
        )
        for n, text in enumerate(texts)
    ]


def expanded(question: str, *, store: SampledStore | None = None, cosine: float = 0.8) -> bool:
    retriever = Retriever(store or SampledStore(), NoTokenizer(), RetrievalSettings())  # type: ignore[arg-type]
    try:
        query = LexicalEncoder().encode_query(question)
        return retriever.expand(query, dense_hits(cosine)) != query
    finally:
        retriever.close()


def test_a_question_is_expanded_from_the_dense_hits() -> None:
    assert expanded("how long are backups kept")


def test_a_store_error_while_sampling_costs_the_expansion_not_the_search() -> None:
    assert not expanded("how long are backups kept", store=SampledStore(broken=True))


def test_hits_the_model_is_not_sure_of_lend_no_terms() -> None:
    floor = RetrievalSettings().expansion_min_cosine
    assert expanded("how long are backups kept", cosine=floor)
    assert not expanded("how long are backups kept", cosine=floor - 0.01)
