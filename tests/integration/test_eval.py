"""`kb eval` end to end: CI-sized samples through the real ingestion, store, model and ranking.

The samples live in tests/data/eval (see the make_*.py scripts and READMEs there): ``en-kb`` is an
English internal knowledge base (error codes, tool pages, policies; 173 passages), ``de-kb`` a
German one (132 passages), ``ru-kb`` a Russian one (90 passages), ``qa-mini`` a folder of documents
with questions and gold answers.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from app.cli import cli
from app.config import load_settings
from app.evaluation import EvalSession, QAReport, RetrievalReport, eval_settings, evaluate_dataset, load_beir
from app.evaluation.runner import MODES, STAGES

pytestmark = pytest.mark.integration  # every test that loads the model is also ``slow``

EVAL_DATA = Path(__file__).parents[1] / "data" / "eval"


def evaluate_all_modes(name: str, embedder, folder: Path) -> dict[str, RetrievalReport]:
    dataset = load_beir(EVAL_DATA / name)
    settings = eval_settings(load_settings(environ={}), folder, dataset.name)
    with EvalSession(settings, embedder=embedder) as session:
        session.ingest_beir(dataset)
        return {mode: session.evaluate_beir(dataset, mode) for mode in MODES}


@pytest.fixture(scope="module")
def english_session(embedder, tmp_path_factory) -> Iterator[EvalSession]:
    dataset = load_beir(EVAL_DATA / "en-kb")
    settings = eval_settings(load_settings(environ={}), tmp_path_factory.mktemp("en-kb"), dataset.name)
    with EvalSession(settings, embedder=embedder) as session:
        session.ingest_beir(dataset)
        yield session


@pytest.fixture(scope="module")
def english(english_session) -> dict[str, RetrievalReport]:
    dataset = load_beir(EVAL_DATA / "en-kb")
    return {mode: english_session.evaluate_beir(dataset, mode) for mode in MODES}


@pytest.fixture(scope="module")
def german(embedder, tmp_path_factory) -> dict[str, RetrievalReport]:
    return evaluate_all_modes("de-kb", embedder, tmp_path_factory.mktemp("de-kb"))


@pytest.fixture(scope="module")
def russian(embedder, tmp_path_factory) -> dict[str, RetrievalReport]:
    return evaluate_all_modes("ru-kb", embedder, tmp_path_factory.mktemp("ru-kb"))


def test_hybrid_is_at_least_as_good_as_the_better_single_retriever_on_the_english_sample(english) -> None:
    best_single = max(english["dense"].ndcg_at_10, english["lexical"].ndcg_at_10)
    assert english["hybrid"].ndcg_at_10 >= best_single, {m: r.ndcg_at_10 for m, r in english.items()}


def test_on_german_text_hybrid_keeps_lexical_quality_while_dense_falls_behind(german) -> None:
    dense, lexical, hybrid = (german[m].ndcg_at_10 for m in MODES)
    assert hybrid >= 0.9 * lexical, (dense, lexical, hybrid)
    assert dense < lexical - 0.1, (dense, lexical, hybrid)


def test_on_russian_text_dense_retrieval_collapses_and_hybrid_keeps_lexical_quality(russian) -> None:
    # all-MiniLM-L6-v2 reads Cyrillic as single letters: its ranking is little better than chance.
    dense, lexical, hybrid = (russian[m].ndcg_at_10 for m in MODES)
    assert dense < 0.6 * lexical, (dense, lexical, hybrid)
    assert hybrid >= 0.9 * lexical, (dense, lexical, hybrid)


def test_every_judged_query_is_scored_with_per_stage_latency(english) -> None:
    dataset = load_beir(EVAL_DATA / "en-kb")
    for mode, report in english.items():
        assert report.mode == mode
        assert report.queries == len(dataset.queries) > 100
        assert report.corpus == len(dataset.corpus)
        # One corpus entry is one document; these passages are short enough for one chunk each.
        assert report.chunks == report.corpus
        assert set(report.latency_ms) == set(STAGES)
        assert all(
            summary.n == report.queries and summary.p95 >= summary.p50 >= 0
            for summary in report.latency_ms.values()
        )
        for value in (report.ndcg_at_10, report.recall_at_10, report.mrr_at_10, report.fused.ndcg_at_10):
            assert 0.0 <= value <= 1.0


def test_modes_and_fusions_are_passed_per_call_and_leave_the_services_settings_as_configured(
    english_session, english
) -> None:
    dataset = load_beir(EVAL_DATA / "en-kb")
    dataset.queries = dataset.queries[:40]  # enough to tell two rankings apart
    configured = english_session.settings.retrieval
    services = english_session.services

    rrf = english_session.evaluate_beir(dataset, "hybrid", fusion="rrf")
    dense_rrf = english_session.evaluate_beir(dataset, "dense", fusion="rrf")

    def same_queries(report: RetrievalReport) -> dict[str, float]:
        return {q.id: report.per_query[q.id] for q in dataset.queries}

    assert (rrf.fusion, english["hybrid"].fusion) == ("rrf", "weighted")
    assert rrf.per_query != same_queries(english["hybrid"])  # another strategy, another ranking
    assert dense_rrf.per_query == same_queries(english["dense"])  # one retriever: nothing to fuse
    assert services.retriever.settings is configured
    assert services.pipeline.retrieval_settings is configured
    assert services.pipeline.ranking_settings is english_session.settings.ranking


def test_the_context_budget_is_a_call_parameter(english_session) -> None:
    candidates, _ = english_session.services.retriever.search("how do I rotate an API key", mode="hybrid")
    services = english_session.services
    template = services.prompts.answer(english_session.settings.prompts.version)

    def select(top_k: int, **budget: int) -> list:
        return services.pipeline.select_context(candidates, top_k, template=template, **budget)

    unbounded = select(10, context_tokens=200_000)
    tight = select(10, context_tokens=64)

    assert len(tight) < len(unbounded)
    assert select(10) == select(10, context_tokens=english_session.settings.ranking.context_tokens)


def test_evaluation_uses_a_throwaway_collection_and_the_offline_answerer(tmp_path: Path) -> None:
    base = load_settings(
        environ={"QDRANT_URL": "http://qdrant.example:6333", "REDIS_URL": "redis://redis.example:6379/0"}
    )
    settings = eval_settings(base, tmp_path, "msmarco")
    assert settings.store.collection == "eval-msmarco"
    assert settings.data_dir == str(tmp_path)
    assert settings.secrets.qdrant_url is None  # never a shared server
    assert settings.secrets.redis_url is None  # nor shared state (conversations, cached answers)
    assert settings.answers.answer_cache == "off"  # every question answered afresh
    assert settings.generation.provider == "extractive"
    # Answers go through /ask's path; its retrieval timeout must not turn load into "timeout".
    assert settings.retrieval.timeout_s >= 60.0 > base.retrieval.timeout_s


# --- the command ------------------------------------------------------------------------------
# ``kb eval`` is ``evaluate_dataset`` below the command line: the data-set tests call it with the
# session's model; one test runs the real command end to end (it loads the model once more).


def run_cli(*args: str) -> dict | list:
    result = CliRunner().invoke(cli, ["eval", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.mark.slow
def test_kb_eval_json_on_a_beir_set_reports_the_promised_keys(tmp_path: Path) -> None:
    report = run_cli(
        str(EVAL_DATA / "de-kb"),
        "--json",
        "--mode",
        "hybrid",
        "--fusion",
        "dbsf",
        "--limit-queries",
        "10",
        "--keep-data",
        str(tmp_path),
    )

    assert {"queries", "ndcg@10", "recall@10", "mrr@10", "latency_ms"} <= set(report)
    assert report["queries"] == 10
    assert report["fusion"] == "dbsf"
    assert set(report["latency_ms"]) == set(STAGES)
    assert (tmp_path / "store").is_dir()  # --keep-data kept the store


def test_a_question_set_reports_answer_recall_and_squad_scores(embedder, tmp_path: Path) -> None:
    settings = eval_settings(load_settings(environ={}), tmp_path, "qa-mini")
    [report] = evaluate_dataset(EVAL_DATA / "qa-mini", settings, modes=["hybrid"], embedder=embedder)

    assert isinstance(report, QAReport)
    assert report.queries == 8
    assert set(report.answer_recall) == {"@1", "@3", "@5", "@10"}
    # Every gold answer is in the documents; on seven chunks retrieval finds them all.
    assert report.answer_recall["@10"] == 1.0
    assert report.provider == "extractive"
    # The extractive answerer quotes whole sentences: exact match is 0, overlap is partial.
    assert report.exact_match == 0.0
    assert 0.0 < report.token_f1 < 1.0
    # Answer-level figures, from the same answers, question by question.
    outcomes = list(report.per_query.values())
    assert len(outcomes) == report.queries
    assert report.reached_context == sum(o.reached for o in outcomes) > 0
    assert report.gold_in_answer == round(sum(o.gold_in_answer for o in outcomes) / report.queries, 4)
    reached = [o.gold_in_answer for o in outcomes if o.reached]
    assert report.gold_in_answer_reached == round(sum(reached) / len(reached), 4)
    assert report.gold_in_answer > 0.0  # the answerer quotes some gold spans on this easy set
    words = sorted(o.words for o in outcomes)
    assert report.median_answer_words == (words[3] + words[4]) / 2  # eight questions
    assert all(o.words == len(o.answer.split()) for o in outcomes)
    assert report.answer_ms is not None and report.answer_ms.n == report.queries

    # Deterministic: the same store and questions give the same answers.
    [again] = evaluate_dataset(EVAL_DATA / "qa-mini", settings, modes=["hybrid"], embedder=embedder)
    assert {k: o.answer for k, o in again.per_query.items()} == {
        k: o.answer for k, o in report.per_query.items()
    }


def test_a_qa_sets_documents_can_live_elsewhere(embedder, tmp_path: Path) -> None:
    questions = tmp_path / "set" / "questions.jsonl"
    questions.parent.mkdir()
    questions.write_bytes((EVAL_DATA / "qa-mini" / "questions.jsonl").read_bytes())
    settings = eval_settings(load_settings(environ={}), tmp_path / "data", "set")

    reports = evaluate_dataset(
        questions.parent,
        settings,
        modes=["dense", "lexical"],
        fusion="rrf",
        limit=3,
        docs_dir=EVAL_DATA / "qa-mini" / "docs",
        embedder=embedder,
    )

    assert [(r.kind, r.mode, r.fusion, r.queries) for r in reports] == [
        ("qa", "dense", "rrf", 3),
        ("qa", "lexical", "rrf", 3),
    ]
    assert all(r.chunks > 0 for r in reports)


def test_kb_eval_refuses_a_folder_that_is_not_a_data_set(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["eval", str(tmp_path)])
    assert result.exit_code != 0
    assert "not a data set" in result.output


def test_docs_is_refused_for_a_beir_set() -> None:
    result = CliRunner().invoke(
        cli, ["eval", str(EVAL_DATA / "de-kb"), "--docs", str(EVAL_DATA / "qa-mini" / "docs")]
    )
    assert result.exit_code == 2
    assert "--docs is for QA sets" in result.output


def test_an_unknown_fusion_is_refused_before_anything_is_loaded() -> None:
    result = CliRunner().invoke(cli, ["eval", str(EVAL_DATA / "de-kb"), "--fusion", "borda"])
    assert result.exit_code == 2
    assert "'borda' is not one of 'weighted', 'rrf', 'dbsf'" in result.output
