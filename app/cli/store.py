"""``kb store``: what the vector store holds, its HNSW index, and the move from local mode to Edge.

``info`` reports the engine, the collection's model, points and indexed vectors; ``optimize``
builds Qdrant Edge's HNSW index (minutes at 100,000 points: run it between ingestions, never
inside one; ``kb serve`` must not hold the store meanwhile); ``migrate`` copies a collection of
qdrant-client's local mode (an earlier kb's store) to Qdrant Edge without re-embedding.
docs/store.md has the figures.
"""

from __future__ import annotations

import json
import time

import click

from app.config import load_settings
from app.errors import KBError
from app.settings import Settings
from app.store import open_store
from app.store.edge import EdgeClient
from app.store.migrate import migrate_local_store

__all__ = ["store_command"]

_collection = click.option("--collection", help="Collection (default: store.collection).")


def _settings(collection: str | None) -> Settings:
    return load_settings(overrides={"store": {"collection": collection}} if collection else {})


def _engine(settings: Settings) -> str:
    return "server" if settings.secrets.qdrant_url else settings.store.engine


@click.group("store")
def store_command() -> None:
    """Inspect the vector store, build its index, migrate an older store."""


@store_command.command("info")
@_collection
@click.option("--json", "as_json", is_flag=True, help="One JSON object on stdout.")
def info_command(collection: str | None, as_json: bool) -> None:
    """The engine, the collection's model and size, and whether its index is built."""
    try:
        settings = _settings(collection)
        store = open_store(settings)
        try:
            facts: dict[str, object] = {
                "engine": _engine(settings),
                "location": store.location,
                "collection": store.collection,
                "exists": store.exists(),
            }
            if facts["exists"]:
                info = store.client.get_collection(store.collection)
                facts |= {
                    "model": (info.config.metadata or {}).get("embedding_model"),
                    "points": store.count(),
                    "segments": info.segments_count,
                }
                if isinstance(store.client, EdgeClient):
                    facts["dense_index"] = store.client.dense_index(store.collection)
        finally:
            store.close()
    except KBError as exc:
        raise click.ClickException(exc.message) from None
    if facts.get("dense_index") == "plain":
        points = int(str(facts["points"]))
        if points > settings.store.exact_search_points:
            facts["hint"] = (
                f"{points} points, over store.exact_search_points ({settings.store.exact_search_points}): "
                "run `kb store optimize` to build the HNSW index"
            )
    if as_json:
        click.echo(json.dumps(facts))
        return
    for key, value in facts.items():
        click.echo(f"{key}: {value}")


@store_command.command("optimize")
@_collection
def optimize_command(collection: str | None) -> None:
    """Build the HNSW index of an Edge collection over store.exact_search_points (blocking)."""
    try:
        settings = _settings(collection)
        if _engine(settings) != "edge":
            click.echo("nothing to do: a server indexes by itself, local mode has no index")
            return
        store = open_store(settings)
        try:
            started = time.perf_counter()
            changed = store.optimize()
        finally:
            store.close()
    except KBError as exc:
        raise click.ClickException(exc.message) from None
    seconds = time.perf_counter() - started
    click.echo(f"{'optimized' if changed else 'already optimal'} in {seconds:.1f}s: {store.collection}")


@store_command.command("migrate")
@_collection
def migrate_command(collection: str | None) -> None:
    """Copy the collection from an earlier kb's store (local mode) to Qdrant Edge, as it is."""
    try:
        report = migrate_local_store(_settings(collection))
    except KBError as exc:
        raise click.ClickException(exc.message) from None
    click.echo(
        f"copied {report.points} points of {report.collection!r} from {report.source} to {report.target} "
        "(no re-embedding). The old store is left in place: delete it once `kb serve` answers."
    )
