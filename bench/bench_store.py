"""The embedded store at size: Qdrant Edge exact vs HNSW, and qdrant-client's local mode beside it.

    .venv/bin/python bench/bench_store.py --sizes 5000,20000 --ef 64,128,256

Real chunks: the corpus (default ../shared/corpora/pg-essays) is ingested once with the
configured model (real embeddings, real BM25 vectors; cached in --cache), then repeated with
small perturbations (dense: noise of norm ~0.3 then renormalised, cosine ~0.96 to the original;
sparse: one term dropped) up to each size. Queries are the first sentence of random chunks,
embedded and BM25-encoded as the retriever does, searched with the tenant filter every
retrieval carries. For each size it reports Edge upsert points/s, exact search p50/p95 (dense,
sparse, both in one call as retrieval makes it), the HNSW build time (``optimize``), HNSW
latency and recall@10 against exact per ``ef``, disk, and local mode's latencies up to
--local-max points with the ratios local/Edge. JSON on stdout (and --out), a table on stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import numpy as np
from qdrant_client import QdrantClient, models

from app.config import load_settings
from app.embedding import SentenceTransformerEmbedder
from app.records import SparseTerms
from app.retrieval.bm25 import LexicalEncoder
from app.store import DEFAULT_TENANT, DENSE, SPARSE, QdrantStore, filter_for, open_store
from app.store.edge import EdgeClient, EdgeIndexing
from ingest.runner import Ingestor

Base = dict[str, Any]


def build_base(corpus: Path, cache: Path, queries: int) -> Base:
    if cache.exists():
        with cache.open("rb") as fh:
            found: Base = pickle.load(fh)
        if len(found["queries"]) >= queries:
            return found
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(environ={"KB_DATA_DIR": tmp})
        embedder = SentenceTransformerEmbedder(settings.embedding)
        store = open_store(settings)
        started = time.perf_counter()
        Ingestor(store, embedder, chunking=settings.chunking, ingest=settings.ingest).ingest_paths([corpus])
        ingest_s = time.perf_counter() - started
        dense, sparse, payloads = [], [], []
        offset = None
        while True:
            points, offset = store.client.scroll(
                store.collection, limit=1024, offset=offset, with_payload=True, with_vectors=True
            )
            for p in points:
                vec = p.vector
                assert isinstance(vec, dict)
                dense.append(np.asarray(vec[DENSE], dtype=np.float32))
                sv = vec[SPARSE]
                assert isinstance(sv, models.SparseVector)
                sparse.append((list(sv.indices), list(sv.values)))
                payloads.append(p.payload or {})
            if offset is None:
                break
        store.close()
        rng = random.Random(7)
        picked = rng.sample(range(len(payloads)), queries)
        texts = [str(payloads[i]["text"]).split(". ")[0][:300] for i in picked]
        qdense = embedder.embed(texts)
        lexical = LexicalEncoder()
        qsparse = [lexical.encode_query(t) for t in texts]
    base: Base = {
        "dense": np.stack(dense),
        "sparse": sparse,
        "payloads": payloads,
        "queries": [(qdense[i], (qsparse[i].indices, qsparse[i].values)) for i in range(queries)],
        "ingest_s": ingest_s,
    }
    cache.parent.mkdir(parents=True, exist_ok=True)
    with cache.open("wb") as fh:
        pickle.dump(base, fh)
    return base


def points_for(base: Base, size: int) -> list[models.PointStruct]:
    rng = np.random.default_rng(11)
    dense, sparse, payloads = base["dense"], base["sparse"], base["payloads"]
    n, dim = dense.shape
    out = []
    for i in range(size):
        j, copy = i % n, i // n
        vec = dense[j]
        indices, values = sparse[j]
        if copy:
            vec = vec + rng.normal(0.0, 0.3 / np.sqrt(dim), size=dim).astype(np.float32)
            vec = vec / np.linalg.norm(vec)
            drop = int(rng.integers(len(indices))) if len(indices) > 1 else -1
            indices = [x for k, x in enumerate(indices) if k != drop]
            values = [x for k, x in enumerate(values) if k != drop]
        pid = str(uuid.uuid5(uuid.NAMESPACE_OID, f"bench/{i}"))
        payload = dict(payloads[j], point_id=pid)
        out.append(
            models.PointStruct(
                id=pid,
                vector={DENSE: vec.tolist(), SPARSE: models.SparseVector(indices=indices, values=values)},
                payload=payload,
            )
        )
    return out


def load(store: QdrantStore, points: list[models.PointStruct], dim: int) -> float:
    store.ensure_collection(model_name="bench", dimension=dim)
    started = time.perf_counter()
    for start in range(0, len(points), 256):
        store.client.upsert(store.collection, points=points[start : start + 256], wait=True)
    return len(points) / (time.perf_counter() - started)


Hits = list[list[tuple[str, float]]]


def timed(store: QdrantStore, queries: list[Any], kind: str) -> tuple[dict[str, float], Hits]:
    flt = filter_for(None, tenant=DEFAULT_TENANT)
    latencies, results = [], []
    for qd, (si, sv) in queries:
        dense = qd if kind in ("dense", "hybrid") else None
        sparse = SparseTerms(list(si), list(sv)) if kind in ("sparse", "hybrid") else None
        started = time.perf_counter()
        hits, lexical = store.search(dense=dense, sparse=sparse, limit=10, query_filter=flt)
        latencies.append((time.perf_counter() - started) * 1000)
        results.append([(h.record.point_id, h.score) for h in (hits if kind != "sparse" else lexical)])
    latencies.sort()
    p95 = latencies[min(len(latencies) - 1, round(0.95 * (len(latencies) - 1)))]
    return {"p50_ms": round(statistics.median(latencies), 2), "p95_ms": round(p95, 2)}, results


def recall(found: Hits, truth: Hits) -> float:
    """Tie-aware recall@10: a hit counts when it is one of the true top 10 or scores as high as
    the 10th of them (perturbed copies share BM25 scores exactly, and which of equals is returned
    at the cut is arbitrary)."""

    def one(f: list[tuple[str, float]], t: list[tuple[str, float]]) -> float:
        if not t:
            return 1.0
        ids, kth = {pid for pid, _ in t}, t[-1][1]
        return sum(1 for pid, score in f if pid in ids or score >= kth - 1e-5) / len(t)

    return round(statistics.mean(one(f, t) for f, t in zip(found, truth, strict=True)), 4)


def disk_mb(path: Path) -> float:
    out = subprocess.run(["du", "-sk", str(path)], capture_output=True, text=True, check=False).stdout
    return round(int(out.split()[0]) / 1024, 1) if out else 0.0


def run_size(
    base: Base, size: int, efs: list[int], local_max: int, local_queries: int, tmp: Path
) -> dict[str, Any]:
    queries = base["queries"]
    dim = base["dense"].shape[1]
    points = points_for(base, size)
    row: dict[str, Any] = {"size": size}
    # Index every size here, so HNSW can be measured where kb itself would still search exactly.
    edge = QdrantStore(
        EdgeClient(tmp / f"edge-{size}", indexing=EdgeIndexing(exact_search_points=1000)), "kb"
    )
    row["edge_upsert_points_per_s"] = round(load(edge, points, dim))
    exact: dict[str, Hits] = {}
    for kind in ("dense", "sparse", "hybrid"):
        row[f"edge_exact_{kind}"], exact[kind] = timed(edge, queries, kind)
    row["edge_disk_mb_plain"] = disk_mb(tmp / f"edge-{size}")
    started = time.perf_counter()
    edge.optimize()
    row["edge_hnsw_build_s"] = round(time.perf_counter() - started, 1)
    info = edge.client.get_collection("kb")
    row["edge_indexed_vectors"] = info.indexed_vectors_count
    row["edge_disk_mb_indexed"] = disk_mb(tmp / f"edge-{size}")
    for ef in efs:
        edge._params = models.SearchParams(hnsw_ef=ef)
        stats, found = timed(edge, queries, "dense")
        row[f"edge_hnsw_ef{ef}_dense"] = stats | {"recall@10": recall(found, exact["dense"])}
        stats, found = timed(edge, queries, "hybrid")
        row[f"edge_hnsw_ef{ef}_hybrid"] = stats
    stats, found = timed(edge, queries, "sparse")
    row["edge_indexed_sparse_recall@10"] = recall(found, exact["sparse"])
    edge.close()
    if size <= local_max:
        local = QdrantStore(QdrantClient(path=str(tmp / f"local-{size}")), "kb")
        started = time.perf_counter()
        local.ensure_collection(model_name="bench", dimension=dim)
        for start in range(0, len(points), 256):
            local.client.upsert(local.collection, points=points[start : start + 256], wait=True)
        row["local_upsert_points_per_s"] = round(size / (time.perf_counter() - started))
        some = queries[:local_queries]
        for kind in ("dense", "sparse", "hybrid"):
            stats, found = timed(local, some, kind)
            row[f"local_{kind}"] = stats
            row[f"local_{kind}_same_top10_as_edge_exact"] = recall(found, exact[kind][: len(some)])
            row[f"ratio_local_over_edge_{kind}_p50"] = round(
                stats["p50_ms"] / max(row[f"edge_exact_{kind}"]["p50_ms"], 1e-3), 1
            )
        local.close()
    return row


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--corpus", type=Path, default=Path("../shared/corpora/pg-essays"))
    parser.add_argument(
        "--cache", type=Path, default=Path(tempfile.gettempdir()) / "kb-bench-store" / "pg.pkl"
    )
    parser.add_argument("--sizes", default="5000,20000")
    parser.add_argument("--ef", default="64,128,256")
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--local-max", type=int, default=20000, help="largest size local mode is measured at")
    parser.add_argument("--local-queries", type=int, default=10)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    command = " ".join([".venv/bin/python", *sys.argv])
    base = build_base(args.corpus, args.cache, args.queries)
    sizes = [int(s) for s in args.sizes.split(",")]
    efs = [int(e) for e in args.ef.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in sizes:
            rows.append(run_size(base, size, efs, args.local_max, args.local_queries, Path(tmp)))
            print(json.dumps(rows[-1]), file=sys.stderr)
    result = {
        "command": command,
        "corpus_chunks": int(base["dense"].shape[0]),
        "queries": args.queries,
        "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "rows": rows,
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    print(f"\n{command}", file=sys.stderr)
    header = f"{'size':>7} {'exact dense':>11} {'exact sparse':>12} {'exact hybrid':>12} {'build s':>8}"
    header += (
        "".join(f" {'ef' + str(e) + ' ms/recall':>16}" for e in efs) + f" {'local hybrid':>12} {'ratio':>6}"
    )
    print(header, file=sys.stderr)
    for r in rows:
        line = f"{r['size']:>7} {r['edge_exact_dense']['p50_ms']:>11} {r['edge_exact_sparse']['p50_ms']:>12} "
        line += f"{r['edge_exact_hybrid']['p50_ms']:>12} {r['edge_hnsw_build_s']:>8}"
        for e in efs:
            d = r[f"edge_hnsw_ef{e}_dense"]
            line += f" {str(d['p50_ms']) + '/' + str(d['recall@10']):>16}"
        line += f" {r.get('local_hybrid', {}).get('p50_ms', '-'):>12} {r.get('ratio_local_over_edge_hybrid_p50', '-'):>6}"
        print(line, file=sys.stderr)


if __name__ == "__main__":
    main()
