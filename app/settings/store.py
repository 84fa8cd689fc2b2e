"""Settings: the vector store (``app.store``): the embedded engine, or a Qdrant server by ``QDRANT_URL``."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from app.settings.base import PositiveFloat, PositiveInt, _Section

__all__ = ["ClusterSettings", "Quantization", "StoreSettings"]

Quantization = Literal["none", "int8"]
"""Vector quantization of a server collection: ``int8`` is scalar quantization (a byte per
dimension instead of four), searched first and rescored with the full vectors."""


class ClusterSettings(_Section, frozen=True):
    """Collection settings for a Qdrant server or cluster (``QDRANT_URL``), applied when kb
    creates the collection; an existing collection keeps the settings it was created with. The
    embedded engines ignore them and say so once when the store opens. See docs/scaling.md."""

    shard_number: PositiveInt | None = None
    """Shards the collection is split into, fixed at creation; None: the server's choice (one
    per node of the cluster at that time). More shards than nodes leave room to add nodes."""

    replication_factor: PositiveInt = 1
    """Copies of each shard, on different nodes: 2 survives the loss of a node."""

    write_consistency_factor: PositiveInt = 1
    """Copies that must acknowledge a write before it succeeds, at most ``replication_factor``."""

    on_disk_payload: bool = True
    """Keep payloads (chunk text and metadata) on disk, read when a hit is returned, rather
    than in RAM: what most of a point's bytes are."""

    on_disk_vectors: bool = False
    """Keep the original dense vectors on disk (memory-mapped) rather than in RAM. With
    ``quantization``, searches run on the quantized copy in RAM and read the originals only to
    rescore."""

    quantization: Quantization = "none"
    """``int8``: scalar quantization of the dense vectors, a quarter of their memory; each
    search is rescored with the original vectors (``rescore``, ``oversampling``)."""

    quantization_quantile: Annotated[float, Meta(ge=0.5, le=1.0)] = 0.99
    """Share of vector components the int8 range covers; the rest (outliers) are clipped."""

    quantization_always_ram: bool = True
    """Keep the quantized vectors in RAM even when ``on_disk_vectors`` is set."""

    rescore: bool = True
    """Re-rank the quantized search's candidates with the original vectors (at query time)."""

    oversampling: Annotated[float, Meta(ge=1.0, le=16.0)] = 2.0
    """Candidates the quantized search fetches per result wanted, before rescoring."""

    def __post_init__(self) -> None:
        if self.write_consistency_factor > self.replication_factor:
            raise ValueError(
                f"store.cluster.write_consistency_factor ({self.write_consistency_factor}) must not "
                f"exceed store.cluster.replication_factor ({self.replication_factor}): a write "
                "would wait for copies that do not exist"
            )

    def differences(self) -> list[str]:
        """The names of the settings that differ from their defaults (``store.cluster.*``)."""
        default = ClusterSettings()
        return [
            f"store.cluster.{name}"
            for name in self.__struct_fields__
            if getattr(self, name) != getattr(default, name)
        ]


class StoreSettings(_Section, frozen=True):
    collection: Annotated[str, Meta(pattern=r"^[A-Za-z0-9_-]{1,64}$")] = "kb"
    """Qdrant collection that holds the knowledge base."""

    timeout_s: PositiveFloat = 10.0
    """Timeout of one request to a Qdrant server (server mode)."""

    upsert_batch_size: PositiveInt = 256
    """Points per upsert request."""

    engine: Literal["edge", "local"] = "edge"
    """The embedded engine when ``QDRANT_URL`` is not set: ``edge`` (Qdrant Edge, the server's
    segment engine in-process, in ``<data_dir>/store``) or ``local`` (qdrant-client's local mode in
    ``<data_dir>/qdrant``, which searches by brute force in Python: what kb used before, kept to
    read such a store; ``kb store migrate`` copies it to Edge). See docs/store.md."""

    exact_search_points: Annotated[int, Meta(ge=1_000)] = 20_000
    """Up to this many points, dense search stays exact (no HNSW index is built): it is fast
    enough there and always returns the true nearest neighbours. Above it, ``kb store optimize``
    builds the index (never ``kb ingest``: it takes minutes). Measured in docs/store.md."""

    dense_index: Literal["hnsw", "int8"] = "hnsw"
    """How ``kb store optimize`` indexes Edge's dense vectors above ``exact_search_points``:
    ``hnsw`` (a graph: the fastest queries, a build of minutes) or ``int8`` (a quantized copy
    scanned in full and rescored: exact results and a build of about a minute, but a query's
    cost grows with the collection). Fixed when the collection is created; a server indexes by
    ``hnsw_*`` and ``[store.cluster]``. Measured in docs/store.md."""

    hnsw_ef: Annotated[int, Meta(ge=16, le=4096)] = 1024
    """Candidates an HNSW search explores (Edge and server): larger is slower and closer to
    exact. Recall@10 against exact search falls with the collection's size at a fixed value;
    this one was chosen for recall@10 >= 0.98 at 100,000 chunks (docs/store.md, measured with
    bench/bench_store.py)."""

    hnsw_m: Annotated[int, Meta(ge=4, le=128)] = 32
    """Edges per node of the HNSW graph, fixed when the index is built (Edge), or when the
    collection is created (server). Twice Qdrant's default: knowledge bases hold many
    near-duplicate chunks (boilerplate, versions of a page), around which a sparser graph loses
    true neighbours at any ``hnsw_ef`` (docs/store.md)."""

    hnsw_ef_construct: Annotated[int, Meta(ge=16, le=4096)] = 256
    """Candidates explored while the HNSW graph is built (Edge and server): better graphs,
    slower builds. Chosen with ``hnsw_m`` for recall@10 >= 0.98 up to 300,000 chunks."""

    point_cache: Annotated[int, Meta(ge=0, le=1_000_000)] = 4096
    """Points whose search data (record, dense and sparse vectors, as Python objects) the Edge
    store keeps between writes, so that a chunk found again is not rebuilt from the engine: in
    process that building, not the search, is most of what a search costs. The least recently
    kept are dropped beyond it; any write empties it; 0 keeps none. Memory: a few KB a point
    (docs/store.md). Not used with a server, whose results arrive over the wire anyway."""

    cluster: ClusterSettings = msgspec.field(default_factory=ClusterSettings)
    """How a Qdrant server or cluster lays out the collection (``[store.cluster]``)."""
