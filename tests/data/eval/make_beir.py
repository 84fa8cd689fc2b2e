"""Write the BEIR files of a set from its TSV sources (kept next to them).

``*passages.tsv``: id, title, text.  ``*queries.tsv``: id, text, space-separated ``doc:grade``.
All files of each kind in the folder are read, in name order (hand-written and generated parts).
Usage: python tests/data/eval/make_beir.py tests/data/eval/de-kb
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

__all__: list[str] = []


def _lines(folder: Path, pattern: str) -> list[str]:
    return [line for path in sorted(folder.glob(pattern)) for line in path.read_text(encoding="utf-8").splitlines()]


def main(folder: Path) -> None:
    corpus, queries, qrels = [], [], ["query-id\tcorpus-id\tscore"]
    for line in _lines(folder, "*passages.tsv"):
        doc_id, title, text = line.split("\t")
        corpus.append(json.dumps({"_id": doc_id, "title": title, "text": text}, ensure_ascii=False))
    for line in _lines(folder, "*queries.tsv"):
        query_id, text, judged = line.split("\t")
        queries.append(json.dumps({"_id": query_id, "text": text}, ensure_ascii=False))
        qrels += [f"{query_id}\t{doc}\t{grade}" for doc, grade in (pair.split(":") for pair in judged.split())]
    (folder / "qrels").mkdir(exist_ok=True)
    (folder / "corpus.jsonl").write_text("\n".join(corpus) + "\n", encoding="utf-8")
    (folder / "queries.jsonl").write_text("\n".join(queries) + "\n", encoding="utf-8")
    (folder / "qrels" / "test.tsv").write_text("\n".join(qrels) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
