"""The store a running service reads from: opened on demand, with the start-up checks every time.

``kb serve`` may start while ``kb ingest`` holds the embedded store, or before a Qdrant server
answers. The service still starts (liveness is about the process), and the store is opened by the
first request that needs it (an ``/ask`` as much as a readiness probe), with the same check as at
start-up: a collection filled by another embedding model is refused, never served, and chunks
written before tenants were recorded are assigned to the install's default tenant
(``QdrantStore.claim_untenanted``), so that an upgraded service answers from its store before the
next ``kb ingest``. Until the store opens, each call raises the domain error that says why, which
retrieval reports as its ``error`` status.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping

import numpy as np
from qdrant_client import models

from app.errors import ModelMismatchError, StoreUnavailableError
from app.records import SearchHit, SparseTerms
from app.store.qdrant import QdrantStore
from app.store.tenants import DEFAULT_TENANT

__all__ = ["StoreConnection"]


class StoreConnection:
    """Opens a store lazily (and again after a failure) and checks its embedding model once.

    It offers the read side of ``QdrantStore`` that retrieval uses; every call first makes sure
    the store is open and was filled by this model. Thread-safe: retrieval workers share it.
    """

    def __init__(
        self,
        opener: Callable[[], QdrantStore],
        *,
        model_name: str,
        dimension: int,
        legacy_tenant: str = DEFAULT_TENANT,
    ) -> None:
        """``legacy_tenant`` (``ingest.tenant``) is the tenant that chunks written before tenants
        were recorded are assigned to."""
        self._opener = opener
        self._legacy_tenant = legacy_tenant
        self._model_name = model_name
        self._dimension = dimension
        self._current: QdrantStore | None = None
        self._checked = False
        self._lock = threading.Lock()

    @property
    def current(self) -> QdrantStore | None:
        """The open store, or None while it could not be opened."""
        return self._current

    @property
    def location(self) -> str:
        return self._current.location if self._current is not None else "(not open)"

    def connect(self) -> QdrantStore:
        """The open, checked store. Raises ``StoreLockedError`` or ``StoreUnavailableError``
        while it cannot be opened or its untenanted chunks cannot be claimed (a read-only key:
        the next call tries again), ``ModelMismatchError`` when another model filled it."""
        store = self._current
        if store is not None and self._checked:
            return store
        with self._lock:
            if self._current is None:
                self._current = self._opener()
            store = self._current
            # A collection that does not exist yet has no model to check; the check runs as soon
            # as one exists (ingested by another process meanwhile).
            if not self._checked and store.exists():
                try:
                    store.check_model(model_name=self._model_name, dimension=self._dimension)
                except ModelMismatchError:
                    self._current = None
                    store.close()
                    raise
                try:
                    store.claim_untenanted(self._legacy_tenant)
                except Exception as exc:
                    raise StoreUnavailableError(
                        f"chunks written before tenants were recorded could not be looked for, or "
                        f"assigned to tenant {self._legacy_tenant!r}, at {store.location}: {exc}. If "
                        "the store answers otherwise, run `kb ingest` once with write access to it."
                    ) from exc
                self._checked = True
            return store

    # -- the read side retrieval uses ----------------------------------------------------------

    def exists(self) -> bool:
        return self.connect().exists()

    def count(self) -> int:
        return self.connect().count()

    def search(
        self,
        *,
        dense: np.ndarray | None,
        sparse: SparseTerms | None,
        limit: int,
        query_filter: models.Filter | None = None,
        with_sparse: bool = False,
        sparse_limit: int | None = None,
        known: Mapping[str, SearchHit] | None = None,
    ) -> tuple[list[SearchHit], list[SearchHit]]:
        return self.connect().search(
            dense=dense,
            sparse=sparse,
            limit=limit,
            query_filter=query_filter,
            with_sparse=with_sparse,
            sparse_limit=sparse_limit,
            known=known,
        )

    def sample_sparse(self, limit: int, *, query_filter: models.Filter | None = None) -> list[SparseTerms]:
        return self.connect().sample_sparse(limit, query_filter=query_filter)

    def close(self) -> None:
        with self._lock:
            if self._current is not None:
                self._current.close()
                self._current = None
