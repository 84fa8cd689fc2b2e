"""The HTTP path's overhead: time to the ``retrieval`` event against raw embed + search (issue 9,
benchmark 4).

    .venv/bin/python bench/bench_overhead.py [--requests 100] [--provider extractive] [--profile]

One corpus (default: this repository's ``docs/``) is ingested with ``kb ingest`` into a temporary
data folder, which is then copied: a real ``kb serve`` (uvicorn, development settings, limits
off) serves the original, and this process opens the copy with the service's own wiring
(``app.services.build_services``), so both sides search the same points with the same engine and
the same ``Retriever``. Then, one question at a time, interleaved (the order alternating, so
drift hits both arms alike), every question distinct (no cache answers it):

* ``http``: one client on a kept-alive connection posts a streaming ``/ask`` and times the
  ``retrieval`` event from the request's start (then reads the stream to its end, so that the
  server is idle for the other arm). Two clients, as two arms: ``LeanClient`` (h11, the HTTP/1.1
  parser httpx itself uses, over one asyncio connection: the service's path with as little
  client as HTTP allows; the target is judged on it) and httpx (``http_httpx``: what a Python
  caller typically uses; its own transport adds milliseconds between the event's bytes reaching
  the socket and the line reaching the caller, which this run also reports);
* ``raw``: ``services.retriever.search(question)``, the blocking call the service makes for that
  request (embed the question, dense and lexical search, fusion, calibration), timed on a worker
  thread of its own as the service runs it.

Target: ``p50(http) / p50(raw) <= 1.15`` (``ratio_p50``, the lean client; ``ratio_p50_httpx``
with httpx). Two processes on a loaded machine drift
apart, so the same comparison is also made within the server, request by request:
``ratio_p50_to_server_search`` divides by the server's own timings of those retriever steps for
that very request (the done event's ``retrieve.embed`` + ``expand`` + ``search`` + ``fuse``).
The retrieval event's ``took_ms`` splits the rest: ``took_ms - raw`` is what happens around the
search inside the service (the hand-off to its workers, queueing, batching), ``http - took_ms``
the rest of the path (HTTP, auth, validation, the answer cache, ranking, SSE); the server's
``rank`` and ``prompt`` stages are listed too. With ``--profile``, a second server runs with
cProfile on its main thread (uvicorn's event loop: the request path; the search runs on worker
threads, outside it) for ``--profile-requests`` questions, and the functions that cost the most
self time per request are listed (wall time: on a loaded machine, preemption lands anywhere).

JSON on stdout (and --out), a table on stderr. Bounded by --requests and --max-seconds. Not a
test: nothing asserts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pstats
import shutil
import signal
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import h11
import httpx
import numpy as np
from report import emit

from bench.bench_concurrency import ROOT, FakeModel, KbServer, distinct_questions, ingest, serve_env

__all__: list[str] = []

RAW_STEPS = ("embed", "expand", "search", "fuse")
"""The retriever's own steps (``Retriever.judge``'s timings): what the raw arm's call does."""


def percentiles(values: list[float]) -> dict[str, float]:
    p50, p90, p99 = np.percentile(values, [50, 90, 99])
    return {"p50": round(float(p50), 2), "p90": round(float(p90), 2), "p99": round(float(p99), 2)}


async def time_to_retrieval(
    client: httpx.AsyncClient, question: str
) -> tuple[float, float, str, dict[str, float]]:
    """(ms to the retrieval event, its took_ms, its status, the done event's stage timings); the
    stream is read to its end."""
    started = time.perf_counter()
    first: tuple[float, float, str] | None = None
    stages: dict[str, float] = {}
    async with client.stream("POST", "/ask", json={"question": question}) as response:
        response.raise_for_status()
        event = ""
        async for line in response.aiter_lines():
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:") and event == "retrieval" and first is None:
                elapsed = (time.perf_counter() - started) * 1000
                data = json.loads(line[5:])
                first = (elapsed, float(data["took_ms"]), data["status"])
            elif line.startswith("data:") and event == "done":
                stages = json.loads(line[5:]).get("timings_ms", {})
    if first is None:
        raise RuntimeError("the stream carried no retrieval event")
    return (*first, stages)


class LeanClient:
    """HTTP/1.1 with h11 over one kept-alive asyncio connection: a streaming ``POST /ask`` read
    as it arrives, the ``retrieval`` event timed when its bytes are in. Nothing else: no pool,
    no decoding layers, so what it times is the service's path."""

    def __init__(self, base_url: str) -> None:
        host, _, port = base_url.removeprefix("http://").partition(":")
        self.host, self.port = host, int(port)
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self._h11 = h11.Connection(h11.CLIENT)

    async def time_to_retrieval(self, question: str) -> tuple[float, float, str, dict[str, float]]:
        """As ``time_to_retrieval`` (the same four values), over this connection."""
        if self._streams is None:
            self._streams = await asyncio.open_connection(self.host, self.port)
        reader, writer = self._streams
        body = json.dumps({"question": question}).encode()
        started = time.perf_counter()
        request = h11.Request(
            method="POST",
            target="/ask",
            headers=[
                ("host", f"{self.host}:{self.port}"),
                ("content-type", "application/json"),
                ("content-length", str(len(body))),
            ],
        )
        writer.write(self._h11.send(request) + self._h11.send(h11.Data(data=body)))
        writer.write(self._h11.send(h11.EndOfMessage()))
        first: tuple[float, float, str] | None = None
        buffer = b""
        status = 0
        while True:
            event = self._h11.next_event()
            if event is h11.NEED_DATA:
                self._h11.receive_data(await reader.read(65536))
                continue
            if isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                buffer += event.data
                if first is None and b"event: retrieval\n" in buffer:
                    _, _, rest = buffer.partition(b"event: retrieval\n")
                    data, sep, _ = rest.partition(b"\n\n")
                    if sep:
                        elapsed = (time.perf_counter() - started) * 1000
                        found = json.loads(data.removeprefix(b"data: "))
                        first = (elapsed, float(found["took_ms"]), found["status"])
            elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                break
        self._h11.start_next_cycle()
        if status != 200 or first is None:
            raise RuntimeError(f"/ask answered {status} and its stream carried no retrieval event")
        done = buffer.rpartition(b"event: done\n")[2].partition(b"\n\n")[0]
        stages = json.loads(done.removeprefix(b"data: ")).get("timings_ms", {}) if done else {}
        return (*first, stages)

    async def aclose(self) -> None:
        if self._streams is not None:
            self._streams[1].close()
            self._streams = None


def open_raw(data_dir: Path) -> Any:
    """The service's own wiring over ``data_dir`` (imported here: after --tree set sys.path)."""
    from app.config import load_settings
    from app.services import build_services

    settings = load_settings(
        environ={"KB_DATA_DIR": str(data_dir)},
        overrides={
            "limits": {"enabled": False},
            "generation": {"provider": "extractive"},
            "answers": {"answer_cache": "off", "embedding_cache_size": 0},  # as the served one
        },
    )
    return build_services(settings)


async def measure(
    base_url: str, services: Any, worker: ThreadPoolExecutor, questions: list[str], max_seconds: float
) -> dict[str, Any]:
    http: list[float] = []
    http_httpx: list[float] = []
    took: list[float] = []
    raw: list[float] = []
    statuses: list[str] = []
    stages: dict[str, list[float]] = {}
    searched: list[float] = []
    deadline = time.monotonic() + max_seconds

    def search(question: str) -> float:
        started = time.perf_counter()
        services.retriever.search(question)
        return (time.perf_counter() - started) * 1000

    lean = LeanClient(base_url)
    async with httpx.AsyncClient(base_url=base_url, timeout=httpx.Timeout(60.0)) as client:
        for i, question in enumerate(questions):
            if time.monotonic() > deadline:
                break

            async def over_http(q: str = question) -> None:
                ms, took_ms, status, timings = await lean.time_to_retrieval(q)
                for name, value in timings.items():
                    if name.startswith("retrieve.") or name in ("rank", "prompt"):
                        stages.setdefault(name, []).append(float(value))
                # The same work the raw arm times, as the server timed it for this very request.
                searched.append(sum(float(timings.get(f"retrieve.{step}", 0.0)) for step in RAW_STEPS))
                http.append(ms)
                took.append(took_ms)
                statuses.append(status)

            arms = ("raw", "http", "httpx")
            for arm in arms[i % 3 :] + arms[: i % 3]:  # each arm first, second and third in turn
                if arm == "raw":
                    raw.append(worker.submit(search, question).result())  # nothing else runs meanwhile
                elif arm == "http":
                    await over_http()
                else:
                    # A question of its own: the same one again would find the points the
                    # other arm's search just built in the store's point cache.
                    http_httpx.append((await time_to_retrieval(client, questions[-1 - i]))[0])
    await lean.aclose()
    return {
        "http": http,
        "http_httpx": http_httpx,
        "took": took,
        "raw": raw,
        "searched": searched,
        "statuses": statuses,
        **{f"stage:{k}": v for k, v in stages.items()},
    }


_PROFILED = """
import cProfile, signal
from app.cli import main
profile = cProfile.Profile()
signal.signal(signal.SIGUSR1, lambda *_: profile.enable())
signal.signal(signal.SIGUSR2, lambda *_: (profile.disable(), profile.dump_stats({path!r})))
main()
"""
"""``kb serve`` whose main thread (uvicorn's event loop: the request path) is profiled between
SIGUSR1 and SIGUSR2; the search itself runs on the retrieval worker thread, outside it."""


def top_functions(prof: Path, requests: int, count: int = 18) -> list[dict[str, Any]]:
    stats = pstats.Stats(str(prof))
    rows = []
    for (filename, line, name), (_cc, calls, tottime, cumtime, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        if name == "<method 'poll' of 'select.epoll' objects>":
            continue  # the event loop waiting: idle, not cost
        rows.append(
            {
                "function": f"{Path(filename).name}:{line}:{name}",
                "calls_per_request": round(calls / requests, 1),
                "self_ms_per_request": round(tottime * 1000 / requests, 3),
                "cum_ms_per_request": round(cumtime * 1000 / requests, 3),
            }
        )
    rows.sort(key=lambda r: r["self_ms_per_request"], reverse=True)
    return rows[:count]


async def profile_path(
    env: dict[str, str],
    root: Path,
    args: argparse.Namespace,
    services: Any,
    worker: ThreadPoolExecutor,
    questions: list[str],
) -> dict[str, Any]:
    prof = root / "serve.prof"
    server = KbServer(env, root / "profiled.log", args.tree, code=_PROFILED.format(path=str(prof)))
    with server:
        await measure(server.base_url, services, worker, questions[:5], args.max_seconds)
        server.signal(signal.SIGUSR1)
        await asyncio.sleep(0.5)
        got = await measure(server.base_url, services, worker, questions[5:], args.max_seconds)
        server.signal(signal.SIGUSR2)
        for _ in range(100):
            if prof.exists():
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)
    main_thread_ms = pstats.Stats(str(prof)).total_tt * 1000  # type: ignore[attr-defined]
    idle = sum(
        tt
        for (_f, _l, name), (_cc, _n, tt, _ct, _c) in pstats.Stats(str(prof)).stats.items()  # type: ignore[attr-defined]
        if name == "<method 'poll' of 'select.epoll' objects>"
    )
    requests = len(got["http"])
    return {
        "requests": requests,
        "event_loop_busy_ms_per_request": round((main_thread_ms - idle * 1000) / requests, 2),
        "top_self_time": top_functions(prof, requests),
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {
        "command": " ".join([".venv/bin/python", *sys.argv]),
        "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "cpus": os.cpu_count(),
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
        "provider": args.provider,
    }
    questions = distinct_questions(seed=4)
    with tempfile.TemporaryDirectory(prefix="kb-bench-overhead-") as tmp:
        root = Path(tmp)
        served = root / "served"
        if args.data_dir is not None:
            shutil.copytree(args.data_dir, served)
        else:
            result["ingest"] = {
                k: v
                for k, v in ingest(args.corpus, served, args.tree).items()
                if k in ("chunks_written", "seconds")
            }
        shutil.copytree(served, root / "raw")  # the lock is an flock on the original; a copy is free
        # Built off the event loop's thread and searched on a worker thread of its own, as the
        # service does: torch's OpenMP threads on the main thread measured many times slower
        # on this loaded machine than on a worker thread.
        services = await asyncio.to_thread(open_raw, root / "raw")
        worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bench-raw")
        try:
            generation = {"KB_GENERATION__PROVIDER": "extractive"}
            fake = FakeModel() if args.provider == "fake" else None
            if fake is not None:
                generation = {
                    "KB_GENERATION__PROVIDER": "anthropic",
                    "KB_GENERATION__BASE_URL": fake.__enter__(),
                    "ANTHROPIC_API_KEY": "sk-ant-bench-not-a-key",
                }
            try:
                env = serve_env(served, args.tree, **generation)
                with KbServer(env, root / "serve.log", args.tree) as server:
                    # Warm both arms: first requests allocate and open connections.
                    await measure(server.base_url, services, worker, questions[-5:], args.max_seconds)
                    got = await measure(
                        server.base_url, services, worker, questions[: args.requests], args.max_seconds
                    )
                    result["server_log_problems"] = server.log_problems()
                if args.profile:
                    asked = questions[args.requests : args.requests + 5 + args.profile_requests]
                    result["profile"] = await profile_path(env, root, args, services, worker, asked)
            finally:
                if fake is not None:
                    fake.__exit__(None, None, None)
        finally:
            worker.shutdown()
            await services.aclose()
    http, took, raw, searched = (list(map(float, got[k])) for k in ("http", "took", "raw", "searched"))
    result |= {
        "requests": len(http),
        "retrieval_status": {s: got["statuses"].count(s) for s in set(got["statuses"])},
        "http_time_to_retrieval_ms": percentiles(http),
        "http_httpx_time_to_retrieval_ms": percentiles(list(map(float, got["http_httpx"]))),
        "server_took_ms": percentiles(took),
        "raw_search_ms": percentiles(raw),
        "server_search_ms": percentiles(searched),
        "ratio_p50": round(statistics.median(http) / statistics.median(raw), 3),
        "ratio_p50_httpx": round(statistics.median(got["http_httpx"]) / statistics.median(raw), 3),
        "ratio_p50_to_server_search": round(statistics.median(http) / statistics.median(searched), 3),
        "paired_median_ratio": round(statistics.median(h / r for h, r in zip(http, raw, strict=True)), 3),
        "server_stage_p50_ms": {
            k.removeprefix("stage:"): round(statistics.median(v), 2)
            for k, v in got.items()
            if k.startswith("stage:")
        },
        "split_p50_ms": {
            "in_service_around_search": round(
                statistics.median(t - r for t, r in zip(took, raw, strict=True)), 2
            ),
            "http_path_outside_retrieve": round(
                statistics.median(h - t for h, t in zip(http, took, strict=True)), 2
            ),
        },
        "target": "ratio_p50 <= 1.15",
        "loadavg_end": [round(x, 2) for x in os.getloadavg()],
    }
    result["target_met"] = result["ratio_p50"] <= 1.15
    return result


def table(result: dict[str, Any]) -> str:
    h, hx, t, r, ss = (
        result[k]
        for k in (
            "http_time_to_retrieval_ms",
            "http_httpx_time_to_retrieval_ms",
            "server_took_ms",
            "raw_search_ms",
            "server_search_ms",
        )
    )
    rows = [
        f"{result['requests']} sequential questions, provider {result['provider']}, load {result['loadavg_start'][0]:.1f}",
        f"{'':<34} {'p50':>8} {'p90':>8} {'p99':>8}",
        f"{'http: time to retrieval event':<34} {h['p50']:>8.1f} {h['p90']:>8.1f} {h['p99']:>8.1f}",
        f"{'same, with httpx as the client':<34} {hx['p50']:>8.1f} {hx['p90']:>8.1f} {hx['p99']:>8.1f}",
        f"{'server: retrieval took_ms':<34} {t['p50']:>8.1f} {t['p90']:>8.1f} {t['p99']:>8.1f}",
        f"{'raw: Retriever.search in process':<34} {r['p50']:>8.1f} {r['p90']:>8.1f} {r['p99']:>8.1f}",
        f"{'server: its embed+search steps':<34} {ss['p50']:>8.1f} {ss['p90']:>8.1f} {ss['p99']:>8.1f}",
        f"ratio p50 http/raw {result['ratio_p50']:.3f} (paired median {result['paired_median_ratio']:.3f}); "
        f"target <= 1.15: {'met' if result['target_met'] else 'MISSED'}; "
        f"http / the server's own steps {result['ratio_p50_to_server_search']:.3f}; "
        f"with httpx as the client {result['ratio_p50_httpx']:.3f}",
        f"split p50 ms: {result['split_p50_ms']}; server stages after retrieve: {result['server_stage_p50_ms']}",
    ]
    profile = result.get("profile")
    if profile:
        rows.append(
            f"profiled: {profile['requests']} requests, event loop busy "
            f"{profile['event_loop_busy_ms_per_request']} ms per request; most self time:"
        )
    for row in profile["top_self_time"] if profile else []:
        rows.append(
            f"  {row['self_ms_per_request']:8.3f} ms self {row['cum_ms_per_request']:9.3f} cum "
            f"{row['calls_per_request']:7.1f}x  {row['function']}"
        )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=100, help="measured questions per arm")
    parser.add_argument("--provider", choices=["extractive", "fake"], default="extractive")
    parser.add_argument("--corpus", type=Path, default=ROOT / "docs")
    parser.add_argument(
        "--data-dir", type=Path, help="an already ingested data folder (copied, skips ingest)"
    )
    parser.add_argument(
        "--tree", type=Path, default=ROOT, help="source tree kb runs from (default: this one)"
    )
    parser.add_argument("--max-seconds", type=float, default=300.0, help="measuring stops after this")
    parser.add_argument("--profile", action="store_true", help="then profile a server's event loop")
    parser.add_argument("--profile-requests", type=int, default=40)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    args.tree = args.tree.resolve()
    if args.tree != ROOT:
        sys.path.insert(0, str(args.tree))  # the in-process arm imports the same code the server runs
    result = asyncio.run(run(args))
    emit(result, args.out)
    print(table(result), file=sys.stderr)


if __name__ == "__main__":
    main()
