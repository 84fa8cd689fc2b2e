"""What each part of hybrid retrieval is worth: ``kb eval --mode hybrid`` with one setting changed.

Runs the ``kb`` command of this checkout once per (variant, data set), with the variant's
``KB_*`` overrides in its environment, and prints a Markdown table: nDCG@10 after ranking for
BEIR sets, answer-recall@1 for QA sets. Every data set is ingested once into ``--data DIR/<name>``
and reused, so a full run costs the queries only (about 25 s per cell on 2 cores).

Usage:
  .venv/bin/python bench/ablations.py --data /tmp/kb-ablations \\
      ../shared/datasets/msmarco ../shared/datasets/dbpedia tests/data/eval/en-kb \\
      tests/data/eval/de-kb tests/data/eval/ru-kb \\
      bench/data/pg-essays-qa=../shared/corpora/pg-essays

A QA set whose documents live elsewhere is given as QUESTIONS_DIR=DOCS_DIR. Not a test: nothing
here asserts; the figures go to docs/evaluation.md with this command.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

__all__: list[str] = []

VARIANTS: dict[str, dict[str, str]] = {
    "default": {},
    "no lexical expansion": {"KB_RETRIEVAL__EXPANSION_TERMS": "0"},
    "expand long questions too": {"KB_RETRIEVAL__EXPANSION_MAX_QUESTION_TERMS": "100"},
    "no length-dependent weight": {"KB_RETRIEVAL__LONG_QUESTION_DENSE_WEIGHT": "0.9"},
    "no readability-dependent weight": {"KB_RETRIEVAL__OPAQUE_DENSE_WEIGHT": "0.9"},
    "no query-dependent weight (fixed 0.9)": {"KB_RETRIEVAL__ADAPTIVE_WEIGHTING": "false"},
    "no dense feedback": {"KB_RETRIEVAL__FEEDBACK_DOCS": "0"},
    "MMR 0.75, duplicates at 0.95 (before)": {
        "KB_RANKING__MMR_LAMBDA": "0.75",
        "KB_RANKING__DUPLICATE_THRESHOLD": "0.95",
    },
    "reciprocal-rank fusion": {"KB_RETRIEVAL__FUSION": "rrf"},
    "distribution-based score fusion": {"KB_RETRIEVAL__FUSION": "dbsf"},
}
KB = Path(sys.executable).with_name("kb")


def run(dataset: str, docs: str | None, data: Path, overrides: dict[str, str]) -> float:
    command = [str(KB), "eval", dataset, "--mode", "hybrid", "--json", "--keep-data", str(data)]
    if docs:
        command += ["--docs", docs]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error", **overrides}
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    report = json.loads(done.stdout)
    return report["ndcg@10"] if report["kind"] == "beir" else report["answer_recall"]["@1"]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("datasets", nargs="+", help="DATASET_DIR, or QUESTIONS_DIR=DOCS_DIR for a QA set")
    parser.add_argument("--data", type=Path, required=True, help="folder for the reusable stores")
    parser.add_argument("--variants", help="comma-separated subset of: " + ", ".join(VARIANTS))
    args = parser.parse_args()

    chosen = args.variants.split(",") if args.variants else list(VARIANTS)
    sets = [(spec.partition("=")[0], spec.partition("=")[2] or None) for spec in args.datasets]
    names = [Path(path).resolve().name for path, _ in sets]
    print("| variant | " + " | ".join(names) + " |")
    print("| --- |" + " --- |" * len(names))
    for variant in chosen:
        cells = [
            f"{run(path, docs, args.data / name, VARIANTS[variant]):.3f}"
            for (path, docs), name in zip(sets, names, strict=True)
        ]
        print(f"| {variant} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
