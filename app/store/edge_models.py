"""Qdrant Edge's objects from qdrant-client's models, and back.

qdrant-client's models are the store's one vocabulary (``app.store.filters`` and
``app.store.tenants`` build ``models.Filter``; ``QdrantStore`` builds points and queries), so the
Edge adapter translates at its edge: requests in, results out. Only what the store uses is
translated; anything else is refused with ``NotImplementedError`` rather than dropped, because a
condition silently left out of a filter would widen a tenant's search.
"""

from __future__ import annotations

import functools
import struct
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import qdrant_edge as qe
from qdrant_client import models

from app.records import SparseTerms

__all__ = [
    "dense_array",
    "edge_filter",
    "edge_id",
    "edge_nearest",
    "edge_point",
    "edge_query",
    "edge_search_params",
    "edge_with_payload",
    "point_id",
    "record",
    "scored_point",
]


def point_id(value: object) -> int | str:
    """A point id as qdrant-client gives it: uuids as their hyphenated string."""
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, int | str):
        return value
    raise TypeError(f"unexpected point id {value!r}")


# -- filters ------------------------------------------------------------------------------------


def edge_filter(found: models.Filter | None) -> qe.Filter | None:
    if found is None:
        return None
    if found.min_should is not None:
        raise NotImplementedError("min_should is not translated to Qdrant Edge")
    return qe.Filter(
        must=_conditions(found.must),
        should=_conditions(found.should),
        must_not=_conditions(found.must_not),
    )


def _conditions(conditions: object) -> list[Any] | None:
    if conditions is None:
        return None
    items = conditions if isinstance(conditions, list) else [conditions]
    return [_condition(item) for item in items]


def _condition(condition: object) -> Any:
    if isinstance(condition, models.Filter):
        return edge_filter(condition)
    if isinstance(condition, models.FieldCondition):
        return _field(condition)
    if isinstance(condition, models.IsEmptyCondition):
        return qe.IsEmptyCondition(condition.is_empty.key)
    if isinstance(condition, models.IsNullCondition):
        return qe.IsNullCondition(condition.is_null.key)
    if isinstance(condition, models.HasIdCondition):
        return qe.HasIdCondition({edge_id(point) for point in condition.has_id})
    raise NotImplementedError(f"filter condition {type(condition).__name__} is not translated to Qdrant Edge")


def _field(condition: models.FieldCondition) -> qe.FieldCondition:
    unsupported = (
        condition.geo_bounding_box,
        condition.geo_radius,
        condition.geo_polygon,
        condition.values_count,
    )
    if any(part is not None for part in unsupported):
        raise NotImplementedError("geo and values_count conditions are not translated to Qdrant Edge")
    match: Any = None
    found = condition.match
    if isinstance(found, models.MatchValue):
        match = qe.MatchValue(found.value)
    elif isinstance(found, models.MatchAny):
        match = qe.MatchAny(list(found.any))  # type: ignore[arg-type]
    elif isinstance(found, models.MatchExcept):
        match = qe.MatchExcept(list(found.except_))  # type: ignore[arg-type]
    elif isinstance(found, models.MatchText):
        match = qe.MatchText(found.text)
    elif found is not None:
        raise NotImplementedError(f"match {type(found).__name__} is not translated to Qdrant Edge")
    bounds: Any = None
    if isinstance(condition.range, models.Range):
        r = condition.range
        bounds = qe.RangeFloat(gte=r.gte, gt=r.gt, lte=r.lte, lt=r.lt)
    elif condition.range is not None:
        raise NotImplementedError("datetime ranges are not translated to Qdrant Edge")
    return qe.FieldCondition(
        condition.key, match=match, range=bounds, is_empty=condition.is_empty, is_null=condition.is_null
    )


def edge_id(value: object) -> int | uuid.UUID | str:
    """A point id as Edge takes it: uuid strings as ``UUID``."""
    if isinstance(value, str):
        try:
            return uuid.UUID(value)
        except ValueError:
            return value
    if isinstance(value, int | uuid.UUID):
        return value
    raise TypeError(f"unexpected point id {value!r}")


# -- points and queries -------------------------------------------------------------------------


def _edge_vector(vector: object) -> Any:
    if isinstance(vector, models.SparseVector):
        return qe.SparseVector(list(vector.indices), [float(v) for v in vector.values])
    if isinstance(vector, list):
        return [float(v) for v in vector]
    raise NotImplementedError(f"vector {type(vector).__name__} is not translated to Qdrant Edge")


def edge_point(point: models.PointStruct) -> qe.Point:
    vector = point.vector
    if not isinstance(vector, Mapping):
        raise NotImplementedError("only named vectors are translated to Qdrant Edge")
    named = {name: _edge_vector(value) for name, value in vector.items()}
    return qe.Point(edge_id(point.id), named, dict(point.payload or {}))


def edge_with_payload(selector: object) -> Any:
    if isinstance(selector, bool):
        return selector
    if isinstance(selector, Sequence) and not isinstance(selector, str):
        return qe.PayloadSelector.Include([str(key) for key in selector])
    raise NotImplementedError(f"payload selector {selector!r} is not translated to Qdrant Edge")


def _edge_with_vector(selector: object) -> bool | list[str]:
    if isinstance(selector, bool):
        return selector
    if isinstance(selector, Sequence) and not isinstance(selector, str):
        return [str(name) for name in selector]
    raise NotImplementedError(f"vector selector {selector!r} is not translated to Qdrant Edge")


def edge_query(
    request: models.QueryRequest, *, default_ef: int | None, oversampling: float | None = None
) -> qe.QueryRequest:
    """One nearest-neighbour query; ``default_ef`` is the HNSW beam when the request names none
    (it only matters on a segment that has an HNSW index; plain segments are searched exactly).
    ``oversampling``: on segments with quantized vectors, scan them and rescore this many times
    the limit against the original vectors (segments without ignore it)."""
    if request.prefetch is not None or request.offset:
        raise NotImplementedError("prefetch and offset are not translated to Qdrant Edge")
    query = request.query
    if isinstance(query, models.NearestQuery):
        query = query.nearest
    return qe.QueryRequest(
        limit=request.limit if request.limit is not None else 10,
        query=qe.Query.Nearest(_edge_vector(query), using=request.using),
        filter=edge_filter(request.filter),
        with_payload=edge_with_payload(request.with_payload if request.with_payload is not None else False),
        with_vector=_edge_with_vector(request.with_vector if request.with_vector is not None else False),
        score_threshold=request.score_threshold,
        params=edge_search_params(request.params, default_ef=default_ef, oversampling=oversampling),
    )


def edge_search_params(
    params: models.SearchParams | None, *, default_ef: int | None, oversampling: float | None
) -> qe.SearchParams:
    """A query's search parameters, as ``edge_query`` describes them."""
    ef = params.hnsw_ef if params is not None and params.hnsw_ef is not None else default_ef
    exact = bool(params.exact) if params is not None and params.exact is not None else False
    return qe.SearchParams(
        hnsw_ef=ef,
        exact=exact,
        quantization=(
            qe.QuantizationSearchParams(rescore=True, oversampling=oversampling)
            if oversampling is not None and not exact
            else None
        ),
    )


def edge_nearest(
    vector: list[float] | SparseTerms,
    *,
    using: str,
    limit: int,
    filter: qe.Filter | None,
    with_payload: bool,
    with_vector: bool | list[str],
    params: qe.SearchParams,
) -> qe.QueryRequest:
    """``edge_query`` of a request the store would have built, from its parts directly: no
    qdrant-client model in between (building and validating one costs more than translating
    it). ``filter`` and ``params`` are translated already, once for every query of a batch."""
    query = (
        qe.SparseVector(list(vector.indices), [float(v) for v in vector.values])
        if isinstance(vector, SparseTerms)
        else vector
    )
    return qe.QueryRequest(
        limit=limit,
        query=qe.Query.Nearest(query, using=using),
        filter=filter,
        with_payload=with_payload,
        with_vector=with_vector,
        params=params,
    )


# -- results ------------------------------------------------------------------------------------


def _client_vector(vector: object) -> Any:
    if isinstance(vector, dict):
        return {name: _client_vector(value) for name, value in vector.items()}
    if isinstance(vector, qe.SparseVector):
        # model_construct: results are the engine's own, validating them again costs more than
        # the search at these sizes.
        return models.SparseVector.model_construct(indices=list(vector.indices), values=list(vector.values))
    return vector


def scored_point(point: qe.ScoredPoint) -> models.ScoredPoint:
    return models.ScoredPoint.model_construct(
        id=point_id(point.id),
        version=point.version,
        score=point.score,
        payload=point.payload,
        vector=_client_vector(point.vector),
        shard_key=None,
        order_value=None,
    )


def record(point: qe.Record) -> models.Record:
    return models.Record.model_construct(
        id=point_id(point.id),
        payload=point.payload,
        vector=_client_vector(point.vector),
        shard_key=None,
        order_value=None,
    )


@functools.lru_cache(maxsize=8)
def _packer(size: int) -> struct.Struct:
    return struct.Struct(f"={size}f")


def dense_array(values: list[float]) -> np.ndarray:
    """A dense vector as Edge returns it (a list of floats) as a float32 array of its own, equal
    bit for bit to ``np.asarray(values, dtype=np.float32)``: packing the floats straight into
    the array's buffer skips numpy's inspection of a Python sequence, most of that call's cost.
    The floats are float32 values already (the engine stores float32), so no rounding differs."""
    found = np.empty(len(values), dtype=np.float32)
    _packer(len(values)).pack_into(found.data, 0, *values)
    return found
