"""Ingestion throughput against raw ``encode`` of the same chunks, per ``embedding.backend``.

    .venv/bin/python bench/bench_ingest.py ../shared/corpora/pg-essays --out .bench/ingest.json

The machine is shared and its load drifts, so ingestion and the raw encode it is compared with
are measured close together, in rounds, instead of one whole run after the other. The files
(the folder's, by name, or its first ``--files``) are split into rounds of ``--round-files``.
In each round, for each backend in turn (``--backends``, default all three, the first one
further along each round), the slice is first ingested, untimed, through the real ``Ingestor``
into a throwaway store with vectors that cost nothing, which yields exactly the texts ingestion
will embed, in its order. Then, timed and in alternating order (ingest first in even rounds, raw
first in odd ones, so a load that rises or falls within a round favours neither side):

* ``kb ingest`` of the slice: opening the backend's store, ``Ingestor.ingest_paths``, closing
  (flushing) the store, model load excluded (each backend has one fresh embedded store, kept
  across its rounds, as a corpus ingested in parts would be);
* raw ``encode``: the same texts, with the same embedder, in calls of
  ``ingest.encode_batch_size`` (the batch size ingestion promises the model).

The texts ingestion really embedded are checked against the captured ones, so the two sides
always encode the same chunks. A round's ``ratio`` is raw seconds over ingest seconds (ingest
rate over raw rate, target >= 0.95: ingestion exists to feed the model, so the ratio says how
much of its time is anything else); a backend's ``ratio`` is pooled over its rounds (total raw
seconds over total ingest seconds), with the median and range of the rounds' ratios, and the
pooled ratio of the quiet rounds alone. Each side also records this process's CPU seconds
(``cpu_ratio``: what the ratio would be if nothing ran in parallel, and far less sensitive to
other processes than wall time) and the cores other processes kept busy meanwhile (from
``/proc/stat``): a round is quiet when that stayed under ``QUIET_CORES`` on both sides. Each
backend's ingestion rate is compared with torch's over the same rounds (``ingest_vs_torch``),
and over the rounds quiet for both (``ingest_vs_torch_quiet``).

``--max-seconds`` bounds the whole command: no round starts unless the longest round so far would
still finish within it (the first always runs), so a slow machine gives fewer files rather than a
run that never ends; the files a backend's figures cover are in its ``files``. ONNX exports are
made once in the configured data folder (``--data``), never in the temp stores.

JSON on stdout (and ``--out``), a table on stderr; the load average is recorded per round.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np
from report import emit

from app.config import load_settings
from app.embedding import Embedder, build_embedder
from app.settings import Settings
from app.store import open_store
from ingest.runner import Ingestor

BACKENDS = ("torch", "onnx", "onnx-int8")


class _Recording:
    """The embedder ingestion is given: the real one, remembering every text it is asked to embed."""

    def __init__(self, embedder: Embedder) -> None:
        self.inner = embedder
        self.model_name = embedder.model_name
        self.dimension = embedder.dimension
        self.max_tokens = embedder.max_tokens
        self.texts: list[str] = []
        if hasattr(embedder, "ids"):
            # Only an embedder that gives token ids may look like one to chunking.
            self.ids = embedder.ids

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.texts.extend(texts)
        return self.inner.embed(texts)

    def embed_ids(self, texts: Sequence[str], token_ids: Sequence[Sequence[int] | None]) -> np.ndarray:
        # Ingestion hands the ids chunking counted with to an embedder that takes them, as it
        # would to the real one; one that does not gets the texts alone.
        self.texts.extend(texts)
        inner = getattr(self.inner, "embed_ids", None)
        return inner(texts, token_ids) if inner is not None else self.inner.embed(texts)

    def count(self, text: str) -> int:
        return self.inner.count(text)

    def offsets(self, text: str) -> list[tuple[int, int]]:
        return self.inner.offsets(text)

    def take(self) -> list[str]:
        texts, self.texts = self.texts, []
        return texts


class _Capturing(_Recording):
    """Chunks with the real tokenizer but returns a fixed unit vector instead of running the model:
    what a throwaway ingestion needs to reveal the texts the real one will embed."""

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.texts.extend(texts)
        vectors = np.zeros((len(texts), self.dimension), dtype=np.float32)
        vectors[:, 0] = 1.0
        return vectors

    def embed_ids(self, texts: Sequence[str], token_ids: Sequence[Sequence[int] | None]) -> np.ndarray:
        return self.embed(texts)


class _Segment:
    """Wall seconds, this process's CPU seconds (all threads), and the cores other processes kept
    busy meanwhile (from ``/proc/stat``; ``None`` where it cannot be read), over a ``with`` block."""

    def __init__(self) -> None:
        self.wall = self.cpu = 0.0
        self.other_cores: float | None = None

    def __enter__(self) -> _Segment:
        self._busy, self._cpu, self._wall = _machine_busy(), time.process_time(), time.perf_counter()
        return self

    def __exit__(self, *_: object) -> None:
        self.wall = time.perf_counter() - self._wall
        self.cpu = time.process_time() - self._cpu
        busy = _machine_busy()
        if busy is not None and self._busy is not None and self.wall > 0:
            self.other_cores = max(0.0, (busy - self._busy - self.cpu) / self.wall)


def _machine_busy() -> float | None:
    """CPU seconds every process of the machine has used since boot, or ``None`` off Linux."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return None
    # user nice system idle iowait irq softirq steal: all but idle and iowait are busy.
    ticks = [int(x) for x in fields[:8]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def _ingest(settings: Settings, embedder: Embedder, paths: list[Path]) -> tuple[int, _Segment]:
    """Chunks written by one ``kb ingest`` of ``paths`` into ``settings``' store, and its time:
    opening the store, the run, and closing it (which flushes it), as the command does."""
    with _Segment() as segment:
        store = open_store(settings)
        try:
            report = Ingestor(
                store, embedder, chunking=settings.chunking, ingest=settings.ingest
            ).ingest_paths(paths)
        finally:
            store.close()
    if report.failed or report.interrupted:
        raise SystemExit(f"ingestion failed: {report.failed or 'interrupted'}")
    return report.chunks_written, segment


def _raw(embedder: Embedder, texts: list[str], step: int) -> _Segment:
    """The time of encoding ``texts`` in calls of ``step``, as ingestion calls the model."""
    with _Segment() as segment:
        for start in range(0, len(texts), step):
            embedder.embed(texts[start : start + step])
    return segment


def _round(
    index: int, paths: list[Path], embedder: Embedder, settings: Settings, environ: dict[str, str]
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="kb-bench-capture-") as scratch:
        capture = _Capturing(embedder)
        _ingest(load_settings(environ={**environ, "KB_DATA_DIR": scratch}), capture, paths)
        texts = capture.take()
    recording = _Recording(embedder)
    step = settings.ingest.encode_batch_size
    load_before = os.getloadavg()[0]
    if index % 2 == 0:
        chunks, ingest = _ingest(settings, recording, paths)
        raw = _raw(embedder, texts, step)
    else:
        raw = _raw(embedder, texts, step)
        chunks, ingest = _ingest(settings, recording, paths)
    load_after = os.getloadavg()[0]
    if recording.take() != texts or chunks != len(texts):
        raise SystemExit(f"round {index}: ingestion embedded other texts than the captured ones")
    return {
        "round": index,
        "order": "ingest,raw" if index % 2 == 0 else "raw,ingest",
        "files": len(paths),
        "chunks": chunks,
        "ingest_seconds": round(ingest.wall, 3),
        "raw_encode_seconds": round(raw.wall, 3),
        "ingest_chunks_per_second": round(chunks / ingest.wall, 1),
        "raw_chunks_per_second": round(chunks / raw.wall, 1),
        "ratio": round(raw.wall / ingest.wall, 3),
        "ingest_cpu_seconds": round(ingest.cpu, 3),
        "raw_encode_cpu_seconds": round(raw.cpu, 3),
        "cpu_ratio": round(raw.cpu / ingest.cpu, 3),
        "other_cores_ingest": _rounded(ingest.other_cores),
        "other_cores_raw": _rounded(raw.other_cores),
        "load1_before": round(load_before, 2),
        "load1_after": round(load_after, 2),
    }


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def run(
    embedders: dict[str, Embedder],
    rounds: list[list[Path]],
    environ: dict[str, str],
    *,
    budget_s: float,
    data: Path,
) -> dict[str, dict[str, Any]]:
    """Every round that fits ``budget_s``, each backend in turn within a round (starting one
    further along each round), each backend with a store of its own under ``data``."""
    started = time.perf_counter()
    names = list(embedders)
    done: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    settings = {
        name: load_settings(
            environ={**environ, "KB_DATA_DIR": str(data / name), "KB_EMBEDDING__BACKEND": name}
        )
        for name in names
    }
    longest = 0.0
    for index, paths in enumerate(rounds):
        elapsed = time.perf_counter() - started
        # Rounds differ in size, so the longest so far is the estimate of the next.
        if index and elapsed + longest > budget_s:
            break
        for name in names[index % len(names) :] + names[: index % len(names)]:
            row = _round(index, paths, embedders[name], settings[name], environ)
            done[name].append(row)
            print(
                f"  {name} round {index} ({row['order']}): {row['chunks']} chunks, ratio {row['ratio']} "
                f"(cpu {row['cpu_ratio']}), other processes {row['other_cores_ingest']} / "
                f"{row['other_cores_raw']} cores, load {row['load1_before']} -> {row['load1_after']}",
                file=sys.stderr,
            )
        longest = max(longest, time.perf_counter() - started - elapsed)
    return {
        name: {"model_name": embedders[name].model_name, **_totals(rows), "rounds": rows}
        for name, rows in done.items()
    }


def _totals(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    chunks = sum(r["chunks"] for r in rounds)
    ingest_s = sum(r["ingest_seconds"] for r in rounds)
    raw_s = sum(r["raw_encode_seconds"] for r in rounds)
    ratios = [r["ratio"] for r in rounds]
    quiet = [r for r in rounds if _quiet(r)]
    return {
        "files": sum(r["files"] for r in rounds),
        "chunks": chunks,
        "ingest_seconds": round(ingest_s, 3),
        "ingest_chunks_per_second": round(chunks / ingest_s, 1),
        "raw_encode_seconds": round(raw_s, 3),
        "raw_chunks_per_second": round(chunks / raw_s, 1),
        "ratio": round(raw_s / ingest_s, 3),
        "median_ratio": round(statistics.median(ratios), 3),
        "min_ratio": min(ratios),
        "max_ratio": max(ratios),
        "cpu_ratio": round(
            sum(r["raw_encode_cpu_seconds"] for r in rounds) / sum(r["ingest_cpu_seconds"] for r in rounds), 3
        ),
        "quiet_rounds": len(quiet),
        "quiet_ratio": (
            round(sum(r["raw_encode_seconds"] for r in quiet) / sum(r["ingest_seconds"] for r in quiet), 3)
            if quiet
            else None
        ),
    }


QUIET_CORES = 0.25
"""A round is quiet when other processes kept less than this many cores busy on both sides."""


def _quiet(row: dict[str, Any]) -> bool:
    others = (row["other_cores_ingest"], row["other_cores_raw"])
    return all(x is not None and x < QUIET_CORES for x in others)


def _against_torch(results: dict[str, dict[str, Any]]) -> None:
    """Each backend's ingestion rate over torch's, pooled over the rounds (the same files, ingested
    one backend right after the other), and over the rounds quiet for both backends alone: a
    round in which other work slowed one side only says nothing about the backends."""
    if "torch" not in results:
        return
    torch_rounds = results["torch"]["rounds"]
    theirs = _totals(torch_rounds)["ingest_chunks_per_second"]
    for row in results.values():
        row["ingest_vs_torch"] = round(row["ingest_chunks_per_second"] / theirs, 2)
        both = [
            (mine, other)
            for mine, other in zip(row["rounds"], torch_rounds, strict=False)
            if _quiet(mine) and _quiet(other)
        ]
        row["ingest_vs_torch_quiet_rounds"] = len(both)
        row["ingest_vs_torch_quiet"] = (
            round(
                _totals([m for m, _ in both])["ingest_chunks_per_second"]
                / _totals([o for _, o in both])["ingest_chunks_per_second"],
                2,
            )
            if both
            else None
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folder", type=Path, nargs="?", default=Path("../shared/corpora/pg-essays"))
    parser.add_argument("--files", type=int, default=0, help="only the first N files (by name); 0: all")
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument(
        "--data", type=Path, default=None, help="data folder for the exports (default: data_dir)"
    )
    parser.add_argument("--round-files", type=int, default=20, help="files per round (ingest, then raw)")
    parser.add_argument(
        "--max-seconds", type=float, default=540.0, help="bound on the whole run; fewer rounds if needed"
    )
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.round_files < 1:
        parser.error("--round-files must be at least 1")
    backends = [b for b in args.backends.split(",") if b]
    environ = dict(os.environ)
    if args.data is not None:
        environ["KB_DATA_DIR"] = str(args.data)
    configured = load_settings(environ=environ).embedding.backend
    files = sorted(p for p in args.folder.rglob("*") if p.is_file())
    files = files[: args.files] if args.files else files
    rounds = [files[start : start + args.round_files] for start in range(0, len(files), args.round_files)]

    started = time.perf_counter()
    load_before = os.getloadavg()
    embedders: dict[str, Embedder] = {}
    for backend in backends:
        embedder = build_embedder(load_settings(environ={**environ, "KB_EMBEDDING__BACKEND": backend}))
        # Model-length texts, so the first round does not pay for the first full-size batch.
        embedder.embed(["warm up the model with a text of some length " * 24] * 64)
        embedders[backend] = embedder
    with tempfile.TemporaryDirectory(prefix="kb-bench-ingest-") as tmp:
        left = args.max_seconds - (time.perf_counter() - started)
        results = run(embedders, rounds, environ, budget_s=left, data=Path(tmp))
    load_after = os.getloadavg()
    _against_torch(results)

    report = {
        "folder": str(args.folder),
        "files_limit": args.files or None,
        "files_available": len(files),
        "round_files": args.round_files,
        "max_seconds": args.max_seconds,
        "seconds": round(time.perf_counter() - started, 1),
        "configured_backend": configured,
        "cpu_count": os.cpu_count(),
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in load_after],
        "backends": results,
    }
    emit(report, args.out)
    print(
        f"{args.folder} ({len(files)} files, rounds of {args.round_files}), configured backend "
        f"{configured}, load {load_before[0]:.1f} -> {load_after[0]:.1f}",
        file=sys.stderr,
    )
    print(
        f"{'backend':<10} {'rounds':>6} {'files':>5} {'chunks':>7} {'ingest/s':>9} {'raw/s':>8} "
        f"{'ratio':>6} {'median':>6} {'range':>13} {'cpu':>6} {'quiet':>11} {'x torch':>8} {'(quiet)':>10}",
        file=sys.stderr,
    )
    for backend, row in results.items():
        spread = f"{row['min_ratio']:.3f}-{row['max_ratio']:.3f}"
        quiet = f"{row['quiet_ratio']} ({row['quiet_rounds']})" if row["quiet_rounds"] else "-"
        print(
            f"{backend:<10} {len(row['rounds']):>6} {row['files']:>5} {row['chunks']:>7} "
            f"{row['ingest_chunks_per_second']:>9} {row['raw_chunks_per_second']:>8} {row['ratio']:>6} "
            f"{row['median_ratio']:>6} {spread:>13} {row['cpu_ratio']:>6} {quiet:>11} "
            f"{row.get('ingest_vs_torch', '-'):>8} {_quiet_vs_torch(row):>10}",
            file=sys.stderr,
        )


def _quiet_vs_torch(row: dict[str, Any]) -> str:
    value = row.get("ingest_vs_torch_quiet")
    return "-" if value is None else f"{value} ({row['ingest_vs_torch_quiet_rounds']})"


if __name__ == "__main__":
    main()
