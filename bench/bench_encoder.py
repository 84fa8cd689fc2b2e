"""Encoder throughput, single-query latency and fidelity per ``embedding.backend``.

    .venv/bin/python bench/bench_encoder.py --out .bench/encoder.json

Real paragraphs of ``../shared/corpora/pg-essays`` (``--paragraphs``, longest-first batches of
``embedding.batch_size``, as ingestion hands them over) are encoded by each backend in turn,
``--rounds`` times, interleaved so that the shared machine's load falls on all of them alike;
the median round counts. Each measurement runs in a process of its own, as a backend runs in
the service (one runtime's thread pool, not two). Single-query latency is one
``embed([question])`` call per real question (msmarco's queries), p50/p95, made from a worker
thread as the service makes it (on the main thread torch's single-text calls were many times
slower on this loaded machine). Fidelity: the cosine of each backend's vector to torch fp32's
for the same paragraph (mean, min). ONNX exports are made (once) in ``--data``/models, the
configured data folder by default, so later rounds measure only the encoding.

JSON on stdout (and ``--out``), a table on stderr; the load average is recorded with it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np
from report import emit

from app.config import load_settings
from app.embedding import Embedder, build_embedder

BACKENDS = ("torch", "onnx", "onnx-int8")
ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "corpora" / "pg-essays"
QUERIES = ROOT.parent / "shared" / "datasets" / "msmarco" / "queries.jsonl"


def paragraphs(folder: Path, count: int) -> list[str]:
    """The first ``count`` paragraphs of at least 40 words, essay by essay (sorted by name)."""
    found: list[str] = []
    for path in sorted(folder.glob("*.md")):
        for block in re.split(r"\n\s*\n", path.read_text(encoding="utf-8", errors="replace")):
            text = " ".join(block.split())
            if len(text.split()) >= 40 and not text.startswith("#"):
                found.append(text)
                if len(found) == count:
                    return found
    return found


def questions(path: Path, count: int) -> list[str]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [row["text"] for row in rows[:count]]


def encode_seconds(embedder: Embedder, texts: list[str]) -> tuple[float, np.ndarray]:
    started = time.perf_counter()
    vectors = embedder.embed(texts)  # batches of embedding.batch_size inside, longest first
    return time.perf_counter() - started, vectors


def query_latencies_ms(embedder: Embedder, texts: list[str]) -> list[float]:
    out = []
    for text in texts:
        started = time.perf_counter()
        embedder.embed([text])
        out.append((time.perf_counter() - started) * 1000)
    return out


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def measure(backend: str, texts: list[str], asked: list[str], environ: dict[str, str], out: Path) -> None:
    """One round of one backend (``--worker``): timings to ``out``.json, vectors to ``out``.npy."""
    settings = load_settings(environ={**environ, "KB_EMBEDDING__BACKEND": backend})
    started = time.perf_counter()
    embedder = build_embedder(settings)  # exports on the first run only
    build = time.perf_counter() - started
    embedder.embed(texts[:8])  # first calls allocate; not part of the figure
    spent, vectors = encode_seconds(embedder, texts)
    # From a worker thread, as the service embeds questions (retrieval pool, micro-batcher): on
    # the main thread torch's single-text calls are many times slower under load.
    with ThreadPoolExecutor(max_workers=1) as pool:
        latencies = pool.submit(query_latencies_ms, embedder, asked).result()
    np.save(out.with_suffix(".npy"), vectors)
    out.with_suffix(".json").write_text(
        json.dumps({"model_name": embedder.model_name, "build": build, "encode": spent, "queries": latencies})
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    parser.add_argument("--paragraphs", type=int, default=300)
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument(
        "--data", type=Path, default=None, help="data folder for the exports (default: data_dir)"
    )
    parser.add_argument("--out", type=Path)
    parser.add_argument("--worker", nargs=2, metavar=("BACKEND", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    backends = [b for b in args.backends.split(",") if b]
    if "torch" not in backends:
        raise SystemExit("torch is the reference: keep it in --backends")

    texts = paragraphs(args.corpus, args.paragraphs)
    asked = questions(QUERIES, args.queries)
    environ = dict(os.environ)
    if args.data is not None:
        environ["KB_DATA_DIR"] = str(args.data)
    if args.worker:
        measure(args.worker[0], texts, asked, environ, Path(args.worker[1]))
        return

    load_before = os.getloadavg()
    # The first process of each backend makes its export; its build time is reported apart.
    seconds: dict[str, list[float]] = {b: [] for b in backends}
    latencies: dict[str, list[float]] = {b: [] for b in backends}
    build_s: dict[str, list[float]] = {b: [] for b in backends}
    vectors: dict[str, np.ndarray] = {}
    names: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="kb-bench-encoder-") as tmp:
        for round_ in range(args.rounds):
            for backend in backends:
                out = Path(tmp) / f"{backend}-{round_}"
                command = [sys.executable, __file__, "--worker", backend, str(out)]
                command += ["--corpus", str(args.corpus), "--paragraphs", str(args.paragraphs)]
                command += ["--queries", str(args.queries)]
                if args.data is not None:
                    command += ["--data", str(args.data)]
                subprocess.run(command, check=True, timeout=1800, env=environ)
                got = json.loads(out.with_suffix(".json").read_text())
                seconds[backend].append(got["encode"])
                latencies[backend].extend(got["queries"])
                build_s[backend].append(got["build"])
                names[backend] = got["model_name"]
                vectors[backend] = np.load(out.with_suffix(".npy"))
    load_after = os.getloadavg()

    reference = vectors["torch"]
    results = {}
    for backend in backends:
        median = statistics.median(seconds[backend])
        row = {
            "model_name": names[backend],
            "build_seconds_first": round(build_s[backend][0], 2),
            "build_seconds_later_median": round(
                statistics.median(build_s[backend][1:] or build_s[backend]), 2
            ),
            "encode_seconds_median": round(median, 3),
            "encode_seconds_rounds": [round(s, 3) for s in seconds[backend]],
            "paragraphs_per_second": round(len(texts) / median, 1),
            "query_ms_p50": round(percentile(latencies[backend], 50), 2),
            "query_ms_p95": round(percentile(latencies[backend], 95), 2),
        }
        cosine = np.sum(vectors[backend] * reference, axis=1)
        row["cosine_to_torch_mean"] = round(float(cosine.mean()), 4)
        row["cosine_to_torch_min"] = round(float(cosine.min()), 4)
        results[backend] = row
    torch_row = results["torch"]
    for row in results.values():
        row["encode_speedup_vs_torch"] = round(
            torch_row["encode_seconds_median"] / row["encode_seconds_median"], 2
        )
        row["query_speedup_vs_torch"] = round(torch_row["query_ms_p50"] / row["query_ms_p50"], 2)

    report = {
        "paragraphs": len(texts),
        "paragraph_words_mean": round(statistics.mean(len(t.split()) for t in texts), 1),
        "queries": len(asked),
        "rounds": args.rounds,
        "batch_size": load_settings(environ=environ).embedding.batch_size,
        "cpu_count": os.cpu_count(),
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in load_after],
        "backends": results,
    }
    emit(report, args.out)
    print(
        f"{len(texts)} paragraphs (mean {report['paragraph_words_mean']} words), {len(asked)} queries, "
        f"{args.rounds} rounds, load {load_before[0]:.1f} -> {load_after[0]:.1f}",
        file=sys.stderr,
    )
    print(
        f"{'backend':<10} {'para/s':>8} {'x torch':>8} {'q p50 ms':>9} {'q p95 ms':>9} {'x torch':>8} "
        f"{'cos mean':>9} {'cos min':>8}",
        file=sys.stderr,
    )
    for backend, row in results.items():
        print(
            f"{backend:<10} {row['paragraphs_per_second']:>8} {row['encode_speedup_vs_torch']:>8} "
            f"{row['query_ms_p50']:>9} {row['query_ms_p95']:>9} {row['query_speedup_vs_torch']:>8} "
            f"{row['cosine_to_torch_mean']:>9} {row['cosine_to_torch_min']:>8}",
            file=sys.stderr,
        )


if __name__ == "__main__":
    main()
