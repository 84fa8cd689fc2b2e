"""``kb ingest``: the command-line face of ``ingest.runner``."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click
import msgspec

from app.answers import bump_index_version
from app.config import load_settings
from app.embedding import build_embedder
from app.errors import KBError
from app.observability import TRACER_NAME, tracer_provider_from_environment
from app.store import SHARED_TENANT, open_store, valid_tenant
from ingest.items import Shard
from ingest.progress import progress_for
from ingest.runner import Ingestor

__all__ = ["ingest_command"]


def _parse_shard(_ctx: click.Context, _param: click.Parameter, value: str | None) -> Shard | None:
    if value is None:
        return None
    try:
        return Shard.parse(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@click.command("ingest")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--source",
    help="Name of the source these documents belong to: the first part of their paths "
    "(default: the folder's name). A name stands for one folder.",
)
@click.option(
    "--adopt",
    is_flag=True,
    help="The folder given is now the one its source name stands for (it moved, or was ingested "
    "by an older kb); its stored documents are kept, not re-embedded.",
)
@click.option(
    "--prune", is_flag=True, help="Remove documents of these sources whose file is gone from the folder."
)
@click.option("--dry-run", is_flag=True, help="Print the plan; write nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object on stdout.")
@click.option("--quiet", "-q", is_flag=True, help="No progress output.")
@click.option(
    "--include", multiple=True, help="Glob of files to include (repeatable; replaces the configured list)."
)
@click.option(
    "--exclude", multiple=True, help="Glob of files to exclude (repeatable; added to the configured list)."
)
@click.option(
    "--tenant",
    help="Tenant (team or organisation) whose documents these are: only its keys retrieve them "
    "(default: ingest.tenant). The same path of two tenants is two documents.",
)
@click.option(
    "--shared", is_flag=True, help="These documents are shared with every tenant (instead of --tenant)."
)
@click.option("--collection", help="Collection to write to (default: store.collection).")
@click.option(
    "--shard",
    metavar="K/N",
    callback=_parse_shard,
    help="Ingest (and with --prune, prune) only part K of N of the documents, split by tenant and "
    "path: N runs with 0/N .. N-1/N share the work against one store, with no coordinator.",
)
def ingest_command(
    paths: tuple[Path, ...],
    source: str | None,
    adopt: bool,
    prune: bool,
    dry_run: bool,
    as_json: bool,
    quiet: bool,
    include: tuple[str, ...],
    exclude: tuple[str, ...],
    tenant: str | None,
    shared: bool,
    collection: str | None,
    shard: Shard | None,
) -> None:
    """Load, chunk, embed and store the documents under PATHS (files or folders).

    Each folder is a named source: its documents are shown as NAME/path/inside/the/folder. They
    belong to one tenant (--tenant, by default ingest.tenant), or to all (--shared).
    """
    if shared and tenant is not None:
        raise click.UsageError("give --tenant or --shared, not both")
    overrides: dict[str, dict[str, object]] = {}
    if collection:
        overrides["store"] = {"collection": collection}
    try:
        if tenant is not None:
            valid_tenant(tenant)  # before the model loads: a typo costs nothing
        settings = load_settings(overrides=overrides)
        ingest_settings = settings.ingest
        if include or exclude:
            ingest_settings = msgspec.structs.replace(
                ingest_settings,
                include=include or ingest_settings.include,
                exclude=(*ingest_settings.exclude, *exclude),
            )
        store = open_store(settings)
    except KBError as exc:
        raise click.ClickException(exc.message) from None
    # Spans of the run go where the OTEL_* variables say (docs/operations.md); none without them.
    tracing = tracer_provider_from_environment(os.environ)
    try:
        embedder = build_embedder(settings)
        ingestor = Ingestor(
            store,
            embedder,
            chunking=settings.chunking,
            ingest=ingest_settings,
            progress=progress_for(quiet=quiet or as_json),
            tracer=tracing.get_tracer(TRACER_NAME) if tracing is not None else None,
        )
        report = ingestor.ingest_paths(
            list(paths),
            prune=prune,
            dry_run=dry_run,
            source=source,
            adopt=adopt,
            tenant=SHARED_TENANT if shared else tenant,
            shard=shard,
        )
    except KBError as exc:
        raise click.ClickException(exc.message) from None
    finally:
        store.close()
        if tracing is not None:
            tracing.shutdown()  # exports what is still batched
    changed = (report.new, report.changed, report.pruned, report.repaired, report.adopted, report.claimed)
    if not dry_run and (report.chunks_written or any(changed)):
        try:  # no cached answer made from the documents before this run is served again
            bump_index_version(settings)
        except KBError as exc:
            click.echo(f"warning: cached answers may be served until they expire: {exc.message}", err=True)
    if as_json:
        sys.stdout.write(report.to_json().decode() + "\n")
    else:
        if dry_run:
            for step in report.plan:
                if step["action"] == "adopt":
                    click.echo(
                        f"would adopt: {step['documents']} stored document(s) of {step['source']} "
                        f"as the documents of {step['folder']}"
                    )
                elif step["action"] != "unchanged":
                    click.echo(
                        f"would {step['action']}: {step['source']}"
                        + (f" ({step['chunks']} chunks)" if "chunks" in step else "")
                    )
        for line in report.summary_lines():
            click.echo(line, err=line.startswith("FAILED"))
    if report.interrupted:
        sys.exit(130)
    if report.failed:
        sys.exit(1)
