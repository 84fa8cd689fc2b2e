"""Does retrieval say `empty` when the knowledge base has no answer, without losing answers?

    python bench/noanswer.py [--data DIR] [--split held-out|fit|all] [--json] [--show]

Two labelled sets (bench/data/noanswer/README.md):

* ``docs``: answerable and unanswerable questions over this project's ``docs/``
  (bench/data/noanswer/docs.jsonl);
* ``pg``: the answerable questions of bench/data/pg-essays-qa and the unanswerable ones of
  bench/data/noanswer/pg.jsonl, over ``../shared/corpora/pg-essays``.

Each set is ingested into a throwaway embedded store (``--data DIR`` keeps and reuses it) through
``EvalSession``, and every question is asked once through ``Retriever.judge`` (the service's
search, fusion and calibrated relevance, before the relevance floor). The floor is then swept:
for each threshold, ``relevant_candidates`` (the service's rule, with the configured
``retrieval.companion_floor``) keeps the candidates and
``AskPipeline.select_context`` (the ranking stage and default budget) picks the context. Printed
per threshold: the share of unanswerable questions that get `empty`, and the share of answerable
ones whose gold answer is in a context chunk.

Questions are split in two by their position in each file: even lines are the fitting half (what
``bench/calibrate.py`` fits ``RELEVANCE_MODEL`` on), odd lines the held-out half reported by
default.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import msgspec

from app.config import load_settings
from app.embedding import Embedder, SentenceTransformerEmbedder
from app.evaluation.metrics import answer_in_texts
from app.evaluation.runner import EvalSession, eval_settings
from app.records import ScoredChunk
from app.retrieval.calibration import (
    RELEVANCE_MODEL,
    JudgedChunk,
    RelevanceModel,
)
from app.retrieval.policy import relevant_candidates

__all__ = [
    "SETS",
    "THRESHOLDS",
    "Question",
    "Sweep",
    "collect",
    "load_sets",
    "print_table",
    "rejudge",
    "sweep",
]

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "bench" / "data" / "noanswer"
SETS = ("docs", "pg")
THRESHOLDS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


@dataclass
class Question:
    set: str
    question: str
    answerable: bool
    answers: list[str]
    fit: bool
    """In the fitting half (even position in its file)."""
    candidates: list[JudgedChunk]
    lexical_alone: bool
    min_share: float
    contexts: dict[float, list[str]]
    """Threshold → texts of the context chunks at that floor."""


@dataclass
class Sweep:
    threshold: float
    unanswerable: int
    empty: float
    answerable: int
    reached: float


def _read(path: Path, *, answerable: bool | None = None) -> list[tuple[str, bool, list[str], bool]]:
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
        if not line.strip():
            continue
        item = json.loads(line)
        is_answerable = item.get("answerable", True) if answerable is None else answerable
        rows.append((item["question"], bool(is_answerable), list(item.get("answers", [])), n % 2 == 0))
    return rows


def load_sets() -> dict[str, tuple[Path, list[tuple[str, bool, list[str], bool]]]]:
    """Set name → (documents folder, questions)."""
    pg_docs = (ROOT / ".." / "shared" / "corpora" / "pg-essays").resolve()
    return {
        "docs": (ROOT / "docs", _read(DATA / "docs.jsonl")),
        "pg": (
            pg_docs,
            _read(ROOT / "bench" / "data" / "pg-essays-qa" / "questions.jsonl", answerable=True)
            + _read(DATA / "pg.jsonl", answerable=False),
        ),
    }


def collect(
    data: Path,
    *,
    embedder: Embedder,
    thresholds: Sequence[float] = THRESHOLDS,
    refit: Callable[[list[Question]], RelevanceModel] | None = None,
    sets: Sequence[str] = SETS,
    say: Callable[[str], None] = print,
) -> list[Question]:
    """Every question of both sets, judged once, with its context at each threshold.

    Relevance is the shipped ``RELEVANCE_MODEL``'s, unless ``refit`` is given: it is then called
    with every judged question (the evidence is the same whatever the model) and the model it
    returns re-judges every candidate before the contexts are chosen.
    """
    questions: list[Question] = []
    sessions: dict[str, EvalSession] = {}
    base = load_settings()
    with ExitStack() as stack:
        for name, (docs, rows) in load_sets().items():
            if name not in sets:
                continue
            # The pg store is named as `kb eval bench/data/pg-essays-qa --keep-data DIR/pg` names its own,
            # so one ingest serves both.
            settings = eval_settings(
                base, data / name, "pg-essays-qa" if name == "pg" else f"noanswer-{name}"
            )
            session = sessions[name] = stack.enter_context(EvalSession(settings, embedder=embedder))
            report = session.ingest_folder(docs)
            say(f"{name}: {session.chunks} chunks ({report.unchanged} unchanged) from {docs}")
            for question, answerable, answers, fit in rows:
                judged = session.services.retriever.judge(question, mode="hybrid")
                candidates = judged.candidates
                questions.append(
                    Question(
                        set=name,
                        question=question,
                        answerable=answerable,
                        answers=answers,
                        fit=fit,
                        candidates=candidates,
                        lexical_alone=judged.lexical_alone,
                        min_share=judged.min_share,
                        contexts={},
                    )
                )
        if refit is not None:
            rejudge(questions, refit(questions))
        for q in questions:
            services = sessions[q.set].services
            pipeline = services.pipeline
            top_k = services.settings.retrieval.top_k
            template = services.prompts.answer(services.settings.prompts.version)
            companion = services.settings.retrieval.companion_floor
            for t in thresholds:
                kept: list[ScoredChunk] = list(
                    relevant_candidates(
                        q.candidates,
                        floor=t,
                        companion_floor=companion,
                        lexical_alone=q.lexical_alone,
                        min_share=q.min_share,
                    )
                )
                q.contexts[t] = (
                    [
                        c.record.text
                        for c in pipeline.select_context(kept, top_k, template=template, question=q.question)
                    ]
                    if kept
                    else []
                )
    return questions


def rejudge(questions: Sequence[Question], model: RelevanceModel) -> None:
    """Recompute every candidate's relevance with ``model`` (the evidence stays)."""
    for q in questions:
        q.candidates = [
            msgspec.structs.replace(c, relevance=model.relevance(c.dense_score, c.lexical_share))
            for c in q.candidates
        ]


def sweep(questions: Sequence[Question], thresholds: Sequence[float] = THRESHOLDS) -> list[Sweep]:
    """Per threshold: share of unanswerable questions `empty`, of answerable ones whose answer is
    in the context."""
    rows = []
    unanswerable = [q for q in questions if not q.answerable]
    answerable = [q for q in questions if q.answerable]
    for t in thresholds:
        empty = sum(1 for q in unanswerable if not q.contexts[t])
        reached = sum(1 for q in answerable if answer_in_texts(q.answers, q.contexts[t]))
        rows.append(
            Sweep(
                threshold=t,
                unanswerable=len(unanswerable),
                empty=empty / len(unanswerable) if unanswerable else 0.0,
                answerable=len(answerable),
                reached=reached / len(answerable) if answerable else 0.0,
            )
        )
    return rows


def print_table(title: str, rows: Sequence[Sweep], chosen: float) -> None:
    print(f"\n{title}")
    print(f"{'floor':>6s} {'unanswerable empty':>20s} {'answerable reached':>20s}")
    for r in rows:
        mark = "  <- default" if abs(r.threshold - chosen) < 1e-9 else ""
        print(
            f"{r.threshold:6.2f} {r.empty:11.1%} of {r.unanswerable:<4d} {r.reached:11.1%} of {r.answerable:<4d}{mark}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--data", type=Path, help="store folders (reused when present); default: a temp folder"
    )
    parser.add_argument("--sets", default=",".join(SETS), help="comma-separated: docs, pg")
    parser.add_argument("--split", choices=("held-out", "fit", "all"), default="held-out")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--show", action="store_true", help="list the questions the default floor gets wrong")
    args = parser.parse_args()
    settings = load_settings()
    chosen = settings.retrieval.relevance_floor
    thresholds = sorted({*THRESHOLDS, chosen})  # the shipped floor is always one of them
    embedder = SentenceTransformerEmbedder(settings.embedding)
    with tempfile.TemporaryDirectory(prefix="kb-noanswer-") as tmp:
        questions = collect(
            args.data or Path(tmp),
            embedder=embedder,
            thresholds=thresholds,
            sets=args.sets.split(","),
        )
    part = {
        "held-out": [q for q in questions if not q.fit],
        "fit": [q for q in questions if q.fit],
        "all": questions,
    }[args.split]
    tables = {
        name: sweep([q for q in part if q.set == name], thresholds) for name in SETS if name in args.sets
    }
    tables["both"] = sweep(part, thresholds)
    if args.json:
        print(json.dumps({k: [r.__dict__ for r in v] for k, v in tables.items()}, indent=2))
        return
    print(f"\nRELEVANCE_MODEL = {RELEVANCE_MODEL}; retrieval.relevance_floor = {chosen}; {args.split} half")
    for name, rows in tables.items():
        print_table(name, rows, chosen)
    if args.show:
        show_misses(part, chosen)


def show_misses(questions: Sequence[Question], floor: float) -> None:
    """The unanswerable questions that are not `empty` at ``floor`` and the answerable ones whose
    answer misses the context, with their best evidence."""
    print(f"\nwrong at floor {floor}:")
    for q in questions:
        context = q.contexts.get(floor, [])
        right = answer_in_texts(q.answers, context) if q.answerable else not context
        if right:
            continue
        best = max(q.candidates, key=lambda c: c.relevance or 0.0, default=None)
        evidence = (
            f"best relevance {best.relevance:.2f} (cosine {best.dense_score or 0.0:.2f}, "
            f"lexical share {best.lexical_share or 0.0:.2f}) {best.record.source}"
            if best is not None and best.relevance is not None
            else "no candidates"
        )
        kind = "answerable, missed" if q.answerable else "unanswerable, not empty"
        print(f"  [{q.set}] {kind}: {q.question!r}; lexical alone: {q.lexical_alone}; {evidence}")


if __name__ == "__main__":
    main()
