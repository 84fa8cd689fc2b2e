"""Evaluation metrics, each checked against an example computed by hand."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pytest

from app.evaluation import (
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

pytestmark = pytest.mark.unit


# --- nDCG ----------------------------------------------------------------------------------


def test_ndcg_uses_graded_gain_and_an_ideal_ranking_from_all_judgements() -> None:
    # d4 (grade 1) is relevant but never retrieved: it still belongs in the ideal ranking.
    judgements = {"d1": 3, "d2": 2, "d3": 0, "d4": 1}
    ranked = ["d2", "d3", "d1", "unjudged"]
    # DCG   = 2/log2(2) + 0/log2(3) + 3/log2(4) + 0/log2(5) = 2 + 0 + 1.5 + 0 = 3.5
    # IDCG  = 3/log2(2) + 2/log2(3) + 1/log2(4) + 0/log2(5) = 3 + 1.26186 + 0.5 = 4.76186
    # nDCG  = 3.5 / 4.76186 = 0.73501
    expected = 3.5 / (3 + 2 / math.log2(3) + 0.5)
    assert ndcg_at_k(ranked, judgements, k=10) == pytest.approx(expected)
    assert expected == pytest.approx(0.73501, abs=1e-5)


def test_ndcg_is_one_for_the_ideal_ranking() -> None:
    assert ndcg_at_k(["d1", "d2", "d4"], {"d1": 3, "d2": 2, "d3": 0, "d4": 1}) == pytest.approx(1.0)


def test_ndcg_ignores_documents_ranked_below_k() -> None:
    judgements = {"d1": 1}
    # k=2: d1 sits at rank 3, outside the cut -> DCG 0.
    assert ndcg_at_k(["x", "y", "d1"], judgements, k=2) == 0.0
    # k=3: DCG = 1/log2(4) = 0.5; IDCG = 1/log2(2) = 1 -> 0.5
    assert ndcg_at_k(["x", "y", "d1"], judgements, k=3) == pytest.approx(0.5)


def test_ndcg_ideal_ranking_is_cut_at_k_too() -> None:
    judgements = {"a": 1, "b": 1, "c": 1}
    # k=1: DCG = 1/log2(2) = 1; IDCG = 1 (only the best judgement fits) -> 1.0
    assert ndcg_at_k(["a"], judgements, k=1) == pytest.approx(1.0)
    # k=2: DCG = 1; IDCG = 1 + 1/log2(3) = 1.63093 -> 0.61315
    assert ndcg_at_k(["a"], judgements, k=2) == pytest.approx(1 / (1 + 1 / math.log2(3)))


def test_ndcg_is_zero_without_positive_judgements() -> None:
    assert ndcg_at_k(["a", "b"], {"a": 0, "b": 0}) == 0.0
    assert ndcg_at_k(["a", "b"], {}) == 0.0


def test_ndcg_counts_a_repeated_id_once_at_its_first_rank() -> None:
    # Distinct ranking is [a, b]: DCG = 1/log2(2) + 1/log2(3) = IDCG -> 1.0.
    # Counting "a" twice would add 1/log2(3) more and push the score above 1.
    assert ndcg_at_k(["a", "a", "b"], {"a": 1, "b": 1}, k=2) == pytest.approx(1.0)


def test_ndcg_gives_negative_grades_no_gain() -> None:
    # DCG = 0/log2(2) + 1/log2(3); IDCG = 1/log2(2) -> 1/log2(3) = 0.63093
    assert ndcg_at_k(["spam", "good"], {"spam": -1, "good": 1}) == pytest.approx(1 / math.log2(3))


# --- recall and MRR ------------------------------------------------------------------------

JUDGED = {"a": 2, "b": 1, "c": 0, "d": 1}  # relevant: a, b, d (c is judged not relevant)


def test_recall_is_the_share_of_all_relevant_documents_in_the_top_k() -> None:
    ranked = ["c", "a", "x", "b"]
    # k=3: top [c, a, x] holds {a} of {a, b, d} -> 1/3
    assert recall_at_k(ranked, JUDGED, k=3) == pytest.approx(1 / 3)
    # k=4: top holds {a, b} -> 2/3
    assert recall_at_k(ranked, JUDGED, k=4) == pytest.approx(2 / 3)


def test_recall_is_zero_without_relevant_documents_and_ignores_duplicates() -> None:
    assert recall_at_k(["c"], {"c": 0}) == 0.0
    # Distinct top 2 of [a, a, b] is [a, b] -> 2 of 3 relevant.
    assert recall_at_k(["a", "a", "b"], JUDGED, k=2) == pytest.approx(2 / 3)


def test_mrr_is_the_reciprocal_rank_of_the_first_relevant_document() -> None:
    # c has grade 0, x is unjudged; b at rank 3 is the first relevant -> 1/3
    assert mrr_at_k(["c", "x", "b", "a"], JUDGED, k=10) == pytest.approx(1 / 3)
    # With k=2 the first relevant falls outside the cut -> 0
    assert mrr_at_k(["c", "x", "b", "a"], JUDGED, k=2) == 0.0
    # Distinct ranking of [x, x, a] is [x, a] -> 1/2
    assert mrr_at_k(["x", "x", "a"], JUDGED, k=2) == pytest.approx(0.5)


@pytest.mark.parametrize("metric", [ndcg_at_k, recall_at_k, mrr_at_k])
def test_ranking_metrics_refuse_a_k_below_one(
    metric: Callable[[Sequence[str], Mapping[str, int], int], float],
) -> None:
    with pytest.raises(ValueError, match="k must be"):
        metric(["a"], {"a": 1}, 0)


# --- latency -------------------------------------------------------------------------------


def test_percentile_interpolates_linearly_between_neighbours() -> None:
    values = [40.0, 15.0, 50.0, 20.0, 35.0]  # sorted: 15 20 35 40 50, positions 0..4
    assert percentile(values, 0) == 15.0
    assert percentile(values, 50) == 35.0  # position 4*0.50 = 2 -> 35
    assert percentile(values, 30) == pytest.approx(23.0)  # 4*0.30 = 1.2 -> 20 + 0.2*(35-20)
    assert percentile(values, 95) == pytest.approx(48.0)  # 4*0.95 = 3.8 -> 40 + 0.8*(50-40)
    assert percentile(values, 100) == 50.0


def test_percentile_agrees_with_numpy_default() -> None:
    values = [3.1, 0.2, 9.9, 4.4, 4.4, 7.0, 1.5]
    for q in (0, 12.5, 50, 90, 95, 99, 100):
        assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)))


def test_percentile_refuses_no_values_and_out_of_range_q() -> None:
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_summarize_reports_p50_p95_mean_and_count() -> None:
    # sorted 10 20 30 40: p50 at 3*0.5 = 1.5 -> 25; p95 at 3*0.95 = 2.85 -> 30 + 0.85*10 = 38.5
    # mean = 100 / 4 = 25
    assert summarize([40.0, 10.0, 30.0, 20.0]) == LatencySummary(p50=25.0, p95=38.5, mean=25.0, n=4)


# --- answers (SQuAD v1.1) ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "normalised"),
    [
        ("The  Quick, brown fox!", "quick brown fox"),
        ("an apple a day", "apple day"),
        ("Theatre", "theatre"),  # articles only as whole words
        ("the,", ""),  # punctuation goes first, then the bare article
        ("U.S.A.", "usa"),
    ],
)
def test_normalize_answer_matches_the_squad_script(raw: str, normalised: str) -> None:
    assert normalize_answer(raw) == normalised


def test_exact_match_takes_the_best_gold_after_normalisation() -> None:
    assert exact_match("the Eiffel Tower!", ["Paris", "Eiffel tower"]) == 1.0
    assert exact_match("Eiffel", ["Eiffel Tower"]) == 0.0


def test_token_f1_scores_partial_overlap() -> None:
    # pred [big, red, barn], gold [red, barn, door]: 2 shared -> P = 2/3, R = 2/3, F1 = 2/3
    assert token_f1("the big red barn", ["a red barn door"]) == pytest.approx(2 / 3)
    # Best gold wins: the second gold matches exactly.
    assert token_f1("the big red barn", ["red barn door", "big red barn"]) == pytest.approx(1.0)


def test_token_f1_counts_repeated_tokens_by_multiplicity() -> None:
    # pred [red, red, red], gold [red, barn]: shared min(3, 1) = 1
    # P = 1/3, R = 1/2, F1 = 2 * (1/6) / (5/6) = 0.4
    assert token_f1("red red red", ["red barn"]) == pytest.approx(0.4)
    assert token_f1("blue", ["red barn"]) == 0.0


def test_answer_metrics_need_a_gold_answer() -> None:
    with pytest.raises(ValueError):
        exact_match("x", [])
    with pytest.raises(ValueError):
        token_f1("x", [])


def test_answer_in_texts_folds_case_and_whitespace_but_not_punctuation() -> None:
    assert answer_in_texts(["New  York"], ["I moved to new\nyork city"])
    assert answer_in_texts(["u.s."], ["Joined the U.S. Army"])
    assert not answer_in_texts(["3.5"], ["version 35 is out"])
    assert not answer_in_texts(["Paris"], ["Rome", "Berlin"])


def test_answer_in_texts_never_matches_a_blank_answer() -> None:
    assert not answer_in_texts(["  ", ""], ["anything at all"])


def test_answer_recall_at_k_looks_only_at_the_top_k_texts() -> None:
    ranked = ["Rome is old", "Berlin", "Paris is the capital"]
    assert answer_recall_at_k(["paris"], ranked, k=2) == 0.0
    assert answer_recall_at_k(["paris"], ranked, k=3) == 1.0


# --- paired bootstrap --------------------------------------------------------------------------


def test_bootstrap_of_identical_differences_is_that_difference() -> None:
    assert paired_bootstrap([0.02] * 30) == pytest.approx((0.02, 0.02))


def test_bootstrap_interval_straddles_zero_when_wins_and_losses_balance() -> None:
    low, high = paired_bootstrap([0.1, -0.1] * 20)
    assert low < 0.0 < high


def test_bootstrap_interval_excludes_zero_for_a_consistent_gain() -> None:
    low, high = paired_bootstrap([0.05, 0.03, 0.04, 0.06, 0.0, 0.02] * 8)
    assert 0.0 < low < 0.0333 < high


def test_bootstrap_is_reproducible_and_checks_its_confidence() -> None:
    diffs = [0.3, -0.1, 0.05, 0.0, 0.2, -0.25, 0.1]
    assert paired_bootstrap(diffs) == paired_bootstrap(diffs)
    narrow, wide = paired_bootstrap(diffs, confidence=0.5), paired_bootstrap(diffs, confidence=0.99)
    assert wide[0] < narrow[0] and narrow[1] < wide[1]
    assert paired_bootstrap([]) == (0.0, 0.0)
    with pytest.raises(ValueError):
        paired_bootstrap(diffs, confidence=1.0)


# --- the gold span in a sentence-long answer ---------------------------------------------------


def test_answer_contains_finds_the_normalised_gold_as_whole_words() -> None:
    answer = "The default chunk size is 200 tokens, with 32 tokens of overlap. [1]"
    assert answer_contains(answer, ["200 Tokens"]) == 1.0  # case and punctuation folded
    assert answer_contains(answer, ["the 32 tokens"]) == 1.0  # articles dropped, as SQuAD does
    assert answer_contains(answer, ["20"]) == 0.0  # "200" is not "20": whole words only
    assert answer_contains(answer, ["nothing here", "32 tokens"]) == 1.0  # the best gold counts


def test_answer_contains_never_matches_a_gold_that_normalises_to_nothing() -> None:
    assert answer_contains("Anything at all.", ["the", "..."]) == 0.0
    with pytest.raises(ValueError):
        answer_contains("Anything at all.", [])


def test_median_of_odd_and_even_counts_and_of_nothing() -> None:
    assert median([3.0, 1.0, 2.0]) == 2.0
    assert median([4.0, 1.0, 2.0, 3.0]) == 2.5
    assert median([]) == 0.0
