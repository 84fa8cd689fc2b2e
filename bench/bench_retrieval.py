"""Latency of retrieval per stage on a real BEIR set, through the service's own path.

Ingests DATASET_DIR once (or reuses ``--keep-data``), then asks every judged query ``--repeat``
times in each mode and prints p50/p95 per stage. "ranking" is what comes after the store answers:
fusion (weights, feedback) plus the ranking stage (floor, de-duplication, MMR, budget). Budget:
ranking p50 < 5 ms on 5,000 passages. "expand" (choosing lexical expansion terms, between the
dense and the lexical search; hybrid only) is reported on its own; "search" is both round trips.

Usage: .venv/bin/python bench/bench_retrieval.py /work/shared/datasets/msmarco \
           --keep-data /tmp/kb-bench/msmarco [--repeat 3] [--modes dense,lexical,hybrid] \
           [--fusion weighted|rrf|dbsf]

Not a test: timings depend on the machine and its load, so nothing here asserts.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import get_args

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.config import load_settings
from app.evaluation import load_beir, percentile
from app.evaluation.runner import EvalSession, eval_settings
from app.settings import FusionName

__all__: list[str] = []


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--keep-data", type=Path, required=True, help="store folder (reused when present)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--modes", default="dense,lexical,hybrid")
    parser.add_argument("--fusion", choices=get_args(FusionName), help="default: retrieval.fusion")
    args = parser.parse_args()

    dataset = load_beir(args.dataset)
    settings = eval_settings(load_settings(), args.keep_data, dataset.name)
    with EvalSession(settings) as session:
        report = session.ingest_beir(dataset)
        print(
            f"{dataset.name}: {len(dataset.corpus)} passages, {session.chunks} chunks "
            f"(ingest {report.seconds:.0f} s, {report.unchanged} unchanged)"
        )
        steps = ("embed", "search", "expand", "fuse", "rank")
        print(f"{'mode':8s} " + " ".join(f"{s:>13s}" for s in (*steps, "ranking")) + "   (p50/p95 ms)")
        for mode in args.modes.split(","):
            stages: dict[str, list[float]] = {stage: [] for stage in (*steps, "ranking")}
            for _ in range(args.repeat):
                for query in dataset.queries:
                    _, _, took = session.ask(query.text, mode, 10, fusion=args.fusion)
                    for stage in steps:
                        stages[stage].append(took[stage])
                    stages["ranking"].append(took["fuse"] + took["rank"])
            cells = [f"{percentile(v, 50):6.2f}/{percentile(v, 95):6.2f}" for v in stages.values()]
            print(f"{mode:8s} " + " ".join(f"{c:>13s}" for c in cells))


if __name__ == "__main__":
    main()
