"""Ingestion throughput against raw ``encode`` of the same chunks, per ``embedding.backend``.

    .venv/bin/python bench/bench_ingest.py ../shared/corpora/pg-essays --out .bench/ingest.json

For each backend (``--backends``, default all three): ingests the folder (or its first
``--files`` files) into a fresh embedded store in a temp dir, then encodes exactly the texts
that were embedded, with the same embedder and the same batches (``ingest.encode_batch_size``),
and reports both rates and their ratio (target >= 0.95: ingestion exists to feed the model, so
the ratio says how much of its time is anything else). Then each backend's ingestion rate
against torch's, and the configured backend's (``embedding.backend``) among them. ONNX exports
are made once in the configured data folder (``--data``), never in the temp store.

JSON on stdout (and ``--out``), a table on stderr; the load average is recorded with it.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from report import emit

from app.config import load_settings
from app.embedding import Embedder, build_embedder
from app.records import ChunkRecord
from app.store import open_store
from ingest.runner import Ingestor

BACKENDS = ("torch", "onnx", "onnx-int8")


def chunk_texts(store) -> list[str]:  # type: ignore[no-untyped-def]
    """The embedding texts of every chunk in the store, as ingestion built them."""
    texts: list[str] = []
    offset = None
    while True:
        points, offset = store.client.scroll(store.collection, limit=1024, offset=offset, with_payload=True)
        texts.extend(
            ChunkRecord(
                **{k: v for k, v in p.payload.items() if k in ChunkRecord.__struct_fields__}
            ).embedding_text()
            for p in points
        )
        if offset is None:
            return texts


def run(backend: str, embedder: Embedder, paths: list[Path], environ: dict[str, str]) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="kb-bench-ingest-") as tmp:
        settings = load_settings(environ={**environ, "KB_DATA_DIR": tmp, "KB_EMBEDDING__BACKEND": backend})
        store = open_store(settings)
        try:
            report = Ingestor(
                store, embedder, chunking=settings.chunking, ingest=settings.ingest
            ).ingest_paths(paths)
            texts = chunk_texts(store)
        finally:
            store.close()
    # Same call ingestion makes: the runner's batches of ingest.encode_batch_size.
    step = settings.ingest.encode_batch_size
    started = time.perf_counter()
    for start in range(0, len(texts), step):
        embedder.embed(texts[start : start + step])
    raw_seconds = time.perf_counter() - started
    raw_rate = len(texts) / raw_seconds
    return {
        "model_name": embedder.model_name,
        "files": report.files_seen,
        "chunks": report.chunks_written,
        "ingest_seconds": report.seconds,
        "ingest_chunks_per_second": report.chunks_per_second,
        "raw_encode_seconds": round(raw_seconds, 3),
        "raw_chunks_per_second": round(raw_rate, 1),
        "ratio": round(report.chunks_per_second / raw_rate, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folder", type=Path, nargs="?", default=Path("../shared/corpora/pg-essays"))
    parser.add_argument("--files", type=int, default=0, help="only the first N files (by name); 0: all")
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument(
        "--data", type=Path, default=None, help="data folder for the exports (default: data_dir)"
    )
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    backends = [b for b in args.backends.split(",") if b]
    environ = dict(os.environ)
    if args.data is not None:
        environ["KB_DATA_DIR"] = str(args.data)
    configured = load_settings(environ=environ).embedding.backend
    files = sorted(p for p in args.folder.rglob("*") if p.is_file())
    paths = files[: args.files] if args.files else [args.folder]

    load_before = os.getloadavg()
    results: dict[str, dict[str, object]] = {}
    for backend in backends:
        embedder = build_embedder(load_settings(environ={**environ, "KB_EMBEDDING__BACKEND": backend}))
        embedder.embed(["warm up"] * 8)
        results[backend] = run(backend, embedder, paths, environ)
        del embedder
    load_after = os.getloadavg()
    if "torch" in results:
        torch_rate = float(results["torch"]["ingest_chunks_per_second"])  # type: ignore[arg-type]
        for row in results.values():
            row["ingest_vs_torch"] = round(float(row["ingest_chunks_per_second"]) / torch_rate, 2)  # type: ignore[arg-type]

    report = {
        "folder": str(args.folder),
        "files_limit": args.files or None,
        "configured_backend": configured,
        "cpu_count": os.cpu_count(),
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in load_after],
        "backends": results,
    }
    emit(report, args.out)
    print(
        f"{args.folder} ({args.files or 'all'} files), configured backend {configured}, "
        f"load {load_before[0]:.1f} -> {load_after[0]:.1f}",
        file=sys.stderr,
    )
    print(
        f"{'backend':<10} {'chunks':>7} {'ingest/s':>9} {'raw/s':>8} {'ratio':>6} {'x torch':>8}",
        file=sys.stderr,
    )
    for backend, row in results.items():
        print(
            f"{backend:<10} {row['chunks']:>7} {row['ingest_chunks_per_second']:>9} "
            f"{row['raw_chunks_per_second']:>8} {row['ratio']:>6} {row.get('ingest_vs_torch', '-'):>8}",
            file=sys.stderr,
        )


if __name__ == "__main__":
    main()
