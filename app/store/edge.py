"""Qdrant Edge adapter: the calls ``QdrantStore`` makes of a Qdrant client, over Edge shards.

Qdrant Edge (``qdrant-edge-py``) runs the server's segment engine inside this process: the same
indexes (sparse inverted index with IDF, HNSW, payload indexes) and data format, with no server.
It has shards, not collections, so one collection is one shard in ``<root>/<collection>/`` and
its metadata (the embedding model that filled it) is a JSON file beside it, written last: a
collection exists once its metadata does.

Upserts land in an appendable segment, searched exactly (SIMD brute force in the engine).
``optimize`` (``kb store optimize``) indexes the dense vectors of segments over
``store.exact_search_points``, in one of two ways (``EdgeIndexing.dense_index``): ``hnsw``
(default) builds the graph (a blocking call of minutes at 100,000 points, whose recall at a
fixed beam falls with size); ``int8`` keeps a scalar-quantized copy of them, which searches scan
in full and rescore against the original vectors (seconds to build, the exact top 10 in every
measured query, but a scan: its cost grows with the collection).
Ingestion never runs it (docs/store.md). Searches pass ``store.hnsw_ef``, which only matters on
HNSW segments. The folder is locked for one process at a time (``app.store.locking``).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Concatenate, Literal, ParamSpec, TypeVar

import qdrant_edge as qe
from qdrant_client import models
from qdrant_client.http import models as rest

from app.errors import StoreLockedError, StoreUnavailableError
from app.records import SparseTerms
from app.store.edge_models import (
    edge_filter,
    edge_id,
    edge_nearest,
    edge_point,
    edge_query,
    edge_search_params,
    edge_with_payload,
    point_id,
    record,
    scored_point,
)
from app.store.locking import FolderLock

__all__ = ["EdgeClient", "EdgeIndexing", "Nearest"]

_META_SUFFIX = ".collection.json"
# A quantized scan keeps this many times the limit as candidates and rescores them against the
# original vectors: what restored the exact top 10 in the measurements of docs/store.md.
_RESCORE_OVERSAMPLING = 2.0
# Full-scan threshold (KB) of an int8 collection: every search of an indexed segment is a scan.
_ALWAYS_SCAN_KB = 2**40
_P = ParamSpec("_P")
_R = TypeVar("_R")
_DONE = models.UpdateResult.model_construct(operation_id=None, status=models.UpdateStatus.COMPLETED)


@dataclass(frozen=True, slots=True)
class EdgeIndexing:
    """When and how Edge builds HNSW indexes (``StoreSettings``)."""

    exact_search_points: int = 20_000
    hnsw_ef: int = 1024
    hnsw_m: int = 32
    hnsw_ef_construct: int = 256
    dense_index: Literal["hnsw", "int8"] = "hnsw"
    """What ``optimize`` builds for the dense vectors of a large segment: ``hnsw`` (the graph) or
    ``int8`` (a scalar-quantized copy, scanned in full and rescored). Fixed when a collection is
    created."""

    @property
    def quantized(self) -> bool:
        return self.dense_index == "int8"


@dataclass(frozen=True, slots=True)
class Nearest:
    """One nearest-neighbour query of ``EdgeClient.query_points``, in the store's own terms."""

    vector: list[float] | SparseTerms
    """A dense vector's floats, or a sparse vector's terms."""
    using: str
    """The named vector searched."""
    limit: int
    with_payload: bool
    with_vector: bool | list[str]
    """Whether the points come with their vectors, or which of them."""
    params: models.SearchParams | None = None
    """HNSW beam and exactness, as ``edge_query`` reads them from a request."""


def _writes(method: Callable[Concatenate[EdgeClient, _P], _R]) -> Callable[Concatenate[EdgeClient, _P], _R]:
    """Count a method's calls in ``EdgeClient.write_epoch``, before and after it runs."""

    @functools.wraps(method)
    def counted(self: EdgeClient, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        with self._writes_guard:
            self._writes_begun += 1
        try:
            return method(self, *args, **kwargs)
        finally:
            with self._writes_guard:
                self._writes_ended += 1

    return counted


class EdgeClient:
    """The subset of ``QdrantClient`` that ``QdrantStore`` uses, on Qdrant Edge shards in ``root``.

    Requests and results are qdrant-client models, so the store code and its filters are the
    same on both engines. Thread-safe: Edge shards take concurrent reads.
    """

    def __init__(self, root: Path, *, indexing: EdgeIndexing | None = None) -> None:
        self.root = root
        self.indexing = indexing or EdgeIndexing()
        self._lock = FolderLock(root)
        self._shards: dict[str, qe.EdgeShard] = {}
        self._guard = threading.Lock()
        # Writes begun and ended, for ``write_epoch``.
        self._writes_begun = 0
        self._writes_ended = 0
        self._writes_guard = threading.Lock()

    @property
    def write_epoch(self) -> int | None:
        """How many writes (of points, payloads or collections) this client has begun, when none
        is under way; None while one is. The folder lock keeps every other process out, so point
        data read at one epoch stays true until the epoch changes: what a cache of it is
        checked against (the point cache of ``app.store.edge_search.EdgeSearch``)."""
        ended = self._writes_ended
        begun = self._writes_begun
        return begun if begun == ended else None

    # -- collections ----------------------------------------------------------------------------

    def _meta_path(self, name: str) -> Path:
        return self.root / f"{name}{_META_SUFFIX}"

    def _meta(self, name: str) -> dict[str, Any]:
        try:
            found: dict[str, Any] = json.loads(self._meta_path(name).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise StoreUnavailableError(f"collection {name!r} does not exist in {self.root}") from None
        return found

    def collection_exists(self, collection_name: str) -> bool:
        return self._meta_path(collection_name).is_file()

    def collection_names(self) -> list[str]:
        return sorted(p.name.removesuffix(_META_SUFFIX) for p in self.root.glob(f"*{_META_SUFFIX}"))

    def _shard(self, name: str) -> qe.EdgeShard:
        shard = self._shards.get(name)
        if shard is not None:
            return shard
        with self._guard:
            if name not in self._shards:
                if not self.collection_exists(name):
                    raise StoreUnavailableError(f"collection {name!r} does not exist in {self.root}")
                self._shards[name] = _load(self.root / name)
            return self._shards[name]

    @_writes
    def create_collection(
        self,
        collection_name: str,
        *,
        vectors_config: Any = None,
        sparse_vectors_config: Any = None,
        metadata: dict[str, Any] | None = None,
    ) -> bool:
        dense = {
            name: qe.EdgeVectorParams(size=params.size, distance=_distance(params.distance))
            for name, params in dict(vectors_config or {}).items()
        }
        dimension = max((params.size for params in dense.values()), default=1)
        sparse = {
            name: qe.EdgeSparseVectorParams(
                modifier=qe.Modifier.Idf if params.modifier == models.Modifier.IDF else None
            )
            for name, params in dict(sparse_vectors_config or {}).items()
        }
        # Edge counts thresholds in KB of vectors; the setting counts points.
        threshold_kb = max(1, self.indexing.exact_search_points * dimension * 4 // 1024)
        quantized = self.indexing.quantized
        config = qe.EdgeConfig(
            vectors=dense,
            sparse_vectors=sparse,
            # int8: no graph (m=0) and every search a scan of the quantized copy, which the
            # optimizer builds for segments over the indexing threshold.
            hnsw_config=qe.HnswIndexConfig(
                m=0 if quantized else self.indexing.hnsw_m,
                ef_construct=self.indexing.hnsw_ef_construct,
                full_scan_threshold=_ALWAYS_SCAN_KB if quantized else threshold_kb,
            ),
            quantization_config=(
                qe.ScalarQuantizationConfig(qe.ScalarType.Int8, quantile=0.99, memory=qe.Memory.Pinned)
                if quantized
                else None
            ),
            optimizers=qe.EdgeOptimizersConfig(indexing_threshold=threshold_kb),
        )
        path = self.root / collection_name
        with self._guard:
            if path.exists():  # the remains of a creation that did not finish
                shutil.rmtree(path)
            self._shards[collection_name] = qe.EdgeShard.create(str(path), config)
            meta = self._meta_path(collection_name)
            tmp = meta.with_suffix(".tmp")
            tmp.write_text(json.dumps({"metadata": metadata or {}, "dimension": dimension}), encoding="utf-8")
            os.replace(tmp, meta)
        return True

    @_writes
    def delete_collection(self, collection_name: str) -> bool:
        with self._guard:
            shard = self._shards.pop(collection_name, None)
            if shard is not None:
                shard.close()
            self._meta_path(collection_name).unlink(missing_ok=True)
            shutil.rmtree(self.root / collection_name, ignore_errors=True)
        return True

    @_writes
    def rename_collection(self, old_name: str, new_name: str) -> None:
        """Give a collection another name (``kb store migrate`` fills one under a temporary name:
        a collection that exists is always complete)."""
        with self._guard:
            if self.collection_exists(new_name):
                raise StoreUnavailableError(f"collection {new_name!r} already exists in {self.root}")
            shard = self._shards.pop(old_name, None)
            if shard is not None:
                shard.flush()
                shard.close()
            os.rename(self.root / old_name, self.root / new_name)
            os.replace(self._meta_path(old_name), self._meta_path(new_name))

    def get_collection(self, collection_name: str) -> models.CollectionInfo:
        meta = self._meta(collection_name)
        shard = self._shard(collection_name)
        info = shard.info()
        schema = {
            name: models.PayloadIndexInfo.model_construct(data_type=None, params=None, points=index.points)
            for name, index in info.payload_schema.items()
        }
        dimension = int(meta.get("dimension", 0))
        params = models.CollectionParams.model_construct(
            vectors={
                "dense": models.VectorParams.model_construct(size=dimension, distance=models.Distance.COSINE)
            }
        )
        return models.CollectionInfo.model_construct(
            status=models.CollectionStatus.GREEN,
            points_count=info.points_count,
            indexed_vectors_count=info.indexed_vectors_count,
            segments_count=info.segments_count,
            config=models.CollectionConfig.model_construct(
                params=params, metadata=meta.get("metadata") or {}
            ),
            payload_schema=schema,
        )

    def create_payload_index(
        self, collection_name: str, *, field_name: str, field_schema: Any = None
    ) -> object:
        self._shard(collection_name).update(
            qe.UpdateOperation.create_field_index(field_name, _schema(field_schema))
        )
        return _DONE

    # -- writes ---------------------------------------------------------------------------------

    @_writes
    def upsert(
        self, collection_name: str, *, points: Sequence[models.PointStruct], wait: bool = True
    ) -> object:
        self._shard(collection_name).update(qe.UpdateOperation.upsert_points([edge_point(p) for p in points]))
        return _DONE

    @_writes
    def delete(self, collection_name: str, *, points_selector: Any, wait: bool = True) -> object:
        selected = _selector(points_selector)
        shard = self._shard(collection_name)
        if isinstance(selected, qe.Filter):
            shard.update(qe.UpdateOperation.delete_points_by_filter(selected))
        else:
            shard.update(qe.UpdateOperation.delete_points(selected))
        return _DONE

    @_writes
    def set_payload(
        self,
        collection_name: str,
        *,
        payload: dict[str, Any],
        points: Any,
        key: str | None = None,
        wait: bool = True,
    ) -> object:
        selected = _selector(points)
        shard = self._shard(collection_name)
        if isinstance(selected, qe.Filter):
            shard.update(qe.UpdateOperation.set_payload_by_filter(selected, payload, key))
        else:
            shard.update(qe.UpdateOperation.set_payload(selected, payload, key))
        return _DONE

    @_writes
    def delete_payload(
        self, collection_name: str, *, keys: Sequence[str], points: Any, wait: bool = True
    ) -> object:
        selected = _selector(points)
        shard = self._shard(collection_name)
        if isinstance(selected, qe.Filter):
            shard.update(qe.UpdateOperation.delete_payload_by_filter(selected, list(keys)))
        else:
            shard.update(qe.UpdateOperation.delete_payload(selected, list(keys)))
        return _DONE

    # -- reads ----------------------------------------------------------------------------------

    def count(
        self, collection_name: str, *, count_filter: models.Filter | None = None, exact: bool = True
    ) -> models.CountResult:
        found = self._shard(collection_name).count(
            qe.CountRequest(exact=exact, filter=edge_filter(count_filter))
        )
        return models.CountResult(count=found)

    def scroll(
        self,
        collection_name: str,
        *,
        scroll_filter: models.Filter | None = None,
        limit: int = 10,
        offset: Any = None,
        with_payload: bool | Sequence[str] = True,
        with_vectors: bool | Sequence[str] = False,
    ) -> tuple[list[models.Record], Any]:
        points, following = self._shard(collection_name).scroll(
            qe.ScrollRequest(
                offset=None if offset is None else edge_id(offset),
                limit=limit,
                filter=edge_filter(scroll_filter),
                with_payload=edge_with_payload(with_payload),
                with_vector=with_vectors if isinstance(with_vectors, bool) else list(with_vectors),
            )
        )
        return [record(point) for point in points], (None if following is None else point_id(following))

    def query_batch_points(
        self, collection_name: str, *, requests: Sequence[models.QueryRequest]
    ) -> list[rest.QueryResponse]:
        oversampling = _RESCORE_OVERSAMPLING if self.indexing.quantized else None
        batch = qe.QueryBatchRequest(
            [edge_query(r, default_ef=self.indexing.hnsw_ef, oversampling=oversampling) for r in requests]
        )
        responses = self._shard(collection_name).query_batch(batch)
        return [
            rest.QueryResponse.model_construct(points=[scored_point(p) for p in points])
            for points in responses
        ]

    def query_points(
        self,
        collection_name: str,
        *,
        queries: Sequence[Nearest],
        query_filter: models.Filter | None = None,
    ) -> list[list[qe.ScoredPoint]]:
        """The nearest points of each of ``queries``, all under ``query_filter``, as Edge's own
        points, for callers that read them directly (``QdrantStore.search``): building
        qdrant-client models from them, or for the requests, costs more than the search itself
        at these sizes. The filter is translated once for the batch."""
        oversampling = _RESCORE_OVERSAMPLING if self.indexing.quantized else None
        found = edge_filter(query_filter)
        batch = qe.QueryBatchRequest(
            [
                edge_nearest(
                    query.vector,
                    using=query.using,
                    limit=query.limit,
                    filter=found,
                    with_payload=query.with_payload,
                    with_vector=query.with_vector,
                    params=edge_search_params(
                        query.params, default_ef=self.indexing.hnsw_ef, oversampling=oversampling
                    ),
                )
                for query in queries
            ]
        )
        return self._shard(collection_name).query_batch(batch)

    def retrieve(
        self,
        collection_name: str,
        ids: Sequence[Any],
        *,
        with_payload: bool = True,
        with_vector: bool | Sequence[str] = False,
    ) -> list[qe.Record]:
        """The points of ``ids`` (as Edge returned them, or as qdrant-client names them), Edge's
        own records; points that do not exist are left out."""
        return self._shard(collection_name).retrieve(
            [edge_id(point) for point in ids],
            with_payload=with_payload,
            with_vector=with_vector if isinstance(with_vector, bool) else list(with_vector),
        )

    # -- upkeep ---------------------------------------------------------------------------------

    def dense_index(self, collection_name: str) -> str:
        """``hnsw`` when a segment of the collection has an HNSW graph of its dense vectors,
        ``int8`` when one has their quantized copy (and no graph), else ``plain`` (searched
        exactly). Read from the segments' configuration: Edge's counts of indexed vectors include
        the sparse index, which every segment has."""
        kinds: set[str] = set()
        for config in (self.root / collection_name / "segments").glob("*/segment.json"):
            with contextlib.suppress(OSError, ValueError, KeyError, TypeError, AttributeError):
                vectors = json.loads(config.read_text(encoding="utf-8"))["config"]["vector_data"]
                kinds.update(_index_kind(params) for params in vectors.values())
        return next((kind for kind in ("hnsw", "int8") if kind in kinds), "plain")

    def optimize(self, collection_name: str) -> bool:
        """Build the HNSW index of segments over the threshold (and merge small ones). Blocking,
        minutes on a large collection: never on the request or ingest path."""
        shard = self._shard(collection_name)
        changed = shard.optimize()
        shard.flush()
        return changed

    def close(self) -> None:
        with self._guard:
            shards, self._shards = list(self._shards.values()), {}
            for shard in shards:
                with contextlib.suppress(Exception):  # closing must not mask the real error
                    shard.flush()
                    shard.close()
            self._lock.release()


def _index_kind(params: dict[str, Any]) -> str:
    index = params["index"]
    if index["type"] == "hnsw" and int(index.get("options", {}).get("m", 0)) > 0:
        return "hnsw"
    return "int8" if params.get("quantization_config") else "plain"


def _load(path: Path) -> qe.EdgeShard:
    try:
        return qe.EdgeShard.load(str(path))
    except Exception as exc:
        if "WouldBlock" in str(exc):  # another process without our lock file (should not happen)
            raise StoreLockedError(f"the embedded store at {path} is in use by another process") from None
        raise StoreUnavailableError(f"cannot open the embedded store at {path}: {exc}") from exc


def _distance(distance: models.Distance) -> qe.Distance:
    return {
        models.Distance.COSINE: qe.Distance.Cosine,
        models.Distance.DOT: qe.Distance.Dot,
        models.Distance.EUCLID: qe.Distance.Euclid,
        models.Distance.MANHATTAN: qe.Distance.Manhattan,
    }[distance]


def _schema(schema: object) -> Any:
    if isinstance(schema, models.KeywordIndexParams):
        return qe.KeywordIndexParams(is_tenant=schema.is_tenant)
    if schema == models.PayloadSchemaType.KEYWORD:
        return qe.PayloadSchemaType.Keyword
    raise NotImplementedError(f"payload index {schema!r} is not translated to Qdrant Edge")


def _selector(selector: object) -> qe.Filter | list[Any]:
    """A points selector as Edge takes it: a filter, or a list of ids."""
    if isinstance(selector, models.FilterSelector):
        selector = selector.filter
    if isinstance(selector, models.Filter):
        found = edge_filter(selector)
        assert found is not None
        return found
    if isinstance(selector, models.PointIdsList):
        selector = selector.points
    if isinstance(selector, list):
        return [edge_id(point) for point in selector]
    raise NotImplementedError(f"points selector {type(selector).__name__} is not translated to Qdrant Edge")
