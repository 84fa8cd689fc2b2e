"""``kb eval``: ingest a data set into a throwaway store and measure the service's retrieval."""

from __future__ import annotations

import logging
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, cast, get_args

import click
import msgspec

from app.config import load_settings
from app.errors import KBError
from app.evaluation.datasets import QA_QUESTIONS, detect_dataset_kind
from app.evaluation.metrics import paired_bootstrap
from app.logs import configure_logging
from app.settings import FusionName, RetrieverMode

if TYPE_CHECKING:
    from app.evaluation.runner import QAReport, RetrievalReport

__all__ = ["eval_command", "format_reports"]

# From the settings' types rather than the runner: the runner pulls in the whole service (model,
# store) and `kb --help` should not pay for that.
MODES: tuple[RetrieverMode, ...] = ("dense", "lexical", "hybrid")
FUSIONS: tuple[FusionName, ...] = get_args(FusionName)


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
@click.option(
    "--fusion",
    type=click.Choice(FUSIONS),
    default=None,
    help="Hybrid fusion strategy (default: retrieval.fusion); see docs/evaluation.md.",
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
    fusion: str | None,
    limit_queries: int | None,
    keep_data: Path | None,
    docs_dir: Path | None,
) -> None:
    """Evaluate retrieval on DATASET_DIR: a BEIR set or a QA set (questions.jsonl + docs/)."""
    # One log line per question is noise here, and stdout must stay clean for --json.
    configure_logging(json_lines=False, level=logging.WARNING)
    try:
        base = load_settings()
        if docs_dir is not None and not (dataset_dir / QA_QUESTIONS).is_file():
            raise click.UsageError(f"--docs is for QA sets; {dataset_dir} has no {QA_QUESTIONS}")
        if docs_dir is None:
            detect_dataset_kind(dataset_dir)  # refuse a folder that is no data set before loading anything
        modes = MODES if mode == "all" else (cast("RetrieverMode", mode or base.retrieval.mode),)
        data_dir = keep_data or Path(tempfile.mkdtemp(prefix="kb-eval-"))
        try:
            from app.embedding import build_embedder
            from app.evaluation.runner import eval_settings, evaluate_dataset

            reports = evaluate_dataset(
                dataset_dir,
                eval_settings(base, data_dir, dataset_dir.resolve().name),
                modes=modes,
                fusion=cast("FusionName | None", fusion),
                limit=limit_queries,
                docs_dir=docs_dir,
                # Built on the configured data_dir: an ONNX export is made once there, not per run.
                embedder=build_embedder(base),
                say=(lambda _message: None) if as_json else (lambda message: click.echo(message, err=True)),
            )
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


def format_reports(reports: Sequence[RetrievalReport] | Sequence[QAReport]) -> str:
    """A plain-text table: one row per mode, quality first, then latency p50/p95 per stage."""
    from app.evaluation.runner import STAGES, RetrievalReport

    beir = [r for r in reports if isinstance(r, RetrievalReport)]
    qa = [r for r in reports if not isinstance(r, RetrievalReport)]
    rows: list[list[str]]
    if beir:
        first = beir[0]
        header = (
            f"{first.dataset}: {first.queries} judged queries, {first.corpus} passages, {first.chunks} chunks, "
            f"{first.fusion} fusion"
        )
        quality = ["nDCG@10", "Recall@10", "MRR@10", "fused nDCG@10"]
        rows = [
            [
                r.mode,
                f"{r.ndcg_at_10:.3f}",
                f"{r.recall_at_10:.3f}",
                f"{r.mrr_at_10:.3f}",
                f"{r.fused.ndcg_at_10:.3f}",
            ]
            for r in beir
        ]
    else:
        answers = qa[0]
        header = (
            f"{answers.dataset}: {answers.queries} questions, {answers.chunks} chunks, "
            f"{answers.fusion} fusion, answers by {answers.provider}"
        )
        quality = [f"AR{k}" for k in answers.answer_recall] + [
            "EM",
            "F1",
            "gold in answer",
            "... of reached",
            "median words",
            "answer p50/p95 ms",
        ]
        rows = [
            [
                r.mode,
                *(f"{v:.3f}" for v in r.answer_recall.values()),
                f"{r.exact_match:.3f}",
                f"{r.token_f1:.3f}",
                f"{r.gold_in_answer:.3f}",
                f"{r.gold_in_answer_reached:.3f} of {r.reached_context}",
                f"{r.median_answer_words:.0f}",
                f"{r.answer_ms.p50:.1f}/{r.answer_ms.p95:.1f}" if r.answer_ms else "-",
            ]
            for r in qa
        ]
    latencies = [r.latency_ms for r in (beir or qa)]
    stages = [s for s in STAGES if any(s in latency for latency in latencies)]
    columns = ["mode", *quality, *(f"{s} p50/p95 ms" for s in stages)]
    for row, latency in zip(rows, latencies, strict=True):
        row.extend(f"{latency[s].p50:.1f}/{latency[s].p95:.1f}" if s in latency else "-" for s in stages)
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(columns)]
    lines = [header, "  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(lines + _paired(beir))


def _paired(reports: Sequence[RetrievalReport]) -> list[str]:
    """Hybrid against each single retriever, query by query: a mean hides whether it is luck."""
    by_mode = {r.mode: r for r in reports if r.per_query}
    hybrid = by_mode.pop("hybrid", None)
    if hybrid is None:
        return []
    lines = []
    for mode, other in by_mode.items():
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
