"""Retrieval throughput at 32 concurrent questions against one at a time (issue 9, benchmark 3).

    .venv/bin/python bench/bench_batching.py --out /tmp/bench_batching.json

A real store and the real path: ``--essays`` essays of ../shared/corpora/pg-essays (the ones the
questions of bench/data/pg-essays-qa are about, first) are ingested into a temporary Qdrant Edge
store with the configured model; the questions are that set's (real questions, distinct, so the
query-embedding cache is off and never answers for the model). Each question goes through
``Retriever.retrieve`` as ``/ask`` calls it: admission, the question batcher, the store workers,
fusion, calibration, the relevance floor; the ``kb_retrieval``-style outcome of each is counted.

Runs, in this order, ``--rounds`` times: every question one at a time ("sequential"), then all
of them with ``--concurrency`` in flight ("concurrent"), then the same with batching off
(``batch_max = 1``: the pool alone, "unbatched"). Throughput is questions per second of wall
time; the figure is the ratio concurrent / sequential of each round (the median over rounds),
measured in one process minutes apart, since the machine is shared. Also: latency p50/p95, the
batch sizes the model saw, and whether the concurrent run's candidates are the sequential run's
(same chunk ids in the same order). Target: ratio >= 3. JSON on stdout (and --out), a table on
stderr. Bounded: at most ``--questions`` questions per run, and each retrieval by its timeout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import msgspec
from report import emit

from app.config import load_settings
from app.embedding import EmbeddingBatcher, SentenceTransformerEmbedder
from app.evaluation import percentile
from app.evaluation.runner import eval_settings
from app.retrieval import Retriever
from app.retrieval.admission import default_search_workers, queue_for
from app.settings import RetrievalSettings
from app.store import open_store
from ingest.runner import Ingestor

ROOT = Path(__file__).resolve().parent.parent
QUESTIONS = ROOT / "bench" / "data" / "pg-essays-qa" / "questions.jsonl"
CORPUS = ROOT.parent / "shared" / "corpora" / "pg-essays"


def load_questions(limit: int) -> list[tuple[str, str]]:
    """(essay stem, question) of the QA set, in file order."""
    rows = []
    for line in QUESTIONS.read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            rows.append((row["id"].rsplit("-", 1)[0], row["question"]))
    return rows[:limit]


def essays_for(questions: list[tuple[str, str]], corpus: Path, count: int) -> list[Path]:
    """``count`` essays: the questions' own first, then others in name order."""
    chosen: list[Path] = []
    for stem, _ in questions:
        path = corpus / f"{stem}.md"
        if path.is_file() and path not in chosen:
            chosen.append(path)
    for path in sorted(corpus.glob("*.md")):
        if path not in chosen:
            chosen.append(path)
    return chosen[:count]


async def run(
    retriever: Retriever, questions: list[str], concurrency: int
) -> tuple[float, list[float], list[str], list[list[str] | None], dict[str, float]]:
    """Wall seconds, per-question latency (ms), statuses, candidate ids, mean ms per step (of
    the retrievals that got that far)."""
    gate = asyncio.Semaphore(concurrency)
    latencies: list[float] = [0.0] * len(questions)
    statuses: list[str] = [""] * len(questions)
    ids: list[list[str] | None] = [None for _ in questions]
    steps: dict[str, list[float]] = {}

    async def one(n: int, question: str) -> None:
        async with gate:
            t0 = time.perf_counter()
            result = await retriever.retrieve(question)
            latencies[n] = (time.perf_counter() - t0) * 1000
            statuses[n] = result.status
            if result.status in ("ok", "empty"):
                ids[n] = [c.record.point_id for c in result.candidates]
            for step, ms in result.timings_ms.items():
                steps.setdefault(step, []).append(ms)

    started = time.perf_counter()
    await asyncio.gather(*(one(n, q) for n, q in enumerate(questions)))
    stages = {step: round(statistics.fmean(values), 1) for step, values in steps.items()}
    return time.perf_counter() - started, latencies, statuses, ids, stages


def summary(seconds: float, latencies: list[float], statuses: list[str], sizes: list[int]) -> dict[str, Any]:
    answered = sum(status in ("ok", "empty") for status in statuses)
    return {
        "seconds": round(seconds, 3),
        # Retrievals that ended in ok or empty, per second: a timed-out one is no throughput.
        "questions_per_s": round(answered / seconds, 2),
        "latency_ms": {
            "p50": round(percentile(latencies, 50), 1),
            "p95": round(percentile(latencies, 95), 1),
        },
        "statuses": dict(Counter(statuses)),
        "model_calls": len(sizes),
        "batch_sizes": {
            "mean": round(statistics.fmean(sizes), 2) if sizes else 0,
            "max": max(sizes, default=0),
        },
    }


async def measure(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    base = eval_settings(load_settings(), tmp / "data", "bench-batching")
    settings = msgspec.structs.replace(
        base, retrieval=msgspec.structs.replace(base.retrieval, timeout_s=args.timeout_s)
    )
    questions_rows = load_questions(args.questions)
    questions = [q for _, q in questions_rows]
    embedder = SentenceTransformerEmbedder(settings.embedding)
    embedder.embed(["warm-up"])
    store = open_store(settings)
    files = essays_for(questions_rows, args.corpus, args.essays)
    t0 = time.perf_counter()
    # Unchanged files of a kept store (--keep-data) are skipped: only the first run pays.
    report = Ingestor(store, embedder, chunking=settings.chunking, ingest=settings.ingest).ingest_paths(files)
    ingest_s = time.perf_counter() - t0
    chunks = store.count()
    print(f"ingested {len(files)} essays, {chunks} chunks in {ingest_s:.0f} s", file=sys.stderr)

    def retriever(retrieval: RetrievalSettings, sizes: list[int]) -> Retriever:
        batcher = EmbeddingBatcher(
            embedder,
            window_s=retrieval.batch_window_ms / 1000,
            max_batch=retrieval.batch_max,
            on_batch=sizes.append,
        )
        return Retriever(store, batcher, retrieval, queue=queue_for(retrieval))

    batched = settings.retrieval
    unbatched = msgspec.structs.replace(batched, batch_max=1, batch_window_ms=0.0)
    rounds: list[dict[str, Any]] = []
    same: list[float] = []
    try:
        for _ in range(args.rounds):
            row: dict[str, Any] = {}
            ids_by_run: dict[str, list[list[str] | None]] = {}
            for name, retrieval, concurrency in (
                ("sequential", batched, 1),
                ("concurrent", batched, args.concurrency),
                ("unbatched", unbatched, args.concurrency),
            ):
                sizes: list[int] = []
                r = retriever(retrieval, sizes)
                try:
                    await run(r, questions[:4], 1)  # warm: term statistics, first calls
                    sizes.clear()
                    seconds, latencies, statuses, ids, stages = await run(r, questions, concurrency)
                finally:
                    r.close()
                row[name] = summary(seconds, latencies, statuses, sizes) | {"step_ms": stages}
                ids_by_run[name] = ids
            row["ratio"] = round(
                row["concurrent"]["questions_per_s"] / row["sequential"]["questions_per_s"], 2
            )
            row["ratio_unbatched"] = round(
                row["unbatched"]["questions_per_s"] / row["sequential"]["questions_per_s"], 2
            )
            # Only questions both runs answered (a timed-out one has no candidates to compare).
            pairs = [
                (a, b)
                for a, b in zip(ids_by_run["sequential"], ids_by_run["concurrent"], strict=True)
                if a is not None and b is not None
            ]
            same.append(sum(a == b for a, b in pairs) / len(pairs) if pairs else 0.0)
            rounds.append(row)
    finally:
        store.close()
    return {
        "essays": len(files),
        "chunks": chunks,
        "ingest_s": round(ingest_s, 1),
        "ingest_failed": len(report.failed),
        "questions": len(questions),
        "concurrency": args.concurrency,
        "search_workers": batched.search_workers or default_search_workers(),
        "batch_window_ms": batched.batch_window_ms,
        "batch_max": batched.batch_max,
        "rounds": rounds,
        "ratio_median": statistics.median(r["ratio"] for r in rounds),
        "ratio_unbatched_median": statistics.median(r["ratio_unbatched"] for r in rounds),
        "same_candidates_share": round(min(same), 3),
        "target_ratio": 3.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    parser.add_argument("--essays", type=int, default=30, help="essays ingested (default 30)")
    parser.add_argument("--questions", type=int, default=64, help="questions per run (at most 120)")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--timeout-s", type=float, default=3.0, help="retrieval.timeout_s (default: the service's 3.0)"
    )
    parser.add_argument("--out", type=Path)
    parser.add_argument(
        "--keep-data", type=Path, help="store folder, kept and reused (default: a temporary one)"
    )
    args = parser.parse_args()

    load_start = os.getloadavg()
    if args.keep_data is not None:
        result = asyncio.run(measure(args, args.keep_data))
    else:
        with tempfile.TemporaryDirectory(prefix="kb-bench-batching-") as tmp:
            result = asyncio.run(measure(args, Path(tmp)))
    result["loadavg_start"] = [round(x, 2) for x in load_start]
    result["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]

    print(
        f"{'run':12s} {'q/s':>8s} {'p50 ms':>8s} {'p95 ms':>8s} {'calls':>6s} {'batch':>6s}  statuses",
        file=sys.stderr,
    )
    for n, row in enumerate(result["rounds"]):
        for name in ("sequential", "concurrent", "unbatched"):
            r = row[name]
            print(
                f"{name + f' #{n + 1}':12s} {r['questions_per_s']:8.1f} {r['latency_ms']['p50']:8.1f} "
                f"{r['latency_ms']['p95']:8.1f} {r['model_calls']:6d} {r['batch_sizes']['mean']:6.1f}  "
                f"{r['statuses']}",
                file=sys.stderr,
            )
    print(
        f"concurrent/sequential: {result['ratio_median']}x (target >= 3), unbatched/sequential: "
        f"{result['ratio_unbatched_median']}x; same candidates: {result['same_candidates_share']:.0%}; "
        f"load {result['loadavg_start']} -> {result['loadavg_end']}",
        file=sys.stderr,
    )
    emit(result, args.out)


if __name__ == "__main__":
    main()
