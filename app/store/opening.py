"""Which engine a store runs on, and opening it: a server by ``QDRANT_URL``, else the embedded one.

The embedded engine is Qdrant Edge in ``<data_dir>/store`` (``store.engine = "edge"``, the
default) or qdrant-client's local mode in ``<data_dir>/qdrant`` (``"local"``, what kb used
before). A store that local mode filled is not read by Edge: opening Edge while only the old
store holds the collection is refused with what to do (``kb store migrate``, or re-ingest),
rather than answering every question from an empty store.

A server creates the collection with ``store.cluster`` (``server_layout``). The embedded engines
have no shards, replicas or quantization: what they ignore of the configuration, when it differs
from the defaults, is logged once, when the store opens (``store_settings_ignored``).
"""

from __future__ import annotations

from pathlib import Path

import structlog
from qdrant_client import QdrantClient, models

from app.errors import StoreLockedError, StoreUnavailableError
from app.settings import Settings, StoreSettings
from app.store.edge import EdgeClient, EdgeIndexing
from app.store.qdrant import CollectionLayout, QdrantStore

__all__ = [
    "LegacyStoreError",
    "edge_indexing",
    "edge_path",
    "ignored_settings",
    "legacy_collection",
    "open_local_store",
    "open_store",
    "server_layout",
]

log = structlog.get_logger("kb.store")

# What qdrant-client's local mode ignores beyond ``store.cluster``: it searches by brute force.
_LOCAL_IGNORES = ("exact_search_points", "dense_index", "hnsw_ef", "hnsw_m", "hnsw_ef_construct")
_WHY_IGNORED = {
    "edge": "the embedded store is one local shard with no replicas or quantization; "
    "store.cluster applies to a Qdrant server (QDRANT_URL)",
    "local": "qdrant-client's local mode searches by brute force, with no index, shards, "
    "replicas or quantization; these apply to Qdrant Edge or a Qdrant server",
    "server": "store.dense_index chooses how the embedded Edge store indexes; a Qdrant server "
    "builds HNSW (store.hnsw_*) and quantizes by store.cluster.quantization",
}


class LegacyStoreError(StoreUnavailableError):
    """The collection is only in a store that qdrant-client's local mode wrote."""

    code = "legacy_store"


def edge_indexing(store: StoreSettings) -> EdgeIndexing:
    """How the embedded Edge store indexes, from ``[store]``."""
    return EdgeIndexing(
        exact_search_points=store.exact_search_points,
        hnsw_ef=store.hnsw_ef,
        hnsw_m=store.hnsw_m,
        hnsw_ef_construct=store.hnsw_ef_construct,
        dense_index=store.dense_index,
    )


def edge_path(settings: Settings) -> Path:
    """Folder of the embedded Qdrant Edge store."""
    return settings.data_path / "store"


def legacy_collection(settings: Settings) -> Path | None:
    """The local-mode folder of the configured collection, when one exists."""
    folder = settings.qdrant_path / "collection" / settings.store.collection
    return folder if folder.is_dir() else None


def open_store(settings: Settings) -> QdrantStore:
    """Open the configured store: a server when QDRANT_URL is set, else the embedded engine.

    Raises ``StoreLockedError`` at once when another process holds the embedded store, and
    ``LegacyStoreError`` when the collection is only in a local-mode store.
    """
    secrets = settings.secrets
    store = settings.store
    if secrets.qdrant_url:
        try:
            client = QdrantClient(
                url=secrets.qdrant_url,
                api_key=secrets.qdrant_api_key,
                timeout=int(max(1, round(store.timeout_s))),
                # The version probe is a blocking request inside the constructor: with the server
                # down it stalls start-up. Reachability is what /health/ready reports instead.
                check_compatibility=False,
            )
        except Exception as exc:
            raise StoreUnavailableError(f"cannot connect to Qdrant at {secrets.qdrant_url}: {exc}") from exc
        server = QdrantStore(
            client,
            store.collection,
            upsert_batch_size=store.upsert_batch_size,
            location=secrets.qdrant_url,
            hnsw_ef=store.hnsw_ef,
            layout=server_layout(store),
        )
        _say_ignored(settings, "server")
        return server
    if store.engine == "local":
        local = open_local_store(settings)
        _say_ignored(settings, "local")
        return local
    root = edge_path(settings)
    edge = EdgeClient(root, indexing=edge_indexing(store))
    legacy = legacy_collection(settings)
    if legacy is not None and not edge.collection_exists(store.collection):
        edge.close()
        raise LegacyStoreError(
            f"collection {store.collection!r} is in a store written by an earlier kb (qdrant-client "
            f"local mode, {settings.qdrant_path}), which the embedded engine (Qdrant Edge, {root}) "
            "does not read. Run `kb store migrate` to copy its chunks to Qdrant Edge (no "
            f"re-embedding), or move {settings.qdrant_path} away and run `kb ingest` again, or keep "
            'the old engine with store.engine = "local" (KB_STORE__ENGINE=local).'
        )
    _say_ignored(settings, "edge")
    return QdrantStore(
        edge,
        store.collection,
        upsert_batch_size=store.upsert_batch_size,
        location=str(root),
        hnsw_ef=store.hnsw_ef,
        point_cache=store.point_cache,
    )


def server_layout(store: StoreSettings) -> CollectionLayout:
    """How a server creates the collection, and the quantization its searches ask for."""
    cluster = store.cluster
    quantization = search = None
    if cluster.quantization == "int8":
        quantization = models.ScalarQuantization(
            scalar=models.ScalarQuantizationConfig(
                type=models.ScalarType.INT8,
                quantile=cluster.quantization_quantile,
                always_ram=cluster.quantization_always_ram,
            )
        )
        search = models.QuantizationSearchParams(rescore=cluster.rescore, oversampling=cluster.oversampling)
    return CollectionLayout(
        shard_number=cluster.shard_number,
        replication_factor=cluster.replication_factor,
        write_consistency_factor=cluster.write_consistency_factor,
        on_disk_payload=cluster.on_disk_payload,
        on_disk_vectors=cluster.on_disk_vectors,
        hnsw=models.HnswConfigDiff(m=store.hnsw_m, ef_construct=store.hnsw_ef_construct),
        quantization=quantization,
        search=search,
    )


def ignored_settings(settings: Settings) -> list[str]:
    """The store settings the configured engine does not apply, where they differ from their
    defaults: ``store.cluster.*`` on either embedded engine, HNSW settings in local mode, and
    ``store.dense_index`` on a server."""
    store = settings.store
    if settings.secrets.qdrant_url:
        return ["store.dense_index"] if store.dense_index != StoreSettings().dense_index else []
    ignored = store.cluster.differences()
    if store.engine == "local":
        default = StoreSettings()
        ignored += [
            f"store.{name}" for name in _LOCAL_IGNORES if getattr(store, name) != getattr(default, name)
        ]
    return ignored


def _say_ignored(settings: Settings, engine: str) -> None:
    # Called once per opened store, after it opened: a locked store retried by every request
    # does not repeat it, and a process opens its store once.
    ignored = ignored_settings(settings)
    if ignored:
        log.warning(
            "store_settings_ignored",
            engine=engine,
            settings=ignored,
            reason=_WHY_IGNORED[engine],
        )


def open_local_store(settings: Settings) -> QdrantStore:
    """The store of qdrant-client's local mode (``store.engine = "local"``, and the source of
    ``kb store migrate``)."""
    path = settings.qdrant_path
    path.mkdir(parents=True, exist_ok=True)
    try:
        client = QdrantClient(path=str(path))
    except RuntimeError as exc:
        if "already accessed" in str(exc):
            raise StoreLockedError(
                f"the embedded store at {path} is in use by another process (a running `kb serve`, "
                "or another `kb ingest`). Stop that process and run again, or run a Qdrant server "
                "and point both at it with QDRANT_URL."
            ) from None
        raise StoreUnavailableError(f"cannot open the embedded store at {path}: {exc}") from exc
    return QdrantStore(
        client,
        settings.store.collection,
        upsert_batch_size=settings.store.upsert_batch_size,
        location=str(path),
    )
