"""``kb store migrate``: a collection of qdrant-client's local mode copied to Qdrant Edge.

Points are copied as they are (ids, dense and sparse vectors, payloads, the collection's model
metadata): nothing is re-embedded, and the next ``kb ingest`` finds every document unchanged. The
copy is filled under a temporary name and renamed when complete, so an interrupted migration
leaves no half collection for ``kb serve`` to answer from; running it again starts over. The old
store is left in place (delete it once the new one answers).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

from qdrant_client import models

from app.errors import StoreUnavailableError
from app.settings import Settings
from app.store.edge import EdgeClient
from app.store.opening import edge_indexing, edge_path, legacy_collection, open_local_store
from app.store.qdrant import DENSE, SPARSE, QdrantStore

__all__ = ["MigrationReport", "migrate_local_store"]

_PAGE = 256


@dataclass(frozen=True, slots=True)
class MigrationReport:
    collection: str
    points: int
    source: str
    target: str


def migrate_local_store(settings: Settings) -> MigrationReport:
    """Copy the configured collection from the local-mode store to the Edge store.

    Raises ``StoreUnavailableError`` when there is nothing to copy or the Edge store already has
    the collection, ``StoreLockedError`` when either store is in use.
    """
    name = settings.store.collection
    if legacy_collection(settings) is None:
        raise StoreUnavailableError(f"no collection {name!r} in a local-mode store at {settings.qdrant_path}")
    source = open_local_store(settings)
    try:
        target_client = EdgeClient(edge_path(settings), indexing=edge_indexing(settings.store))
        try:
            if target_client.collection_exists(name):
                raise StoreUnavailableError(
                    f"collection {name!r} already exists in the Qdrant Edge store at {target_client.root}: "
                    "nothing was copied (drop it first if the local-mode copy is the one to keep)"
                )
            copied = _copy(source, target_client, name)
        finally:
            target_client.close()
    finally:
        source.close()
    return MigrationReport(
        collection=name, points=copied, source=source.location, target=str(edge_path(settings))
    )


def _copy(source: QdrantStore, target: EdgeClient, name: str) -> int:
    info = source.client.get_collection(name)
    vectors = info.config.params.vectors
    if not isinstance(vectors, dict) or DENSE not in vectors:
        raise StoreUnavailableError(f"collection {name!r} has no {DENSE!r} vectors: not a kb collection")
    staging = f"{name}.migrating"
    if target.collection_exists(staging):
        target.delete_collection(staging)  # a migration that did not finish
    target.create_collection(
        staging,
        vectors_config={
            DENSE: models.VectorParams(size=vectors[DENSE].size, distance=models.Distance.COSINE)
        },
        sparse_vectors_config={SPARSE: models.SparseVectorParams(modifier=models.Modifier.IDF)},
        metadata=dict(info.config.metadata or {}),
    )
    QdrantStore(target, staging).ensure_indexes()
    copied = 0
    offset = None
    while True:
        points, offset = source.client.scroll(
            name, limit=_PAGE, offset=offset, with_payload=True, with_vectors=True
        )
        if points:
            target.upsert(
                staging,
                points=[
                    models.PointStruct(id=p.id, vector=cast(Any, p.vector or {}), payload=p.payload)
                    for p in points
                ],
            )
            copied += len(points)
        if offset is None:
            break
    expected = int(source.client.count(name, exact=True).count)
    found = int(target.count(staging, exact=True).count)
    if found != expected:
        raise StoreUnavailableError(
            f"copied {found} of {expected} points of {name!r}: run the migration again"
        )
    target.rename_collection(staging, name)
    return copied
