"""Overhead of the access controls (API-key auth + rate limits) on the ``/ask`` path.

Two measurements, each in one run against the same path with the controls off:

1. ``/ask`` in process: the real handler, guard, key resolution, limiter and error mapping of
   ``app.http``, served over ASGI (httpx's ``ASGITransport``), with a stand-in pipeline that
   does no retrieval and calls no model but draws on the token budget exactly as the real
   runner does (reserve before the answer, settle after). Arms, interleaved request by
   request so that drift hits them alike:

   * ``off``: anonymous caller, ``limits.enabled = false``;
   * ``memory``: a stored API key (state store in memory), limits in memory;
   * ``redis``: a stored API key in Redis, limits in Redis (a redis-server on loopback).

2. The controls alone: the calls the handler makes (key resolution, request limit, admission
   with the token pre-check and the answer slot, reservation, settlement, release), timed
   without HTTP around them.

Requests rotate over 40 keys under ordinary limits (100 requests a minute each), high enough
never to refuse within a run. Targets (issue 10): overhead p50 <= 1 ms in memory,
<= 3 ms with Redis on loopback.

Usage: .venv/bin/python bench/bench_access.py [--requests 1000] [--max-seconds 60]

Not a test: timings depend on the machine, so nothing here asserts.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
from litestar import Litestar
from litestar.datastructures import State
from litestar.di import Provide

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.access import KeyRing
from app.access.limit_store import RedisSlots
from app.access.limits import Limiter, open_limiter
from app.config import load_settings
from app.http.ask import ask_route
from app.http.auth import provide_caller, require_access
from app.http.errors import EXCEPTION_HANDLERS
from app.http.limits import provide_limiter
from app.pipeline import AskPipeline, DeltaEvent, DoneEvent, RetrievalEvent, UsageView
from app.records import Caller
from app.services import Services
from app.settings import Settings
from app.settings.limits import LimitSettings
from app.state import MemoryStateStore, StateStore, open_state_store
from tests.services.redis import RedisServer, redis_server_binary

__all__: list[str] = []

KEYS = 40
"""Requests rotate over this many keys, each under an ordinary request limit, so that the
moving window of each key holds what real traffic leaves in it (a few dozen entries), never
the whole run."""
LIMITS = {
    "default": {"requests": {"ask": "100/minute"}, "concurrency": 4, "tokens": "10000000/hour"},
    "tenant_tokens": "100000000/hour",
    "model_tokens": "100000000/minute",
}
BODY = b'{"question": "How do I install on Linux?"}'


class StandInPipeline(AskPipeline):
    """What the handler calls of ``AskPipeline``, without retrieval or a model. It reserves and
    settles tokens like the real runner, so the token budgets cost what they cost. (A subclass:
    the handler's dependency is type-checked.)"""

    def __init__(self) -> None:
        pass

    async def prepare(self, request: Any, *, caller: Caller, prompt_override: str | None = None) -> Any:
        return request

    async def run(
        self, prepared: Any, *, request_id: str | None = None, budget: Any = None
    ) -> AsyncIterator[Any]:
        yield RetrievalEvent(status="empty", sources=[], took_ms=0.0)
        granted = await budget.reserve(input_tokens=1500, max_output_tokens=1024) if budget else 1024
        try:
            yield DeltaEvent("The documents do not say.")
        finally:
            if budget:
                await budget.settle(input_tokens=1500, output_tokens=min(granted, 7))
        yield DoneEvent(
            citations=[],
            usage=UsageView(1500, 7),
            model="stand-in",
            prompt_version="answer@v1",
            request_id=request_id or "",
            timings_ms={},
        )


def build_app(settings: Settings, keys: KeyRing, limiter: Limiter) -> Litestar:
    """The ``/ask`` route as ``app.http.app`` wires it (guard, dependencies, error mapping)."""
    # Only what the route uses of ``Services`` (the dependency is type-checked, so it is one).
    services = object.__new__(Services)
    services.settings, services.keys, services.limits = settings, keys, limiter
    pipeline = StandInPipeline()

    def provide_services(state: State) -> Any:
        return state.services

    app = Litestar(
        route_handlers=[ask_route(max_top_k=20, max_body_bytes=65_536)],
        guards=[require_access],
        dependencies={
            "services": Provide(provide_services, sync_to_thread=False),
            "pipeline": Provide(lambda: pipeline, sync_to_thread=False),
            "heartbeat_s": Provide(lambda: 10.0, sync_to_thread=False),
            "caller": Provide(provide_caller),
            "limiter": Provide(provide_limiter, sync_to_thread=False),
        },
        exception_handlers=EXCEPTION_HANDLERS,
        logging_config=None,
    )
    app.state.services = services
    return app


class Arm:
    def __init__(self, name: str, settings: Settings, state: StateStore, *, keyed: bool) -> None:
        self.name = name
        self.settings = settings
        self.state = state
        self.keys = KeyRing(state, settings.access)
        self.limiter = open_limiter(settings)
        self.keyed = keyed
        self.api_keys: list[str] = []
        self.turn = 0
        self.client: httpx.AsyncClient | None = None
        self.http_ms: list[float] = []
        self.controls_ms: list[float] = []
        self.round_trip_ms: list[float] = []

    async def open(self) -> None:
        if self.keyed:  # created in the state store, as ``kb keys create`` does
            for number in range(KEYS):
                key, _ = await self.keys.create(name=f"bench-{number}", tenant="acme", role="user")
                self.api_keys.append(key)
        app = build_app(self.settings, self.keys, self.limiter)
        self.client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench")

    def next_key(self) -> str | None:
        self.turn += 1
        return self.api_keys[self.turn % len(self.api_keys)] if self.api_keys else None

    async def request(self) -> None:
        assert self.client is not None
        key = self.next_key()
        headers = {"content-type": "application/json"}
        if key:
            headers["authorization"] = f"Bearer {key}"
        started = time.perf_counter()
        response = await self.client.post("/ask", content=BODY, headers=headers)
        self.http_ms.append((time.perf_counter() - started) * 1000)
        if response.status_code != 200 or not response.text.rstrip().endswith("}"):
            raise RuntimeError(f"{self.name}: {response.status_code} {response.text[:200]}")

    async def controls(self) -> None:
        """The controls' calls alone, as the handler makes them for one answer."""
        key = self.next_key()
        started = time.perf_counter()
        if key:
            record = await self.keys.resolve(key)
            caller = Caller(
                key_id=record.id, name=record.name, tenant=record.tenant, role=record.role, client=""
            )
        else:
            caller = Caller(
                key_id=None, name="anonymous", tenant="default", role="anonymous", client="127.0.0.1"
            )
        requests = await self.limiter.count_request(caller, "ask")
        admission = await self.limiter.admit(caller, requests=requests)
        granted = await admission.budget.reserve(input_tokens=1500, max_output_tokens=1024)
        await admission.budget.settle(input_tokens=1500, output_tokens=min(granted, 7))
        await admission.release()
        self.controls_ms.append((time.perf_counter() - started) * 1000)

    async def round_trip(self) -> None:
        """One bare Redis command over the limiter's own pool: what each of its calls waits at
        least, on this machine, now."""
        slots = self.limiter.store.slots
        if isinstance(slots, RedisSlots):
            started = time.perf_counter()
            await slots.client.get("bench:round-trip")
            self.round_trip_ms.append((time.perf_counter() - started) * 1000)

    async def close(self) -> None:
        if self.client is not None:
            await self.client.aclose()
        await self.limiter.aclose()
        await self.state.aclose()


def arm_settings(data_dir: Path, *, controls: bool, strategy: str, redis_url: str | None = None) -> Settings:
    environ = {"KB_DATA_DIR": str(data_dir), **({"REDIS_URL": redis_url} if redis_url else {})}
    # Verified keys skip the slow hash for the whole run, as they do between a key's requests.
    access = {"anonymous": not controls, "verified_cache_s": 300.0}
    limits: dict[str, Any] = {**LIMITS, "strategy": strategy} if controls else {"enabled": False}
    return load_settings(environ=environ, overrides={"access": access, "limits": limits})


def p50(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


async def interleaved(
    arms: list[Arm], step: Callable[[Arm], Awaitable[None]], count: int, deadline: float
) -> int:
    done = 0
    for _ in range(count):
        if time.monotonic() > deadline:
            break
        for arm in arms:
            await step(arm)
        done += 1
    return done


async def run(requests: int, max_seconds: float, strategy: str) -> None:
    deadline = time.monotonic() + max_seconds
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        redis: RedisServer | None = None
        if redis_server_binary() is not None:
            redis = RedisServer(root / "redis").start()
        else:
            print("redis-server is not installed: the Redis arm is skipped")
        arms = [
            Arm(
                "off",
                arm_settings(root / "off", controls=False, strategy=strategy),
                MemoryStateStore(),
                keyed=False,
            ),
            Arm(
                "memory",
                arm_settings(root / "mem", controls=True, strategy=strategy),
                MemoryStateStore(),
                keyed=True,
            ),
        ]
        if redis is not None:
            settings = arm_settings(root / "redis", controls=True, strategy=strategy, redis_url=redis.url(1))
            arms.append(Arm("redis", settings, open_state_store(settings), keyed=True))
        try:
            for arm in arms:
                await arm.open()
            warm = min(50, requests)
            await interleaved(arms, Arm.request, warm, deadline)
            await interleaved(arms, Arm.controls, warm, deadline)
            for arm in arms:
                arm.http_ms.clear()
                arm.controls_ms.clear()
            measured = await interleaved(arms, Arm.request, requests, deadline)
            controlled = await interleaved(arms, Arm.controls, requests, deadline)
            await interleaved(arms, Arm.round_trip, min(requests, 500), deadline + 5)
        finally:
            for arm in arms:
                await arm.close()
            if redis is not None:
                redis.stop()
    off = arms[0]
    print(f"/ask in process, {measured} requests per arm (interleaved), p50 ms:")
    print(f"  {'arm':<8} {'p50':>8} {'p90':>8} {'overhead p50':>14}")
    for arm in arms:
        p90 = statistics.quantiles(arm.http_ms, n=10)[-1] if len(arm.http_ms) >= 10 else float("nan")
        overhead = "" if arm is off else f"{p50(arm.http_ms) - p50(off.http_ms):+.3f}"
        print(f"  {arm.name:<8} {p50(arm.http_ms):8.3f} {p90:8.3f} {overhead:>14}")
    print(f"controls alone (auth + limits calls, no HTTP), {controlled} answers per arm, p50 ms:")
    for arm in arms:
        print(f"  {arm.name:<8} {p50(arm.controls_ms):8.3f}")
    for arm in arms:
        if arm.round_trip_ms:
            print(f"one Redis command (GET) over the limiter's pool, p50 ms: {p50(arm.round_trip_ms):.3f}")
    print("targets: overhead p50 <= 1 ms (memory), <= 3 ms (redis on loopback)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=1000, help="measured requests per arm")
    parser.add_argument("--max-seconds", type=float, default=60.0, help="stop measuring after this")
    parser.add_argument(
        "--strategy",
        default=LimitSettings().strategy,
        choices=["moving-window", "sliding-window-counter", "fixed-window"],
        help="limits.strategy of the request limits (default: the service's default)",
    )
    args = parser.parse_args()
    print("command:", " ".join([Path(sys.executable).name, *sys.argv]))
    asyncio.run(run(args.requests, args.max_seconds, args.strategy))


if __name__ == "__main__":
    main()
