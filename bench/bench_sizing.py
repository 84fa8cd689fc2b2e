"""Memory and disk per million chunks on a Qdrant server, from a real collection's own figures.

    .venv/bin/python bench/bench_sizing.py --corpus docs --out /tmp/bench_sizing.json
    .venv/bin/python bench/bench_sizing.py --corpus ../shared/corpora/pg-essays --max-files 60

The corpus is ingested with the configured model and chunking into a temporary embedded store
(the real ``Ingestor``, the real BM25 vectors); every point is then read back to measure what a
chunk is: the dense vector's dimension (from the collection's configuration), the sparse
vector's non-zero terms, the payload's bytes (as JSON, which is close to what Qdrant stores),
and the bytes of the values of the indexed payload fields. The embedded store's folder size is
reported too; on a small corpus it is mostly space the engine reserves up front (write-ahead log,
segment files), so it is not divided per point.

From those, per chunk, with Qdrant's storage layout (``store.cluster`` picks the case):

* dense vector: dimension × 4 bytes (float32); with int8 scalar quantization, dimension × 1
  more (the quantized copy; the originals stay, on disk with ``on_disk_vectors``);
* HNSW graph: up to 2 × ``store.hnsw_m`` links of 4 bytes on the base layer, and about 1/m of
  that again on the upper layers;
* sparse vector: non-zeros × 8 bytes (index + weight) in the vector storage, and as much again
  in the inverted index that searches it;
* payload: its JSON bytes; payload indexes: the indexed values' bytes plus 8 bytes per value;
* ids and versions: 16-byte UUID, 8-byte version, 8 bytes of mapping.

RAM per million chunks is given for three layouts: the defaults (``on_disk_payload = true``:
payload and sparse vector storage on disk; dense vectors, graph, inverted index and payload
indexes in RAM); int8 quantization with the originals on disk (``quantization = "int8"``,
``on_disk_vectors = true``: the quantized copy in RAM, the originals read to rescore); and
everything in RAM. These are computed, per replica: a replication factor of 2 doubles the
cluster's total. JSON on stdout (and --out), a table on stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from qdrant_client import models
from report import emit

from app.config import load_settings
from app.embedding import SentenceTransformerEmbedder
from app.store import open_store
from app.store.qdrant import DENSE, SPARSE
from ingest.runner import Ingestor

__all__: list[str] = []

MILLION = 1_000_000
GB = 1e9
# The payload fields kb indexes on a server (app.store.qdrant._INDEXES).
INDEXED = ("doc_id", "source", "path_prefixes", "tenant")
ID_BYTES = 16 + 8 + 8


def measure_collection(corpus: Path, max_files: int | None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="kb-bench-sizing-") as tmp:
        settings = load_settings(environ={"KB_DATA_DIR": tmp})
        embedder = SentenceTransformerEmbedder(settings.embedding)
        store = open_store(settings)
        paths: list[Path] = [corpus]
        if max_files is not None:
            paths = sorted(p for p in corpus.rglob("*") if p.is_file())[:max_files]
        try:
            started = time.perf_counter()
            Ingestor(store, embedder, chunking=settings.chunking, ingest=settings.ingest).ingest_paths(paths)
            ingest_s = time.perf_counter() - started
            info = store.client.get_collection(store.collection)
            vectors = info.config.params.vectors
            assert isinstance(vectors, dict)
            dimension = vectors[DENSE].size
            points = nonzeros = payload_bytes = indexed_bytes = indexed_values = 0
            offset = None
            while True:
                batch, offset = store.client.scroll(
                    store.collection, limit=512, offset=offset, with_payload=True, with_vectors=[SPARSE]
                )
                for point in batch:
                    points += 1
                    vector = point.vector
                    assert isinstance(vector, dict) and isinstance(vector[SPARSE], models.SparseVector)
                    nonzeros += len(vector[SPARSE].indices)
                    payload = point.payload or {}
                    payload_bytes += len(
                        json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
                    )
                    for name in INDEXED:
                        value = payload.get(name)
                        for item in (
                            value if isinstance(value, list) else [value] if value is not None else []
                        ):
                            indexed_bytes += len(str(item).encode())
                            indexed_values += 1
                if offset is None:
                    break
        finally:
            store.close()
        disk = sum(p.stat().st_size for p in Path(tmp, "store").rglob("*") if p.is_file())
    return {
        "points": points,
        "dimension": dimension,
        "sparse_nonzeros_per_point": nonzeros / points,
        "payload_bytes_per_point": payload_bytes / points,
        "indexed_value_bytes_per_point": indexed_bytes / points,
        "indexed_values_per_point": indexed_values / points,
        "edge_disk_bytes": disk,
        "hnsw_m": settings.store.hnsw_m,
        "ingest_s": round(ingest_s, 1),
    }


def sizing(found: dict[str, Any]) -> dict[str, Any]:
    """Bytes per chunk of each part, and RAM/disk per million chunks for the three layouts."""
    m = found["hnsw_m"]
    part = {
        "dense_float32": found["dimension"] * 4,
        "dense_int8": found["dimension"] * 1,
        "hnsw_graph": 2 * m * 4 * (1 + 1 / m),
        "sparse_vectors": found["sparse_nonzeros_per_point"] * 8,
        "sparse_index": found["sparse_nonzeros_per_point"] * 8,
        "payload": found["payload_bytes_per_point"],
        "payload_indexes": found["indexed_value_bytes_per_point"] + 8 * found["indexed_values_per_point"],
        "ids_versions": ID_BYTES,
    }
    always_ram = part["hnsw_graph"] + part["sparse_index"] + part["payload_indexes"] + part["ids_versions"]
    layouts = {
        "defaults": {
            "ram": part["dense_float32"] + always_ram,
            "disk": part["dense_float32"] + part["sparse_vectors"] + part["payload"] + always_ram,
        },
        "int8_originals_on_disk": {
            "ram": part["dense_int8"] + always_ram,
            "disk": part["dense_float32"]
            + part["dense_int8"]
            + part["sparse_vectors"]
            + part["payload"]
            + always_ram,
        },
        "all_in_ram": {
            "ram": part["dense_float32"] + part["sparse_vectors"] + part["payload"] + always_ram,
            "disk": part["dense_float32"] + part["sparse_vectors"] + part["payload"] + always_ram,
        },
    }
    return {
        "bytes_per_chunk": {name: round(value, 1) for name, value in part.items()},
        "per_million_chunks_gb": {
            name: {kind: round(value * MILLION / GB, 2) for kind, value in sizes.items()}
            for name, sizes in layouts.items()
        },
    }


def table(result: dict[str, Any]) -> str:
    found = result["collection"]
    lines = [
        f"corpus {result['corpus']}: {found['points']} points, dimension {found['dimension']}, "
        f"{found['sparse_nonzeros_per_point']:.1f} sparse non-zeros, {found['payload_bytes_per_point']:.0f} "
        f"payload bytes per point",
        f"{'part':<20} {'bytes/chunk':>12}",
    ]
    lines += [f"{name:<20} {value:>12.1f}" for name, value in result["sizing"]["bytes_per_chunk"].items()]
    lines.append(f"{'layout':<26} {'RAM GB/M':>9} {'disk GB/M':>10}")
    for name, sizes in result["sizing"]["per_million_chunks_gb"].items():
        lines.append(f"{name:<26} {sizes['ram']:>9.2f} {sizes['disk']:>10.2f}")
    lines.append(f"embedded store folder: {found['edge_disk_bytes'] / 1e6:.1f} MB (mostly reserved up front)")
    lines.append(f"loadavg {tuple(round(x, 2) for x in result['loadavg'])}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=Path(__file__).resolve().parent.parent / "docs")
    parser.add_argument("--max-files", type=int, help="ingest only the first N files (sorted by path)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    found = measure_collection(args.corpus.resolve(), args.max_files)
    result = {
        "bench": "sizing",
        "loadavg": os.getloadavg(),
        "corpus": str(args.corpus),
        "max_files": args.max_files,
        "collection": found,
        "sizing": sizing(found),
    }
    emit(result, args.out)
    print(table(result), file=sys.stderr)


if __name__ == "__main__":
    main()
