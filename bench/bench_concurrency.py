"""Concurrent streaming ``POST /ask`` against a real ``kb serve`` (issue 9, benchmark 2).

    .venv/bin/python bench/bench_concurrency.py [--levels 10,100,250,500] [--providers extractive,fake]
        [--out result.json] [--png docs/images/concurrency.png] [--baseline earlier.json]

What runs: ``kb ingest`` of a small real corpus (default: this repository's ``docs/``) into a
temporary data folder, then for each provider a real ``kb serve`` (uvicorn, the real model, the
embedded Qdrant Edge store) on a free 127.0.0.1 port, with the development settings (anonymous
access) and the rate limits off (``KB_LIMITS__ENABLED=false``) so that limits do not shape the
result. Providers: ``extractive`` (the offline answerer) and ``fake`` (the real Anthropic SDK
against the zero-latency wire-level fake of ``tests/fakes/anthropic_server.py``, in its own
process, via ``ANTHROPIC_API_KEY`` and ``KB_GENERATION__BASE_URL``).

For each concurrency level, a burst: that many streaming ``/ask`` fired at once (httpx
AsyncClient, one connection each), docs-qa questions in several phrasings, with the answer and
query-embedding caches off (``KB_ANSWERS__ANSWER_CACHE=off``,
``KB_ANSWERS__EMBEDDING_CACHE_SIZE=0``) so that every request is a whole retrieval and answer.
Per request: the retrieval event's status, time to ``retrieval`` and to ``done`` from the
request's start, how the stream ended, any error event or HTTP error; meanwhile a probe asks
``GET /health/live`` every 50 ms (its latency is how long the event loop keeps a request that
needs neither the model nor the store waiting). Then ``abandon`` bursts:
clients that hang up before their answer comes (their work must not keep the service busy).
Around every burst, lone requests (one answerable question, ``LONE_QUESTION``): five before it
(its "normal latency": twice their median time to ``done``) and, right after it, lone requests
one after another until one gets ``ok`` within that (``recovery_s``; the first one is "the next
lone request").

Targets (issue 9): at 100, no ``timeout`` status under the default 3 s retrieval timeout; at
500, no errors and every stream ends with ``done``; after every burst, the next lone request
gets ``ok`` within its normal latency. JSON on stdout (and --out), a table on stderr, latency
against concurrency drawn to --png (``--baseline`` overlays an earlier run's JSON in grey).
Bounded: --max-seconds for the whole run, --request-timeout per request. Not a test: nothing
asserts; the JSON says which targets were met.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from report import emit

__all__ = ["KbServer", "Outcome", "distinct_questions", "ingest", "serve_env"]

ROOT = Path(__file__).resolve().parent.parent
KB_MAIN = "from app.cli import main; main()"
QUESTIONS = ROOT / "bench" / "data" / "docs-qa" / "questions.jsonl"
PREFIXES = ("", "Please tell me: ", "Quick question. ", "In kb, ", "I wonder: ", "Docs question: ", "Hi! ")
SUFFIXES = ("", " Thanks.", " Thank you!", " Please be brief.", " (asking for a colleague)")
LONE_QUESTION = "Which command loads documents into the knowledge base?"
"""Every lone request asks this (the caches are off): a question the corpus answers (``ok``)."""
_PASSED_ENV = ("PATH", "HOME", "LANG", "TMPDIR", "XDG_CACHE_HOME", "SENTENCE_TRANSFORMERS_HOME")
_FAKE_SERVER = (
    "import sys\n"
    "from tests.fakes.anthropic_server import FakeAnthropic\n"
    "server = FakeAnthropic().start()\n"
    "print(server.port, flush=True)\n"
    "sys.stdin.read()\n"
    "server.stop()\n"
)
_LOG_PROBLEM = re.compile(r"\[(warning|error|critical)\s*\]\s+(\S+)")


def distinct_questions(seed: int = 9) -> list[str]:
    """Every phrasing of every docs-qa question, shuffled: distinct texts for one server's run."""
    base = [json.loads(line)["question"] for line in QUESTIONS.read_text().splitlines() if line.strip()]
    texts = [f"{p}{q}{s}" for q in base for p in PREFIXES for s in SUFFIXES]
    random.Random(seed).shuffle(texts)
    return texts


def serve_env(data_dir: Path, tree: Path = ROOT, **extra: str) -> dict[str, str]:
    """An explicit environment: nothing of the caller's shell (an API key, QDRANT_URL) leaks in.
    ``tree``: the source tree ``kb`` runs from (another one: a snapshot such as ``git archive``)."""
    env = {k: os.environ[k] for k in _PASSED_ENV if k in os.environ}
    if tree != ROOT:
        env["PYTHONPATH"] = str(tree)  # ahead of the editable install's path to this tree
    env.update({k: v for k, v in os.environ.items() if k.startswith("HF_")})
    env.update(
        HF_HUB_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
        TRANSFORMERS_VERBOSITY="error",
        KB_DATA_DIR=str(data_dir),
        KB_LIMITS__ENABLED="false",
        # No cache answers for the service: every request is a whole retrieval and answer.
        KB_ANSWERS__ANSWER_CACHE="off",
        KB_ANSWERS__EMBEDDING_CACHE_SIZE="0",
    )
    env.update(extra)
    return env


def kb_command(*argv: str) -> list[str]:
    """``kb ARGV`` with this interpreter (so that PYTHONPATH picks the source tree)."""
    return [sys.executable, "-c", KB_MAIN, *argv]


def ingest(corpus: Path, data_dir: Path, tree: Path = ROOT) -> dict[str, Any]:
    """``kb ingest`` the corpus into ``data_dir``; its JSON summary."""
    done = subprocess.run(
        kb_command("ingest", str(corpus.resolve()), "--json", "-q"),
        env=serve_env(data_dir, tree),
        cwd=tree,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"kb ingest failed ({done.returncode}): {done.stderr[-2000:]}")
    summary: dict[str, Any] = json.loads(done.stdout)
    return summary


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class KbServer:
    """``kb serve`` in a child process on a free loopback port, stopped with Ctrl-C (SIGINT)."""

    def __init__(
        self, env: dict[str, str], log_path: Path, tree: Path = ROOT, *, code: str = KB_MAIN
    ) -> None:
        self.env, self.log_path, self.tree = env, log_path, tree
        self.code = code
        """The Python that runs ``kb`` (``-c``): another one can wrap it, in a profiler say."""
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 240.0) -> KbServer:
        self.port = _free_port()
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                [sys.executable, "-c", self.code, "serve", "--host", "127.0.0.1", "--port", str(self.port)],
                env=self.env,
                cwd=self.tree,
                stdout=log,
                stderr=log,
            )
        give_up = time.monotonic() + timeout
        while time.monotonic() < give_up:
            if self._proc.poll() is not None:
                raise RuntimeError(f"kb serve exited ({self._proc.returncode}): {self.log_tail()}")
            try:
                if httpx.get(f"{self.base_url}/health/ready", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        self.stop()
        raise TimeoutError(f"kb serve was not ready within {timeout:.0f} s: {self.log_tail()}")

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)

    def signal(self, signum: int) -> None:
        if self._proc is not None:
            self._proc.send_signal(signum)

    def log_tail(self, chars: int = 1500) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def log_problems(self) -> dict[str, int]:
        """Warning and error records of the server's log, by event name."""
        found = _LOG_PROBLEM.findall(self.log_path.read_text(errors="replace"))
        return dict(Counter(f"{level}:{event}" for level, event in found).most_common(12))

    def __enter__(self) -> KbServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class FakeModel:
    """The wire-level fake Anthropic API in its own process (not sharing the client's GIL)."""

    def __enter__(self) -> str:
        self._proc = subprocess.Popen(
            [sys.executable, "-c", _FAKE_SERVER], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        assert self._proc.stdout is not None
        port = int(self._proc.stdout.readline())
        return f"http://127.0.0.1:{port}"

    def __exit__(self, *exc_info: object) -> None:
        assert self._proc.stdin is not None
        self._proc.stdin.close()
        try:
            self._proc.wait(10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(5)


@dataclass
class Outcome:
    """One request as the client saw it. Times are ms from the request's start."""

    http: int | None = None
    retrieval: str | None = None
    retrieval_ms: float | None = None
    took_ms: float | None = None
    """The server's own ``took_ms`` of the retrieval event."""
    end_ms: float | None = None
    ended: str | None = None
    """``done``, ``error``, or None when the stream ended without either."""
    cached: bool = False
    error: str | None = None

    @property
    def failed(self) -> bool:
        return self.error is not None or self.ended != "done"


async def ask(
    client: httpx.AsyncClient, question: str, *, limit_s: float, hang_up_s: float | None = None
) -> Outcome:
    """One streaming ``/ask``, read to its end (or, with ``hang_up_s``, left after that long)."""
    outcome = Outcome()
    started = time.perf_counter()
    try:
        async with asyncio.timeout(hang_up_s if hang_up_s is not None else limit_s):
            async with client.stream("POST", "/ask", json={"question": question}) as response:
                outcome.http = response.status_code
                if response.status_code != 200:
                    body = (await response.aread())[:200].decode(errors="replace")
                    outcome.error = f"HTTP {response.status_code}: {body}"
                    return outcome
                event = ""
                async for line in response.aiter_lines():
                    if line.startswith("event:"):
                        event = line[6:].strip()
                    elif line.startswith("data:") and event in ("retrieval", "done", "error"):
                        now = (time.perf_counter() - started) * 1000
                        data = json.loads(line[5:])
                        if event == "retrieval":
                            outcome.retrieval, outcome.retrieval_ms = data["status"], now
                            outcome.took_ms = data.get("took_ms")
                        else:
                            outcome.ended, outcome.end_ms = event, now
                            outcome.cached = bool(data.get("cached", False))
                            if event == "error":
                                outcome.error = f"error event: {data.get('code')}"
    except TimeoutError:
        if hang_up_s is None:
            outcome.error = f"no end within {limit_s:.0f} s"
    except httpx.HTTPError as exc:
        outcome.error = f"{type(exc).__name__}: {exc}"[:200]
    if outcome.error is None and outcome.ended is None and hang_up_s is None:
        outcome.error = "stream ended without done or error"
    return outcome


async def probe_live(base_url: str, stop: asyncio.Event) -> list[float]:
    """``GET /health/live`` every 50 ms until ``stop``: how long the event loop keeps a request
    that needs neither the model nor the store waiting."""
    latencies: list[float] = []
    async with httpx.AsyncClient(base_url=base_url, timeout=httpx.Timeout(120.0)) as client:
        while not stop.is_set():
            started = time.perf_counter()
            try:
                await client.get("/health/live")
            except httpx.HTTPError:
                # A kept-alive connection closed under the probe: recorded as an infinite wait
                # (it shows in max), and the next probe opens a new connection.
                latencies.append(float("inf"))
                continue
            latencies.append((time.perf_counter() - started) * 1000)
            await asyncio.sleep(0.05)
    return latencies


async def burst(
    base_url: str, questions: list[str], *, limit_s: float, hang_up_s: float | None = None
) -> tuple[list[Outcome], float, list[float]]:
    """The outcomes, the wall time, and the ``/health/live`` latencies seen meanwhile."""
    stop = asyncio.Event()
    probe = asyncio.create_task(probe_live(base_url, stop))
    size = len(questions)
    client = httpx.AsyncClient(
        base_url=base_url,
        limits=httpx.Limits(max_connections=size, max_keepalive_connections=size),
        timeout=httpx.Timeout(limit_s, connect=min(limit_s, 30.0)),
    )
    started = time.perf_counter()
    async with client:
        outcomes = await asyncio.gather(
            *(ask(client, q, limit_s=limit_s, hang_up_s=hang_up_s) for q in questions)
        )
    wall = time.perf_counter() - started
    stop.set()
    return list(outcomes), wall, await probe


async def lone(base_url: str, question: str, limit_s: float) -> Outcome:
    """One request on a fresh connection, nothing else in flight from this client."""
    async with httpx.AsyncClient(base_url=base_url, timeout=httpx.Timeout(limit_s)) as client:
        return await ask(client, question, limit_s=limit_s)


def percentiles(values: list[float]) -> dict[str, float | None]:
    failed = sum(v == float("inf") for v in values)
    values = [v for v in values if v != float("inf")]
    if failed:
        return {**percentiles(values), "failed": failed}
    if not values:
        return {"p50": None, "p95": None, "p99": None, "max": None}
    p50, p95, p99 = (round(float(x), 1) for x in np.percentile(values, [50, 95, 99]))
    return {"p50": p50, "p95": p95, "p99": p99, "max": round(max(values), 1)}


def summarise(outcomes: list[Outcome], *, abandoned: bool = False) -> dict[str, Any]:
    errors = Counter(o.error for o in outcomes if o.error is not None)
    summary: dict[str, Any] = {
        "requests": len(outcomes),
        "retrieval_status": dict(Counter(o.retrieval or "none" for o in outcomes)),
        "http_status": dict(Counter(str(o.http) for o in outcomes)),
        "timeouts": sum(o.retrieval == "timeout" for o in outcomes),
        "errors": sum(errors.values()),
        "error_kinds": dict(errors.most_common(5)),
        "server_5xx": sum(o.http is not None and o.http >= 500 for o in outcomes),
    }
    if not abandoned:
        summary |= {
            "ended_with_done": sum(o.ended == "done" for o in outcomes),
            "cached": sum(o.cached for o in outcomes),
            "retrieval_ms": percentiles([o.retrieval_ms for o in outcomes if o.retrieval_ms is not None]),
            "done_ms": percentiles(
                [o.end_ms for o in outcomes if o.ended == "done" and o.end_ms is not None]
            ),
            "server_took_ms": percentiles([o.took_ms for o in outcomes if o.took_ms is not None]),
        }
    return summary


async def recover(base_url: str, normal_ms: float, *, limit_s: float, within_s: float) -> dict[str, Any]:
    """Lone requests one after another, from the burst's end, until one is ``ok`` within
    ``normal_ms``; the first of them is "the next lone request"."""
    started = time.perf_counter()
    tries: list[Outcome] = []
    while time.perf_counter() - started < within_s:
        outcome = await lone(base_url, LONE_QUESTION, limit_s)
        tries.append(outcome)
        if outcome.retrieval == "ok" and outcome.end_ms is not None and outcome.end_ms <= normal_ms:
            break
    first, last = tries[0], tries[-1]
    recovered = last.retrieval == "ok" and last.end_ms is not None and last.end_ms <= normal_ms
    return {
        "next": {
            "retrieval": first.retrieval,
            "retrieval_ms": first.retrieval_ms,
            "done_ms": first.end_ms,
            "error": first.error,
        },
        "next_ok_within_normal": first is last and recovered,
        "normal_ms": round(normal_ms, 1),
        "tries": len(tries),
        "recovery_s": round(time.perf_counter() - started, 2) if recovered else None,
    }


async def run_provider(
    name: str, base_url: str, levels: list[int], abandon: list[int], args: argparse.Namespace, deadline: float
) -> dict[str, Any]:
    pool = iter(distinct_questions())

    def next_question() -> str:
        return next(pool)

    for _ in range(3):  # warm-up: first requests allocate, compile, open connections
        await lone(base_url, LONE_QUESTION, args.request_timeout)
    bursts: list[dict[str, Any]] = []
    plan = [(n, False) for n in levels] + [(n, True) for n in abandon]
    for size, abandoned in plan:
        if time.monotonic() > deadline:
            bursts.append({"concurrency": size, "abandon": abandoned, "skipped": "--max-seconds reached"})
            continue
        before = [await lone(base_url, LONE_QUESTION, args.request_timeout) for _ in range(5)]
        normal = [o.end_ms for o in before if o.end_ms is not None and o.retrieval == "ok"]
        normal_ms = 2 * float(np.median(normal)) if normal else args.request_timeout * 1000
        load = os.getloadavg()
        hang_up = args.hang_up_s if abandoned else None
        outcomes, wall, live = await burst(
            base_url, [next_question() for _ in range(size)], limit_s=args.request_timeout, hang_up_s=hang_up
        )
        after = await recover(base_url, normal_ms, limit_s=args.request_timeout, within_s=60)
        bursts.append(
            {
                "concurrency": size,
                "abandon": abandoned,
                **({"hang_up_s": hang_up} if abandoned else {}),
                "wall_s": round(wall, 2),
                "health_live_ms": percentiles(live),
                "loadavg_before": [round(x, 2) for x in load],
                **summarise(outcomes, abandoned=abandoned),
                "lone_before": summarise(before),
                "lone_after": after,
            }
        )
        print(f"  {name} {'abandon ' if abandoned else ''}{size}: done in {wall:.1f} s", file=sys.stderr)
        await asyncio.sleep(1.0)
    return {"bursts": bursts}


def targets(providers: dict[str, Any]) -> dict[str, Any]:
    met: dict[str, Any] = {}
    for name, result in providers.items():
        for b in result["bursts"]:
            if "skipped" in b:
                continue
            key = f"{name}/{'abandon-' if b['abandon'] else ''}{b['concurrency']}"
            if not b["abandon"] and b["concurrency"] == 100:
                met[f"{key}: no timeout status"] = b["timeouts"] == 0
            if not b["abandon"] and b["concurrency"] == 500:
                met[f"{key}: no errors, every stream ends with done"] = (
                    b["errors"] == 0 and b["ended_with_done"] == b["requests"]
                )
            met[f"{key}: next lone request ok within normal latency"] = b["lone_after"][
                "next_ok_within_normal"
            ]
    return met


def tree_state(tree: Path) -> dict[str, Any]:
    """Which code served: this working tree (its commit and changed app/ files), or a snapshot."""
    if tree != ROOT:
        return {"snapshot": str(tree)}

    def git(*argv: str) -> str:
        return subprocess.run(["git", *argv], cwd=ROOT, capture_output=True, text=True, check=False).stdout

    changed = git("status", "--porcelain", "--", "app").splitlines()
    return {"commit": git("rev-parse", "HEAD").strip(), "changed_app_files": changed}


def table(result: dict[str, Any]) -> str:
    rows = [
        f"{'provider':<11} {'burst':>11} {'wall s':>7} {'timeout':>7} {'err':>4} {'done':>5} "
        f"{'retr p50/p95/p99 ms':>22} {'done p50/p95/p99 ms':>22} {'next lone':>16} {'recover s':>9} {'live p50/max ms':>16}"
    ]
    for name, provider in result["providers"].items():
        for b in provider["bursts"]:
            label = f"{'abandon ' if b['abandon'] else ''}{b['concurrency']}"
            if "skipped" in b:
                rows.append(f"{name:<11} {label:>11}  skipped")
                continue

            def ps(stats: dict[str, Any] | None) -> str:
                if not stats or stats["p50"] is None:
                    return "-"
                return f"{stats['p50']:.0f}/{stats['p95']:.0f}/{stats['p99']:.0f}"

            nxt = b["lone_after"]["next"]
            lone_s = f"{nxt['retrieval']} {nxt['done_ms'] or 0:.0f}ms"
            rec = b["lone_after"]["recovery_s"]
            probe = b.get("health_live_ms") or {}
            live = f"{probe.get('p50') or 0:.0f}/{probe.get('max') or 0:.0f}" + (
                "+fail" if probe.get("failed") else ""
            )
            rows.append(
                f"{name:<11} {label:>11} {b['wall_s']:>7.1f} {b['timeouts']:>7} {b['errors']:>4} "
                f"{b.get('ended_with_done', '-'):>5} {ps(b.get('retrieval_ms')):>22} {ps(b.get('done_ms')):>22} "
                f"{lone_s:>16} {rec if rec is not None else 'never':>9} {live:>16}"
            )
    rows += [f"target {'met' if ok else 'MISSED'}: {what}" for what, ok in result["targets"].items()]
    return "\n".join(rows)


def draw(result: dict[str, Any], png: Path, baseline: dict[str, Any] | None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    runs: list[tuple[dict[str, Any] | None, str | None, str]] = []
    if baseline:
        runs.append((baseline, "grey", baseline.get("label") or "earlier"))
    runs.append((result, None, result.get("label") or "this run"))
    colours = {"extractive": "tab:blue", "fake": "tab:orange"}
    for ax, metric, title in (
        (axes[0], "retrieval_ms", "time to `retrieval`"),
        (axes[1], "done_ms", "time to `done`"),
    ):
        for run, colour, label in runs:
            assert run is not None
            for name, provider in run["providers"].items():
                bursts = [b for b in provider["bursts"] if not b["abandon"] and "skipped" not in b]
                lone = [o for b in bursts for o in [b["lone_before"][metric]] if o["p50"] is not None]
                xs = [1] + [b["concurrency"] for b in bursts]
                for pct, style in (("p50", "-"), ("p95", "--"), ("p99", ":")):
                    ys = [float(np.median([s["p50"] for s in lone]))] if lone else [float("nan")]
                    ys += [b[metric][pct] if b[metric][pct] is not None else float("nan") for b in bursts]
                    colour_of = colour or colours.get(name)
                    ax.plot(xs, ys, style, marker="o", ms=3, color=colour_of, label=f"{label}: {name} {pct}")
        if metric == "retrieval_ms":
            ax.axhline(3000, color="red", lw=0.8, alpha=0.6)
            ax.text(1.1, 3300, "retrieval timeout (3 s)", color="red", fontsize=7)
        ax.set(xscale="log", yscale="log", xlabel="concurrent streaming /ask (1 = lone request)", title=title)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("ms from the request's start")
    axes[1].legend(fontsize=6, loc="upper left", ncol=1)
    load = result["loadavg_start"]
    fig.suptitle(
        f"kb serve, 2 cores, load average at start {load[0]:.1f} (bench/bench_concurrency.py)", fontsize=9
    )
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)
    plt.close(fig)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    deadline = time.monotonic() + args.max_seconds
    levels = [int(x) for x in args.levels.split(",") if x]
    abandon = [int(x) for x in args.abandon.split(",") if x]
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 4 * max([*levels, *abandon, 1]) + 512
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(
            resource.RLIMIT_NOFILE, (want if hard == resource.RLIM_INFINITY else min(want, hard), hard)
        )
    result: dict[str, Any] = {
        "command": " ".join([".venv/bin/python", *sys.argv]),
        "label": args.label,
        "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "tree": tree_state(args.tree),
        "cpus": os.cpu_count(),
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
        "fd_limit": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
    }
    with tempfile.TemporaryDirectory(prefix="kb-bench-conc-") as tmp:
        root = Path(tmp)
        data_dir = args.data_dir or root / "data"
        if args.data_dir is None:
            result["ingest"] = {
                k: v
                for k, v in ingest(args.corpus, data_dir, args.tree).items()
                if k in ("chunks_written", "new", "seconds")
            }
        result["corpus"] = str(args.corpus)
        providers: dict[str, Any] = {}
        for name in args.providers.split(","):
            if name not in ("extractive", "fake"):
                raise SystemExit(f"unknown provider {name!r}: extractive or fake")
            with contextlib.ExitStack() as stack:
                generation = {"KB_GENERATION__PROVIDER": "extractive"}
                if name == "fake":
                    generation = {
                        "KB_GENERATION__PROVIDER": "anthropic",
                        "KB_GENERATION__BASE_URL": stack.enter_context(FakeModel()),
                        "ANTHROPIC_API_KEY": "sk-ant-bench-not-a-key",
                    }
                env = serve_env(data_dir, args.tree, **generation)
                server = stack.enter_context(KbServer(env, root / f"serve-{name}.log", args.tree))
                providers[name] = await run_provider(name, server.base_url, levels, abandon, args, deadline)
                providers[name]["server_log_problems"] = server.log_problems()
    result["providers"] = providers
    result["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    result["targets"] = targets(providers)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--levels", default="10,100,250,500", help="concurrency of the bursts")
    parser.add_argument("--abandon", default="500", help="bursts whose clients hang up early ('' for none)")
    parser.add_argument("--hang-up-s", type=float, default=2.0, help="when the abandoning clients hang up")
    parser.add_argument("--providers", default="extractive,fake")
    parser.add_argument("--corpus", type=Path, default=ROOT / "docs")
    parser.add_argument("--data-dir", type=Path, help="an already ingested data folder (skips ingest)")
    parser.add_argument(
        "--tree",
        type=Path,
        default=ROOT,
        help="source tree kb runs from (default: this one; e.g. a git archive)",
    )
    parser.add_argument("--request-timeout", type=float, default=120.0, help="per request, seconds")
    parser.add_argument("--max-seconds", type=float, default=900.0, help="no burst starts after this")
    parser.add_argument("--label", default="", help="names this run in the JSON and the PNG's legend")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--png", type=Path, default=ROOT / "docs" / "images" / "concurrency.png")
    parser.add_argument("--no-png", action="store_true")
    parser.add_argument("--baseline", type=Path, help="an earlier run's JSON, drawn in grey")
    args = parser.parse_args()
    args.tree = args.tree.resolve()
    result = asyncio.run(run(args))
    emit(result, args.out)
    print(table(result), file=sys.stderr)
    if not args.no_png:
        baseline = json.loads(args.baseline.read_text()) if args.baseline else None
        draw(result, args.png, baseline)
        print(f"drawn: {args.png}", file=sys.stderr)


if __name__ == "__main__":
    main()
