"""Evaluation data-set readers, on tiny sets written into tmp_path."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.errors import KBError
from app.evaluation import (
    CorpusEntry,
    DatasetError,
    QAItem,
    Query,
    detect_dataset_kind,
    load_beir,
    load_qa,
)

pytestmark = pytest.mark.unit

CORPUS = (
    '{"_id": "d1", "title": "Cats", "text": "Cats purr.", "metadata": {}}\n'
    '{"_id": "d2", "text": "Dogs bark."}\n'  # no title at all
    '{"_id": "d3", "title": null, "text": "Cows moo."}\n'
)
QUERIES = (
    '{"_id": "q1", "text": "which animal purrs"}\n'
    '{"_id": "q2", "text": "unjudged question"}\n'
    '{"_id": "q3", "text": "which animal moos"}\n'
)
QRELS_ROWS = (
    "q1\td1\t2\n"
    "q1\td2\t0\n"
    "q3\td3\t1\n"
    "q3\tgone\t1\n"  # corpus id not in the corpus: kept, it counts in the ideal DCG
    "q9\td1\t1\n"  # query id not in queries.jsonl: dropped
)


def write_beir(root: Path, qrels: str, *, corpus: str = CORPUS, queries: str = QUERIES) -> Path:
    (root / "qrels").mkdir(parents=True)
    (root / "corpus.jsonl").write_text(corpus, encoding="utf-8")
    (root / "queries.jsonl").write_text(queries, encoding="utf-8")
    (root / "qrels" / "test.tsv").write_text(qrels, encoding="utf-8")
    return root


EXPECTED_QRELS = {"q1": {"d1": 2, "d2": 0}, "q3": {"d3": 1, "gone": 1}}


def test_load_beir_reads_a_qrels_file_without_header(tmp_path: Path) -> None:
    data = load_beir(write_beir(tmp_path / "tiny", QRELS_ROWS))

    assert data.name == "tiny"
    assert data.corpus == [
        CorpusEntry(id="d1", title="Cats", text="Cats purr."),
        CorpusEntry(id="d2", title="", text="Dogs bark."),
        CorpusEntry(id="d3", title="", text="Cows moo."),
    ]
    assert data.qrels == EXPECTED_QRELS


def test_load_beir_reads_a_qrels_file_with_header(tmp_path: Path) -> None:
    data = load_beir(write_beir(tmp_path, "query-id\tcorpus-id\tscore\n" + QRELS_ROWS))
    assert data.qrels == EXPECTED_QRELS


def test_load_beir_keeps_only_queries_with_judgements(tmp_path: Path) -> None:
    data = load_beir(write_beir(tmp_path, QRELS_ROWS))
    # q1 is judged (even a grade-0 judgement counts), q2 has none, q9 has no text.
    assert data.queries == [
        Query(id="q1", text="which animal purrs"),
        Query(id="q3", text="which animal moos"),
    ]


def test_load_beir_tolerates_blank_lines_and_trailing_whitespace(tmp_path: Path) -> None:
    messy = "\nq1\td1\t2  \r\n\n\nq1\td2\t0\t\nq3\td3\t1\nq3\tgone\t1\n\n"
    data = load_beir(write_beir(tmp_path, messy, corpus=CORPUS + "\n"))
    assert data.qrels == EXPECTED_QRELS
    assert len(data.corpus) == 3


def test_load_beir_reads_another_split(tmp_path: Path) -> None:
    root = write_beir(tmp_path, QRELS_ROWS)
    (root / "qrels" / "dev.tsv").write_text("q2\td2\t1\n", encoding="utf-8")
    data = load_beir(root, split="dev")
    assert [q.id for q in data.queries] == ["q2"]


def test_a_malformed_qrels_line_is_reported_with_file_and_line(tmp_path: Path) -> None:
    root = write_beir(tmp_path, "q1\td1\t2\nq1\td2\t0\nq3 d3 1\n")
    with pytest.raises(DatasetError) as caught:
        load_beir(root)
    assert str(root / "qrels" / "test.tsv") in caught.value.message
    assert "line 3" in caught.value.message


def test_a_non_integer_score_after_the_first_line_is_malformed(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="line 2"):
        load_beir(write_beir(tmp_path, "q1\td1\t2\nq1\td2\thigh\n"))


def test_conflicting_grades_for_one_pair_are_refused(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="line 2: conflicting"):
        load_beir(write_beir(tmp_path, "q1\td1\t2\nq1\td1\t1\n"))


def test_a_bad_corpus_line_is_reported_with_file_and_line(tmp_path: Path) -> None:
    corpus = '{"_id": "d1", "text": "ok"}\n{"_id": "d2"}\n'  # line 2 lacks "text"
    root = write_beir(tmp_path, QRELS_ROWS, corpus=corpus)
    with pytest.raises(DatasetError, match=r"corpus\.jsonl, line 2"):
        load_beir(root)


def test_a_duplicate_corpus_id_is_refused(tmp_path: Path) -> None:
    corpus = '{"_id": "d1", "text": "a"}\n{"_id": "d1", "text": "b"}\n'
    with pytest.raises(DatasetError, match="line 2: duplicate corpus id 'd1'"):
        load_beir(write_beir(tmp_path, QRELS_ROWS, corpus=corpus))


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    root = write_beir(tmp_path, QRELS_ROWS)
    (root / "queries.jsonl").unlink()
    with pytest.raises(DatasetError, match=r"queries\.jsonl: file not found"):
        load_beir(root)


def test_dataset_error_is_a_domain_error_with_its_own_code() -> None:
    assert issubclass(DatasetError, KBError)
    assert DatasetError.code == "dataset_error"


# --- QA sets -------------------------------------------------------------------------------


def test_load_qa_reads_questions_with_gold_answers(tmp_path: Path) -> None:
    path = tmp_path / "questions.jsonl"
    path.write_text(
        '{"id": "1", "question": "Capital of France?", "answers": ["Paris"]}\n'
        "\n"
        '{"id": "2", "question": "Boiling point of water?", "answers": ["100 °C", "212 °F"]}\n',
        encoding="utf-8",
    )
    assert load_qa(path) == [
        QAItem(id="1", question="Capital of France?", answers=["Paris"]),
        QAItem(id="2", question="Boiling point of water?", answers=["100 °C", "212 °F"]),
    ]


@pytest.mark.parametrize(
    ("second_line", "complaint"),
    [
        ('{"id": "2", "question": "Why?"}', "line 2"),  # no answers field
        ('{"id": "2", "question": "Why?", "answers": []}', "line 2: no gold answer"),
        ('{"id": "2", "question": "  ", "answers": ["x"]}', "line 2: empty question"),
        ('{"id": "1", "question": "Again?", "answers": ["x"]}', "line 2: duplicate question id"),
        ("not json", "line 2"),
    ],
)
def test_load_qa_names_file_and_line_of_a_bad_item(tmp_path: Path, second_line: str, complaint: str) -> None:
    path = tmp_path / "questions.jsonl"
    path.write_text(
        '{"id": "1", "question": "Q?", "answers": ["A"]}\n' + second_line + "\n", encoding="utf-8"
    )
    with pytest.raises(DatasetError) as caught:
        load_qa(path)
    assert str(path) in caught.value.message
    assert complaint in caught.value.message


# --- telling the kinds apart ---------------------------------------------------------------


def test_detect_dataset_kind_recognises_beir_and_qa_layouts(tmp_path: Path) -> None:
    beir = write_beir(tmp_path / "beir", QRELS_ROWS)
    qa = tmp_path / "qa"
    (qa / "docs").mkdir(parents=True)
    (qa / "questions.jsonl").write_text("", encoding="utf-8")

    assert detect_dataset_kind(beir) == "beir"
    assert detect_dataset_kind(qa) == "qa"


def test_detect_dataset_kind_explains_what_is_missing(tmp_path: Path) -> None:
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "corpus.jsonl").write_text("", encoding="utf-8")
    with pytest.raises(DatasetError, match="missing queries.jsonl, qrels/"):
        detect_dataset_kind(partial)

    qa_without_docs = tmp_path / "qa"
    qa_without_docs.mkdir()
    (qa_without_docs / "questions.jsonl").write_text("", encoding="utf-8")
    with pytest.raises(DatasetError, match="no docs/ directory"):
        detect_dataset_kind(qa_without_docs)

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetError, match="expected a BEIR set"):
        detect_dataset_kind(empty)

    with pytest.raises(DatasetError, match="not a directory"):
        detect_dataset_kind(tmp_path / "nowhere")
