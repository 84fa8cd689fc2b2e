"""Readers for evaluation data sets.

Two kinds are supported (``detect_dataset_kind`` tells them apart):

* **BEIR** retrieval sets - a directory holding ``corpus.jsonl`` (``_id``, ``title``, ``text``),
  ``queries.jsonl`` (``_id``, ``text``) and ``qrels/<split>.tsv`` (tab-separated ``query-id``,
  ``corpus-id``, integer ``score``; the header line is optional).
* **QA** sets - a directory laid out as::

      DIR/questions.jsonl   one {"id": ..., "question": ..., "answers": [...]} per line
      DIR/docs/             the documents to ingest, in any format ingestion supports

Every malformed input raises ``DatasetError`` naming the file and, where there is one, the line.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Literal, TypeVar

import msgspec

from app.errors import KBError

__all__ = [
    "BeirDataset",
    "CorpusEntry",
    "DatasetError",
    "QAItem",
    "Query",
    "detect_dataset_kind",
    "load_beir",
    "load_qa",
]


class DatasetError(KBError):
    """An evaluation data set is missing, incomplete or malformed."""

    code = "dataset_error"


class CorpusEntry(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    title: str
    text: str


class Query(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    text: str


class BeirDataset(msgspec.Struct, kw_only=True):
    """A BEIR set, reduced to the queries that can be scored.

    ``qrels`` keeps judgements whose corpus id is absent from ``corpus`` (BEIR subsets often
    have them): they cannot be retrieved, but like in BEIR/pytrec_eval they still count in the
    ideal DCG and in the recall denominator. Grade-0 judgements are kept too.
    """

    name: str
    corpus: list[CorpusEntry]
    queries: list[Query]
    """Only queries with at least one judgement, in ``queries.jsonl`` order."""

    qrels: dict[str, dict[str, int]]
    """query id -> corpus id -> grade, for the queries in ``queries`` only."""


class QAItem(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    question: str
    answers: list[str]


# Wire shapes: BEIR names its id field "_id"; titles are often absent or null.
class _RawDoc(msgspec.Struct):
    id: str = msgspec.field(name="_id")
    text: str
    title: str | None = None


class _RawQuery(msgspec.Struct):
    id: str = msgspec.field(name="_id")
    text: str


_T = TypeVar("_T")

QA_QUESTIONS = "questions.jsonl"
QA_DOCS = "docs"


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """Non-blank lines with their 1-based line numbers."""
    if not path.is_file():
        raise DatasetError(f"{path}: file not found")
    try:
        with path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if line.strip():
                    yield number, line
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path}: not valid UTF-8 ({exc.reason})") from exc


def _read_jsonl(path: Path, kind: type[_T]) -> Iterator[tuple[int, _T]]:
    decoder = msgspec.json.Decoder(kind)
    for number, line in _lines(path):
        try:
            yield number, decoder.decode(line)
        except msgspec.DecodeError as exc:
            raise DatasetError(f"{path}, line {number}: {exc}") from exc


def _is_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


def _read_qrels(path: Path) -> dict[str, dict[str, int]]:
    qrels: dict[str, dict[str, int]] = {}
    first = True
    for number, line in _lines(path):
        columns = line.rstrip().split("\t")
        if first:
            first = False
            # A header is recognised by its score column not being a number ("score").
            if len(columns) == 3 and not _is_int(columns[2].strip()):
                continue
        if len(columns) != 3:
            raise DatasetError(
                f"{path}, line {number}: expected 3 tab-separated columns "
                f"(query-id, corpus-id, score), got {len(columns)}"
            )
        query_id, corpus_id, score = (c.strip() for c in columns)
        if not query_id or not corpus_id or not _is_int(score):
            raise DatasetError(
                f"{path}, line {number}: expected query-id, corpus-id and an integer score, "
                f"got {line.rstrip()!r}"
            )
        judged = qrels.setdefault(query_id, {})
        grade = int(score)
        if judged.get(corpus_id, grade) != grade:
            raise DatasetError(f"{path}, line {number}: conflicting grades for ({query_id}, {corpus_id})")
        judged[corpus_id] = grade
    return qrels


def _duplicate(path: Path, number: int, what: str, ident: str) -> DatasetError:
    return DatasetError(f"{path}, line {number}: duplicate {what} id {ident!r}")


def load_beir(directory: Path, split: str = "test") -> BeirDataset:
    """Read a BEIR set, keeping only the queries that have at least one judgement.

    Judgements of query ids missing from ``queries.jsonl`` are dropped: a query without text
    cannot be asked.
    """
    directory = Path(directory)
    corpus_path = directory / "corpus.jsonl"
    queries_path = directory / "queries.jsonl"
    qrels_path = directory / "qrels" / f"{split}.tsv"

    qrels = _read_qrels(qrels_path)

    corpus: list[CorpusEntry] = []
    seen_docs: set[str] = set()
    for number, doc in _read_jsonl(corpus_path, _RawDoc):
        if doc.id in seen_docs:
            raise _duplicate(corpus_path, number, "corpus", doc.id)
        seen_docs.add(doc.id)
        corpus.append(CorpusEntry(id=doc.id, title=doc.title or "", text=doc.text))

    queries: list[Query] = []
    seen_queries: set[str] = set()
    for number, query in _read_jsonl(queries_path, _RawQuery):
        if query.id in seen_queries:
            raise _duplicate(queries_path, number, "query", query.id)
        seen_queries.add(query.id)
        if query.id in qrels:
            queries.append(Query(id=query.id, text=query.text))

    return BeirDataset(
        name=directory.resolve().name,
        corpus=corpus,
        queries=queries,
        qrels={q.id: qrels[q.id] for q in queries},
    )


def load_qa(path: Path) -> list[QAItem]:
    """Read a QA questions file (JSONL). Every item needs a question and one non-blank answer."""
    path = Path(path)
    items: list[QAItem] = []
    seen: set[str] = set()
    for number, item in _read_jsonl(path, QAItem):
        if item.id in seen:
            raise _duplicate(path, number, "question", item.id)
        if not item.question.strip():
            raise DatasetError(f"{path}, line {number}: empty question")
        if not any(answer.strip() for answer in item.answers):
            raise DatasetError(f"{path}, line {number}: no gold answer")
        seen.add(item.id)
        items.append(item)
    return items


def detect_dataset_kind(path: Path) -> Literal["beir", "qa"]:
    """Tell a BEIR directory from a QA directory, or explain what is missing."""
    path = Path(path)
    if not path.is_dir():
        raise DatasetError(
            f"{path}: not a directory; give a BEIR set (corpus.jsonl, queries.jsonl, qrels/) "
            f"or a QA set ({QA_QUESTIONS} and {QA_DOCS}/)"
        )
    beir_parts = {
        "corpus.jsonl": (path / "corpus.jsonl").is_file(),
        "queries.jsonl": (path / "queries.jsonl").is_file(),
        "qrels/": (path / "qrels").is_dir(),
    }
    if all(beir_parts.values()):
        return "beir"
    if (path / QA_QUESTIONS).is_file():
        if not (path / QA_DOCS).is_dir():
            raise DatasetError(
                f"{path}: has {QA_QUESTIONS} but no {QA_DOCS}/ directory; "
                f"a QA set is DIR/{QA_QUESTIONS} plus the documents under DIR/{QA_DOCS}/"
            )
        return "qa"
    if any(beir_parts.values()):
        missing = ", ".join(name for name, present in beir_parts.items() if not present)
        raise DatasetError(f"{path}: incomplete BEIR set, missing {missing}")
    raise DatasetError(
        f"{path}: not a data set; expected a BEIR set (corpus.jsonl, queries.jsonl, qrels/) "
        f"or a QA set ({QA_QUESTIONS} and {QA_DOCS}/)"
    )
