"""``kb eval``: ingest a data set into a throwaway store and measure the service's retrieval."""

from __future__ import annotations

import logging
import shutil
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import click
import msgspec

from app.config import load_settings
from app.errors import KBError
from app.evaluation.datasets import QA_DOCS, QA_QUESTIONS, detect_dataset_kind, load_beir, load_qa
from app.evaluation.metrics import paired_bootstrap
from app.logs import configure_logging

if TYPE_CHECKING:
    from app.evaluation.runner import QAReport, RetrievalReport
    from app.settings import Settings

__all__ = ["eval_command", "format_reports"]

# Spelled out rather than imported: the runner pulls in the whole service (model, store, HTTP
# app) and `kb --help` should not pay for that.
MODES = ("dense", "lexical", "hybrid")


@click.command("eval")
@click.argument("dataset_dir", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help='Print one JSON object on stdout ({"modes": {...}} with --mode all).',
)
@click.option(
    "--mode",
    type=click.Choice([*MODES, "all"]),
    default=None,
    help="Retriever to evaluate (default: retrieval.mode). 'all' compares the three over one ingest.",
)
@click.option("--limit-queries", type=click.IntRange(min=1), help="Evaluate only the first N judged queries.")
@click.option(
    "--keep-data",
    type=click.Path(path_type=Path, file_okay=False),
    help="Keep the evaluation store in this folder (reused, incrementally, by the next run).",
)
@click.option(
    "--docs",
    "docs_dir",
    type=click.Path(path_type=Path, exists=True, file_okay=False),
    help="QA sets only: the documents, when they are not in DATASET_DIR/docs.",
)
def eval_command(
    dataset_dir: Path,
    as_json: bool,
    mode: str | None,
    limit_queries: int | None,
    keep_data: Path | None,
    docs_dir: Path | None,
) -> None:
    """Evaluate retrieval on DATASET_DIR: a BEIR set or a QA set (questions.jsonl + docs/)."""
    # One log line per question is noise here, and stdout must stay clean for --json.
    configure_logging(json_lines=False, level=logging.WARNING)
    try:
        base = load_settings()
        has_questions = (dataset_dir / QA_QUESTIONS).is_file()
        kind = "qa" if docs_dir is not None and has_questions else detect_dataset_kind(dataset_dir)
        if docs_dir is not None and kind != "qa":
            raise click.UsageError(f"--docs is for QA sets; {dataset_dir} has no {QA_QUESTIONS}")
        docs_dir = docs_dir or dataset_dir / QA_DOCS
        modes = MODES if mode == "all" else (mode or base.retrieval.mode,)
        data_dir = keep_data or Path(tempfile.mkdtemp(prefix="kb-eval-"))
        try:
            from app.evaluation.runner import eval_settings

            settings = eval_settings(base, data_dir, dataset_dir.resolve().name)
            reports = _run(dataset_dir, docs_dir, kind, modes, limit_queries, settings, quiet=as_json)
        finally:
            if keep_data is None:
                shutil.rmtree(data_dir, ignore_errors=True)
    except KBError as exc:
        raise click.ClickException(exc.message) from None
    if as_json:
        # Always one object: a single mode's report, or {"modes": {mode: report}} for --mode all.
        payload = reports[0] if len(reports) == 1 else {"modes": {r.mode: r for r in reports}}
        sys.stdout.write(msgspec.json.encode(payload).decode() + "\n")
    else:
        click.echo(format_reports(reports))


def _run(
    dataset_dir: Path,
    docs_dir: Path,
    kind: str,
    modes: tuple[str, ...],
    limit: int | None,
    settings: Settings,
    *,
    quiet: bool,
) -> list[RetrievalReport] | list[QAReport]:
    from app.evaluation.runner import EvalSession

    say = (lambda _msg: None) if quiet else (lambda msg: click.echo(msg, err=True))
    with EvalSession(settings) as session:
        if kind == "beir":
            dataset = load_beir(dataset_dir)
            if limit:
                dataset.queries = dataset.queries[:limit]
                dataset.qrels = {q.id: dataset.qrels[q.id] for q in dataset.queries}
            say(f"ingesting {len(dataset.corpus)} passages of {dataset.name} ...")
            ingest = session.ingest_beir(dataset)
            say(f"ingested: {session.chunks} chunks in {ingest.seconds:.0f} s")
            return [session.evaluate_beir(dataset, m) for m in modes]
        items = load_qa(dataset_dir / QA_QUESTIONS)[:limit]
        say(f"ingesting the documents in {docs_dir} ...")
        ingest = session.ingest_folder(docs_dir)
        say(f"ingested: {session.chunks} chunks in {ingest.seconds:.0f} s")
        return [session.evaluate_qa(dataset_dir.resolve().name, items, m) for m in modes]


def format_reports(reports: list[RetrievalReport] | list[QAReport]) -> str:
    """A plain-text table: one row per mode, quality first, then latency p50/p95 per stage."""
    from app.evaluation.runner import STAGES, RetrievalReport

    first = reports[0]
    if isinstance(first, RetrievalReport):
        header = (
            f"{first.dataset}: {first.queries} judged queries, {first.corpus} passages, {first.chunks} chunks"
        )
        quality = ["nDCG@10", "Recall@10", "MRR@10", "fused nDCG@10"]
        rows = [
            [
                r.mode,
                f"{r.ndcg_at_10:.3f}",
                f"{r.recall_at_10:.3f}",
                f"{r.mrr_at_10:.3f}",
                f"{r.fused.ndcg_at_10:.3f}",
            ]  # type: ignore[union-attr]
            for r in reports
        ]
    else:
        header = (
            f"{first.dataset}: {first.queries} questions, {first.chunks} chunks, answers by {first.provider}"
        )
        quality = [f"AR{k}" for k in first.answer_recall] + ["EM", "F1"]
        rows = [
            [
                r.mode,
                *(f"{v:.3f}" for v in r.answer_recall.values()),
                f"{r.exact_match:.3f}",
                f"{r.token_f1:.3f}",
            ]  # type: ignore[union-attr]
            for r in reports
        ]
    stages = [s for s in STAGES if any(s in r.latency_ms for r in reports)]
    columns = ["mode", *quality, *(f"{s} p50/p95 ms" for s in stages)]
    for row, report in zip(rows, reports, strict=True):
        row.extend(
            f"{report.latency_ms[s].p50:.1f}/{report.latency_ms[s].p95:.1f}"
            if s in report.latency_ms
            else "-"
            for s in stages
        )
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(columns)]
    lines = [header, "  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(lines + _paired(reports))


def _paired(reports: list[RetrievalReport] | list[QAReport]) -> list[str]:
    """Hybrid against each single retriever, query by query: a mean hides whether it is luck."""
    by_mode = {r.mode: r for r in reports if getattr(r, "per_query", None)}
    hybrid = by_mode.pop("hybrid", None)
    lines = []
    for mode, other in by_mode.items() if hybrid else ():
        diffs = [hybrid.per_query[q] - other.per_query[q] for q in hybrid.per_query]
        better = sum(d > 1e-9 for d in diffs)
        worse = sum(d < -1e-9 for d in diffs)
        low, high = paired_bootstrap(diffs)
        lines.append(
            f"hybrid vs {mode}: {sum(diffs) / len(diffs):+.4f} nDCG@10 (90% bootstrap interval "
            f"{low:+.4f} to {high:+.4f}); better on {better}, worse on {worse}, "
            f"equal on {len(diffs) - better - worse} queries"
        )
    return lines
