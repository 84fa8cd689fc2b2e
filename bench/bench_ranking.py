"""Latency of the ranking stage on synthetic data: 50 candidates (384-d unit vectors, ~150-word
texts, a few near-duplicates) -> top 6. Budget: p50 < 5 ms.

Usage: .venv/bin/python bench/bench_ranking.py [--runs 1000] [--candidates 50] [--top-k 6] [--busy-model]

``--busy-model`` times it again while the real embedding model encodes on its own thread, as it
does under load (``rank`` runs on the event loop meanwhile), and times the pool's cosine matrix
as a BLAS product (``mat @ mat.T``, what ``rank`` used before) beside it: a BLAS product of this
size hands work to BLAS's threads, which then wait for cores the model's threads hold.

Not a test: timings depend on the machine, so nothing here asserts. Run it after changing
``app/ranking.py`` and compare with the previous numbers.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.ranking import fit_to_budget, rank
from app.records import ChunkRecord, ScoredChunk
from app.settings import RankingSettings
from app.text.tokens import ClaudeTokenEstimate

__all__: list[str] = []


def synthetic_candidates(n: int, dim: int, seed: int = 7) -> list[ScoredChunk]:
    rng = np.random.default_rng(seed)
    vocab = [f"word{i}" for i in range(3000)]
    base = rng.standard_normal((n, dim)).astype(np.float32)
    # Every fifth candidate is a near-copy of the one before it, so deduplication has work to do.
    for i in range(1, n, 5):
        base[i] = base[i - 1] + 0.05 * rng.standard_normal(dim).astype(np.float32)
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    out = []
    for i in range(n):
        words = rng.choice(vocab, size=150)
        text = ". ".join(" ".join(words[k : k + 15]) for k in range(0, 150, 15)) + "."
        record = ChunkRecord(
            point_id=f"p{i}",
            doc_id=f"d{i // 3}",
            source=f"/kb/doc{i // 3}.md",
            title=f"Doc {i // 3}",
            chunk_index=i % 3,
            chunk_count=3,
            text=text,
            doc_hash="h",
            text_hash=f"t{i}",
            ingested_at="2024-01-01T00:00:00Z",
        )
        dense = float(rng.uniform(0.05, 0.8))
        lexical = float(rng.uniform(0, 12)) if i % 2 else None
        out.append(
            ScoredChunk(
                record=record,
                score=dense,
                dense_score=dense,
                lexical_score=lexical,
                vector=tuple(base[i].tolist()),
            )
        )
    return out


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def report(label: str, fn: Callable[[], object], args: argparse.Namespace, *, paced: bool = False) -> None:
    """Time ``fn`` ``--runs`` times (``--busy-runs`` when ``paced``) and print its percentiles."""
    times_ms = []
    for _ in range(args.busy_runs if paced else args.runs):
        start = time.perf_counter()
        fn()
        times_ms.append((time.perf_counter() - start) * 1000.0)
        if paced:
            time.sleep(0.001)  # as requests come: between the model's parallel regions, not in step
    print(
        f"{label:26s} {args.candidates} candidates -> top {args.top_k}, {len(times_ms)} runs: "
        f"p50 {statistics.median(times_ms):.3f} ms, p95 {percentile(times_ms, 0.95):.3f} ms, "
        f"max {max(times_ms):.3f} ms"
    )


class busy_model:
    """The configured embedding model encoding 32 sentences at a time on its own thread."""

    def __enter__(self) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from app.config import load_settings
        from app.embedding import SentenceTransformerEmbedder

        self.embedder = SentenceTransformerEmbedder(load_settings().embedding)
        texts = [f"Sentence {i} about the knowledge base and its questions." for i in range(32)]
        self.stop = threading.Event()

        def encode() -> None:
            while not self.stop.is_set():
                self.embedder.embed(texts)

        self.thread = threading.Thread(target=encode, daemon=True)
        self.thread.start()
        time.sleep(1.0)  # loaded and running

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--candidates", type=int, default=50)
    parser.add_argument("--top-k", type=int, default=6)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--busy-model", action="store_true", help="also time it beside a busy model")
    parser.add_argument("--busy-runs", type=int, default=200)
    args = parser.parse_args()

    ranking = RankingSettings()
    candidates = synthetic_candidates(args.candidates, args.dim)
    counter = ClaudeTokenEstimate()

    def run_rank() -> list[ScoredChunk]:
        return rank(
            candidates,
            top_k=args.top_k,
            mmr_lambda=ranking.mmr_lambda,
            duplicate_threshold=ranking.duplicate_threshold,
        )

    for _ in range(20):  # warm-up: imports, allocator, caches
        selected = run_rank()

    def run_fit() -> list[ScoredChunk]:
        return fit_to_budget(selected, ranking.context_tokens, counter.count, per_chunk_overhead=40)

    arms: list[tuple[str, Callable[[], object]]] = [("rank", run_rank), ("fit_to_budget", run_fit)]
    for label, fn in arms:
        report(label, fn, args)
    if args.busy_model:
        pool = np.array([c.vector for c in candidates], dtype=np.float32)
        arms = [("rank", run_rank), ("cosine: einsum", lambda: np.einsum("ik,jk->ij", pool, pool))]
        arms.append(("cosine: BLAS", lambda: pool @ pool.T))
        for label, fn in arms:
            report(f"{label} (idle)", fn, args, paced=True)
        with busy_model():
            for label, fn in arms:
                report(f"{label} (model busy)", fn, args, paced=True)
    print(f"selected {len(selected)} chunks: {[c.record.point_id for c in selected]}")


if __name__ == "__main__":
    main()
