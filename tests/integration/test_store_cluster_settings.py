"""``store.cluster`` on a server: the collection is created with it, searches ask for rescoring.

No Qdrant server runs here. ``WireQdrant`` stands in for one on loopback: a small HTTP server
that records every request body (the wire, as a real server would receive it from
qdrant-client) and answers each from qdrant-client's in-process engine (``QdrantClient(":memory:")``).
The store is opened the product's way, ``open_store`` with ``QDRANT_URL`` set, so the settings
go through ``server_layout``, ``QdrantStore`` and qdrant-client's REST client. In-process mode
keeps only the vectors and metadata of a new collection (its ``get_collection`` reports no shard
number, replication, on-disk or quantization settings), so those are checked in the recorded
``PUT /collections/kb`` body, and the rest is read back from the engine.

Two stores creating the collection at once (``kb ingest --shard`` processes) are forced into the
race: the recorder holds both existence checks until both have asked, then lets the creates
through one at a time; the loser's create is answered 409 "already exists", as a server does.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import structlog
from qdrant_client import QdrantClient, models

from app.config import load_settings
from app.errors import ModelMismatchError, StoreUnavailableError
from app.records import ChunkRecord, SparseTerms
from app.settings import Settings
from app.store import QdrantStore, open_store

pytestmark = pytest.mark.integration

DIM = 8
MODEL = "test-model"
_OK: dict[str, Any] = {"status": "ok", "time": 0.0}
_ROUTE = re.compile(r"^/collections/(?P<name>[^/?]+)(?P<rest>/[^?]*)?")


@dataclass
class Recorded:
    method: str
    path: str
    body: Any
    status: int = 200


@dataclass
class WireQdrant:
    """Loopback HTTP in front of the in-process engine, recording requests."""

    engine: QdrantClient = field(default_factory=lambda: QdrantClient(":memory:"))
    requests: list[Recorded] = field(default_factory=list)
    hold_existence_checks: int = 0
    """Answer none of the first this many existence checks until they have all arrived (forces
    the creation race); later checks are answered at once."""
    fail_creates: bool = False
    """Answer every create with a server error (a create that fails for a reason of its own)."""

    def __post_init__(self) -> None:
        self._creating = threading.Lock()
        self._checks_seen = 0
        self._checks = threading.Barrier(self.hold_existence_checks) if self.hold_existence_checks else None
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def bodies(self, method: str, suffix: str = "") -> list[Recorded]:
        return [
            r for r in self.requests if r.method == method and r.path.endswith(f"/collections/kb{suffix}")
        ]

    def __enter__(self) -> WireQdrant:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self.engine.close()

    def answer(self, method: str, name: str, rest: str, body: Any) -> tuple[int, Any]:
        engine = self.engine
        if method == "GET" and rest == "/exists":
            exists = engine.collection_exists(name)
            with self._creating:
                self._checks_seen += 1
                held = self._checks is not None and self._checks_seen <= self.hold_existence_checks
            if held and self._checks is not None:
                self._checks.wait(timeout=10)
            return 200, {"exists": exists}
        if method == "PUT" and rest == "":
            if self.fail_creates:
                return 500, None
            spec = models.CreateCollection.model_validate(body)
            with self._creating:  # a server serialises creates (consensus)
                try:
                    engine.create_collection(
                        name,
                        vectors_config=spec.vectors,  # type: ignore[arg-type]
                        sparse_vectors_config=spec.sparse_vectors,
                        metadata=spec.metadata,
                    )
                except ValueError as exc:
                    if "already exists" not in str(exc):
                        raise
                    return 409, None
            return 200, True
        if method == "GET" and rest == "":
            return 200, engine.get_collection(name).model_dump(mode="json")
        if method == "PUT" and rest == "/index":
            return 200, {"operation_id": 0, "status": "completed"}
        if method == "PUT" and rest == "/points":
            points = [models.PointStruct.model_validate(p) for p in body["points"]]
            engine.upsert(name, points=points, wait=True)
            return 200, {"operation_id": 0, "status": "completed"}
        if method == "POST" and rest == "/points/query/batch":
            batch = models.QueryRequestBatch.model_validate(body)
            responses = engine.query_batch_points(name, requests=batch.searches)
            return 200, [r.model_dump(mode="json") for r in responses]
        return 404, None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        wire = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                match = _ROUTE.match(self.path)
                recorded = Recorded(self.command, self.path.split("?")[0], body)
                wire.requests.append(recorded)
                if match is None:
                    status, result = 404, None
                else:
                    status, result = wire.answer(self.command, match["name"], match["rest"] or "", body)
                recorded.status = status
                if status == 200:
                    payload = {"result": result, **_OK}
                else:  # how a server words a conflict or a failure
                    error = f"Wrong input: Collection `{match['name'] if match else ''}` already exists!"
                    payload = {"status": {"error": error if status == 409 else "Service internal error"}}
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = _serve

            def log_message(self, *args: Any) -> None:
                pass

        return Handler


def server_settings(url: str, tmp_path: Path, **cluster: str) -> Settings:
    environ = {"KB_DATA_DIR": str(tmp_path / "data"), "QDRANT_URL": url}
    environ.update({f"KB_STORE__CLUSTER__{name.upper()}": value for name, value in cluster.items()})
    return load_settings(environ=environ)


@pytest.fixture
def wire() -> Iterator[WireQdrant]:
    with WireQdrant() as server:
        yield server


def chunk(index: int) -> ChunkRecord:
    return ChunkRecord(
        point_id=f"00000000-0000-0000-0000-{index:012d}",
        doc_id=f"doc-{index}",
        source=f"docs/{index}.md",
        title=f"doc {index}",
        chunk_index=0,
        chunk_count=1,
        text=f"text {index}",
        doc_hash=f"h{index}",
        text_hash=f"t{index}",
        ingested_at="2026-01-01T00:00:00Z",
    )


def test_a_server_collection_is_created_with_the_cluster_settings(wire: WireQdrant, tmp_path: Path) -> None:
    settings = server_settings(
        wire.url,
        tmp_path,
        shard_number="6",
        replication_factor="3",
        write_consistency_factor="2",
        on_disk_payload="false",
        on_disk_vectors="true",
        quantization='"int8"',
        quantization_quantile="0.95",
        quantization_always_ram="false",
    )
    store = open_store(settings)
    try:
        store.ensure_collection(model_name=MODEL, dimension=DIM, lexical_version="t1")
    finally:
        store.close()

    [create] = wire.bodies("PUT")
    body = create.body
    assert (body["shard_number"], body["replication_factor"], body["write_consistency_factor"]) == (6, 3, 2)
    assert body["on_disk_payload"] is False
    assert body["vectors"]["dense"] == {"size": DIM, "distance": "Cosine", "on_disk": True}
    assert body["hnsw_config"] == {
        "m": settings.store.hnsw_m,
        "ef_construct": settings.store.hnsw_ef_construct,
    }
    assert body["quantization_config"] == {"scalar": {"type": "int8", "quantile": 0.95, "always_ram": False}}
    # What in-process mode keeps of it, read back: the vectors and the model's record.
    info = wire.engine.get_collection("kb")
    assert info.config.metadata == {"embedding_model": MODEL, "dimension": DIM, "lexical": "t1"}
    vectors = info.config.params.vectors
    assert isinstance(vectors, dict) and vectors["dense"].size == DIM
    assert len(wire.bodies("PUT", "/index")) == 4  # the payload indexes, after the create


def test_the_default_layout_sends_the_defaults_and_no_quantization(wire: WireQdrant, tmp_path: Path) -> None:
    store = open_store(server_settings(wire.url, tmp_path))
    try:
        store.ensure_collection(model_name=MODEL, dimension=DIM)
    finally:
        store.close()

    body = wire.bodies("PUT")[0].body
    assert "shard_number" not in body  # the server's choice: one per node
    assert (body["replication_factor"], body["write_consistency_factor"], body["on_disk_payload"]) == (
        1,
        1,
        True,
    )
    assert body["vectors"]["dense"]["on_disk"] is False
    assert "quantization_config" not in body


@pytest.mark.parametrize(
    ("cluster", "expected"),
    [
        ({"quantization": '"int8"', "oversampling": "3.0"}, {"rescore": True, "oversampling": 3.0}),
        ({"quantization": '"int8"', "rescore": "false"}, {"rescore": False, "oversampling": 2.0}),
        ({}, None),
    ],
    ids=["int8", "int8-no-rescore", "none"],
)
@pytest.mark.filterwarnings("ignore:Local mode performs exact:UserWarning")  # the engine behind the wire
def test_dense_searches_ask_for_rescoring_only_when_quantization_is_on(
    wire: WireQdrant, tmp_path: Path, cluster: dict[str, str], expected: dict[str, Any] | None
) -> None:
    settings = server_settings(wire.url, tmp_path, **cluster)
    store = open_store(settings)
    rng = np.random.default_rng(7)
    try:
        store.ensure_collection(model_name=MODEL, dimension=DIM)
        vectors = rng.normal(size=(5, DIM)).astype(np.float32)
        store.upsert(
            [chunk(i) for i in range(5)], vectors, [SparseTerms([i + 1], [1.0]) for i in range(5)], tenant="t"
        )
        dense_hits, lexical_hits = store.search(dense=vectors[2], sparse=SparseTerms([3], [1.0]), limit=3)
    finally:
        store.close()

    assert dense_hits[0].record.doc_id == "doc-2"  # the engine behind the wire answered
    assert [h.record.doc_id for h in lexical_hits] == ["doc-2"]
    dense_request, sparse_request = wire.bodies("POST", "/points/query/batch")[0].body["searches"]
    assert dense_request["params"]["hnsw_ef"] == settings.store.hnsw_ef
    if expected is None:
        assert dense_request["params"].get("quantization") is None
    else:
        assert {k: dense_request["params"]["quantization"][k] for k in expected} == expected
    assert sparse_request.get("params") is None  # sparse vectors are never quantized


def ensure_at_once(url: str, tmp_path: Path, models_: list[str]) -> list[BaseException | None]:
    """Each store (a ``kb ingest --shard`` process of its own) ensures the collection at once."""

    def one(number: int) -> BaseException | None:
        store = open_store(server_settings(url, tmp_path / str(number)))
        try:
            store.ensure_collection(model_name=models_[number], dimension=DIM)
        except BaseException as exc:
            return exc
        finally:
            store.close()
        return None

    with ThreadPoolExecutor(len(models_)) as pool:
        return list(pool.map(one, range(len(models_))))


def test_two_shards_creating_the_collection_at_once_both_go_on(tmp_path: Path) -> None:
    with WireQdrant(hold_existence_checks=2) as wire:
        outcomes = ensure_at_once(wire.url, tmp_path, [MODEL, MODEL])
        creates = sorted(r.status for r in wire.bodies("PUT"))
        meta = wire.engine.get_collection("kb").config.metadata

    assert outcomes == [None, None]
    assert creates == [200, 409]  # both tried: the race happened, and one lost it
    assert meta is not None and meta["embedding_model"] == MODEL


def test_the_loser_of_the_race_still_refuses_a_collection_of_another_model(tmp_path: Path) -> None:
    with WireQdrant(hold_existence_checks=2) as wire:
        outcomes = ensure_at_once(wire.url, tmp_path, [MODEL, "other-model"])
        meta = wire.engine.get_collection("kb").config.metadata
        creates = sorted(r.status for r in wire.bodies("PUT"))

    assert creates == [200, 409]
    assert meta is not None
    winner = meta["embedding_model"]
    [loser] = [o for o in outcomes if o is not None]
    assert isinstance(loser, ModelMismatchError)
    assert f"filled by embedding model {winner!r}" in loser.message


def test_a_create_that_fails_otherwise_is_a_store_error(tmp_path: Path) -> None:
    with WireQdrant(fail_creates=True) as wire:
        store = open_store(server_settings(wire.url, tmp_path))
        try:
            with pytest.raises(StoreUnavailableError, match="cannot create collection 'kb'"):
                store.ensure_collection(model_name=MODEL, dimension=DIM)
        finally:
            store.close()
        assert not wire.engine.collection_exists("kb")


def embedded_settings(tmp_path: Path, **environ: str) -> Settings:
    return load_settings(environ={"KB_DATA_DIR": str(tmp_path / "data"), **environ})


@pytest.mark.parametrize("engine", ["edge", "local"])
def test_the_embedded_store_ignores_the_cluster_settings_and_says_so_once(
    engine: str, tmp_path: Path
) -> None:
    settings = embedded_settings(
        tmp_path,
        KB_STORE__ENGINE=engine,
        KB_STORE__CLUSTER__REPLICATION_FACTOR="2",
        KB_STORE__CLUSTER__QUANTIZATION='"int8"',
    )
    with structlog.testing.capture_logs() as logs:
        store = open_store(settings)
        try:
            store.ensure_collection(model_name=MODEL, dimension=DIM)
            store.upsert(
                [chunk(1)], np.ones((1, DIM), dtype=np.float32), [SparseTerms([1], [1.0])], tenant="t"
            )
            hits, _ = store.search(dense=np.ones(DIM, dtype=np.float32), sparse=None, limit=1)
            store.count()
        finally:
            store.close()

    assert [h.record.doc_id for h in hits] == ["doc-1"]  # the store works, without them
    said = [entry for entry in logs if entry["event"] == "store_settings_ignored"]
    assert len(said) == 1, logs
    assert said[0]["log_level"] == "warning" and said[0]["engine"] == engine
    assert said[0]["settings"] == ["store.cluster.replication_factor", "store.cluster.quantization"]
    assert "QDRANT_URL" in said[0]["reason"] or engine == "local"


def test_the_embedded_store_says_nothing_when_the_settings_are_the_defaults(tmp_path: Path) -> None:
    with structlog.testing.capture_logs() as logs:
        store = open_store(embedded_settings(tmp_path))
        store.close()
    assert not [entry for entry in logs if entry["event"] == "store_settings_ignored"]


def test_local_mode_names_the_hnsw_settings_it_ignores_too(tmp_path: Path) -> None:
    settings = embedded_settings(tmp_path, KB_STORE__ENGINE="local", KB_STORE__HNSW_M="48")
    with structlog.testing.capture_logs() as logs:
        store = open_store(settings)
        store.close()
    [said] = [entry for entry in logs if entry["event"] == "store_settings_ignored"]
    assert said["settings"] == ["store.hnsw_m"]


def test_a_server_store_logs_nothing_about_its_settings(wire: WireQdrant, tmp_path: Path) -> None:
    with structlog.testing.capture_logs() as logs:
        store = open_store(server_settings(wire.url, tmp_path, quantization='"int8"'))
        store.close()
    assert isinstance(store, QdrantStore)
    assert not [entry for entry in logs if entry["event"] == "store_settings_ignored"]
