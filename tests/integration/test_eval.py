"""`kb eval` end to end: CI-sized samples through the real ingestion, store, model and ranking.

The samples live in tests/data/eval (see the make_*.py scripts and READMEs there): ``en-kb`` is an
English internal knowledge base (error codes, tool pages, policies; 173 passages), ``de-kb`` a
German one (132 passages), ``ru-kb`` a Russian one (90 passages), ``qa-mini`` a folder of documents
with questions and gold answers.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from app.cli import cli
from app.config import load_settings
from app.evaluation import EvalSession, RetrievalReport, eval_settings, load_beir
from app.evaluation.runner import MODES, STAGES

pytestmark = [pytest.mark.integration, pytest.mark.slow]

EVAL_DATA = Path(__file__).parents[1] / "data" / "eval"


def evaluate_all_modes(name: str, embedder, folder: Path) -> dict[str, RetrievalReport]:
    dataset = load_beir(EVAL_DATA / name)
    settings = eval_settings(load_settings(environ={}), folder, dataset.name)
    with EvalSession(settings, embedder=embedder) as session:
        session.ingest_beir(dataset)
        return {mode: session.evaluate_beir(dataset, mode) for mode in MODES}


@pytest.fixture(scope="module")
def english(embedder, tmp_path_factory) -> dict[str, RetrievalReport]:
    return evaluate_all_modes("en-kb", embedder, tmp_path_factory.mktemp("en-kb"))


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


def test_evaluation_uses_a_throwaway_collection_and_the_offline_answerer(tmp_path: Path) -> None:
    base = load_settings(environ={"QDRANT_URL": "http://qdrant.example:6333"})
    settings = eval_settings(base, tmp_path, "msmarco")
    assert settings.store.collection == "eval-msmarco"
    assert settings.data_dir == str(tmp_path)
    assert settings.secrets.qdrant_url is None  # never a shared server
    assert settings.generation.provider == "extractive"


# --- the command ------------------------------------------------------------------------------


def run_cli(*args: str) -> dict | list:
    result = CliRunner().invoke(cli, ["eval", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_kb_eval_json_on_a_beir_set_reports_the_promised_keys(tmp_path: Path) -> None:
    report = run_cli(
        str(EVAL_DATA / "de-kb"),
        "--json",
        "--mode",
        "hybrid",
        "--limit-queries",
        "10",
        "--keep-data",
        str(tmp_path),
    )

    assert {"queries", "ndcg@10", "recall@10", "mrr@10", "latency_ms"} <= set(report)
    assert report["queries"] == 10
    assert set(report["latency_ms"]) == set(STAGES)
    assert (tmp_path / "qdrant").is_dir()  # --keep-data kept the store


def test_kb_eval_on_a_question_set_reports_answer_recall_and_squad_scores() -> None:
    report = run_cli(str(EVAL_DATA / "qa-mini"), "--json")

    assert report["kind"] == "qa"
    assert report["queries"] == 8
    assert set(report["answer_recall"]) == {"@1", "@3", "@5", "@10"}
    # Every gold answer is in the documents; on seven chunks retrieval finds them all.
    assert report["answer_recall"]["@10"] == 1.0
    assert report["provider"] == "extractive"
    # The extractive answerer quotes whole sentences: exact match is 0, overlap is partial.
    assert report["exact_match"] == 0.0
    assert 0.0 < report["token_f1"] < 1.0


def test_kb_eval_refuses_a_folder_that_is_not_a_data_set(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["eval", str(tmp_path)])
    assert result.exit_code != 0
    assert "not a data set" in result.output


def test_a_qa_sets_documents_can_live_elsewhere(tmp_path: Path) -> None:
    questions = tmp_path / "questions.jsonl"
    questions.write_bytes((EVAL_DATA / "qa-mini" / "questions.jsonl").read_bytes())

    report = run_cli(
        str(tmp_path), "--docs", str(EVAL_DATA / "qa-mini" / "docs"), "--json", "--limit-queries", "3"
    )

    assert report["kind"] == "qa"
    assert report["queries"] == 3
    assert report["chunks"] > 0


def test_docs_is_refused_for_a_beir_set() -> None:
    result = CliRunner().invoke(
        cli, ["eval", str(EVAL_DATA / "de-kb"), "--docs", str(EVAL_DATA / "qa-mini" / "docs")]
    )
    assert result.exit_code == 2
    assert "--docs is for QA sets" in result.output
