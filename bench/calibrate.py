"""Refit ``RELEVANCE_MODEL`` (app/retrieval/calibration.py) on the labelled no-answer sets.

    python bench/calibrate.py [--data DIR]

Asks every question of bench/data/noanswer once (``bench/noanswer.py``: the docs and pg sets,
through the service's retriever), then fits a logistic regression of "this chunk holds the
answer" on each candidate's evidence (dense cosine, lexical share), on the fitting half only
(even lines of each file):

* positives: candidates of answerable questions whose text contains a gold answer;
* negatives: every candidate of unanswerable questions.

Both classes weigh the same in total (there are far more negatives), with a small L2 penalty.
Prints the constants to paste into ``RELEVANCE_MODEL`` and, with them, the per-threshold table
on the held-out half (odd lines), which is what docs/evaluation.md reports.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
from noanswer import SETS, Question, collect, print_table, sweep

from app.config import load_settings
from app.embedding import SentenceTransformerEmbedder
from app.evaluation.metrics import answer_in_texts
from app.retrieval.calibration import RelevanceModel

__all__ = ["fit"]

_L2 = 1e-3


def _examples(questions: Sequence[Question]) -> tuple[np.ndarray, np.ndarray]:
    rows: list[tuple[float, float]] = []
    labels: list[float] = []
    for q in questions:
        for c in q.candidates:
            if q.answerable and not answer_in_texts(q.answers, [c.record.text]):
                continue  # a chunk of an answerable question without the answer: no label
            cosine = 0.0 if c.dense_score is None else c.dense_score
            rows.append((cosine, c.lexical_share or 0.0))
            labels.append(1.0 if q.answerable else 0.0)
    return np.array(rows, dtype=np.float64), np.array(labels, dtype=np.float64)


def fit(questions: Sequence[Question]) -> RelevanceModel:
    """Class-balanced, L2-penalised logistic regression by Newton's method."""
    x, y = _examples([q for q in questions if q.fit])
    if not y.any() or y.all():
        raise SystemExit("the fitting half needs both answer chunks and unanswerable questions")
    weights = np.where(y == 1.0, 0.5 / y.sum(), 0.5 / (1.0 - y).sum())
    design = np.column_stack([np.ones(len(x)), x])
    beta = np.zeros(3)
    for _ in range(100):
        p = 1.0 / (1.0 + np.exp(-(design @ beta)))
        gradient = design.T @ (weights * (p - y)) + _L2 * np.r_[0.0, beta[1:]]
        hessian = (design * (weights * p * (1 - p))[:, None]).T @ design + _L2 * np.diag([0.0, 1.0, 1.0])
        step = np.linalg.solve(hessian, gradient)
        beta -= step
        if float(np.abs(step).max()) < 1e-8:
            break
    bias, dense, lexical = (round(float(b), 2) for b in beta)
    print(
        f"fitted on {int(y.sum())} answer chunks and {int((1 - y).sum())} candidates of unanswerable "
        f"questions: RelevanceModel(bias={bias}, dense={dense}, lexical={lexical})"
    )
    return RelevanceModel(bias=bias, dense=dense, lexical=lexical)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--data", type=Path, help="store folders (reused when present); default: a temp folder"
    )
    parser.add_argument("--sets", default=",".join(SETS), help="comma-separated: docs, pg")
    args = parser.parse_args()
    settings = load_settings()
    embedder = SentenceTransformerEmbedder(settings.embedding)
    with tempfile.TemporaryDirectory(prefix="kb-calibrate-") as tmp:
        questions = collect(
            args.data or Path(tmp),
            embedder=embedder,
            refit=fit,
            sets=args.sets.split(","),
        )
    held_out = [q for q in questions if not q.fit]
    chosen = settings.retrieval.relevance_floor
    for name in [s for s in SETS if s in args.sets]:
        print_table(f"{name}, held-out half", sweep([q for q in held_out if q.set == name]), chosen)
    print_table("both, held-out half", sweep(held_out), chosen)


if __name__ == "__main__":
    main()
