"""Settings: the vector store (``app.store``): the embedded engine, or a Qdrant server by ``QDRANT_URL``."""

from __future__ import annotations

from typing import Annotated, Literal

from msgspec import Meta

from app.settings.base import PositiveFloat, PositiveInt, _Section

__all__ = ["StoreSettings"]


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

    hnsw_ef: Annotated[int, Meta(ge=16, le=4096)] = 512
    """Candidates an HNSW search explores (Edge and server): larger is slower and closer to
    exact. At 256, recall@10 against exact search measured 0.974 to 0.998 between index builds;
    at 512 it measured 1.0, no slower (docs/store.md, bench/bench_store.py)."""

    hnsw_m: Annotated[int, Meta(ge=4, le=128)] = 16
    """Edges per node of the HNSW graph, fixed when the index is built (Edge)."""

    hnsw_ef_construct: Annotated[int, Meta(ge=16, le=4096)] = 128
    """Candidates explored while the HNSW graph is built (Edge): better graphs, slower builds."""
