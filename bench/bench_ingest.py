"""Ingestion throughput against raw ``SentenceTransformer.encode`` of the same chunks.

    .venv/bin/python bench/bench_ingest.py ../shared/corpora/pg-essays

Ingests the folder into a fresh embedded store (temp dir), then encodes exactly the texts that
were embedded, with the same model and batch size, and reports both rates and their ratio.
Ingestion exists to feed the model, so the ratio says how much of its time is anything else.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

from app.config import load_settings
from app.embedding import SentenceTransformerEmbedder
from app.records import ChunkRecord
from app.store import open_store
from ingest.runner import Ingestor


def main(folder: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(environ={"KB_DATA_DIR": tmp})
        embedder = SentenceTransformerEmbedder(settings.embedding)
        embedder.embed(["warm up"] * 8)
        store = open_store(settings)
        report = Ingestor(store, embedder, chunking=settings.chunking, ingest=settings.ingest).ingest_paths(
            [folder]
        )
        texts: list[str] = []
        offset = None
        while True:
            points, offset = store.client.scroll(
                store.collection, limit=1024, offset=offset, with_payload=True
            )
            texts.extend(
                ChunkRecord(**{k: v for k, v in p.payload.items() if k != "path_prefixes"}).embedding_text()
                for p in points
            )
            if offset is None:
                break
        store.close()
        # Same call ingestion makes: the runner's batches of ingest.encode_batch_size.
        step = settings.ingest.encode_batch_size
        started = time.perf_counter()
        for start in range(0, len(texts), step):
            embedder.embed(texts[start : start + step])
        raw_seconds = time.perf_counter() - started
    raw_rate = len(texts) / raw_seconds
    print(
        json.dumps(
            {
                "files": report.files_seen,
                "chunks": report.chunks_written,
                "ingest_seconds": report.seconds,
                "ingest_chunks_per_second": report.chunks_per_second,
                "raw_encode_seconds": round(raw_seconds, 3),
                "raw_chunks_per_second": round(raw_rate, 1),
                "ratio": round(report.chunks_per_second / raw_rate, 3),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/corpora/pg-essays"))
