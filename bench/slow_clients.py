"""Slow clients against ``kb serve``: does ``/health/live`` still answer while they hold connections?

Starts ``kb serve`` (default settings, limits off, an empty data folder) on a free loopback port
under a low open-file limit (``--nofile``, as ``ulimit -n``), and then:

1. ``/health/live`` latency with nothing else open (``--probes`` requests, one connection each);
2. opens ``--slow`` connections, a third each sending nothing, half a request head, or a request
   head and half its body, and measures ``/health/live`` again while they are held (for
   ``--hold`` seconds);
3. keeps watching the slow connections (up to ``--watch`` seconds) to see how each kind ended:
   closed without a response, 408, 503, or still open.

With ``--plain`` (the default) the same is run against plain uvicorn (h11, no guard) serving the
same app under the same limit, for comparison in the same run: that is the server before read
timeouts and the connection cap.

Usage: .venv/bin/python bench/slow_clients.py [--slow 600] [--nofile 512] [--no-plain] [--out F]

JSON on stdout (and ``--out``), a table on stderr. 127.0.0.1 only; bounded in connections and
time. Not a test: timings depend on the machine, so nothing here asserts.
"""

from __future__ import annotations

import argparse
import os
import resource
import selectors
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from report import emit

ROOT = Path(__file__).resolve().parent.parent
PYTHON = Path(sys.executable)
HOST = "127.0.0.1"
KINDS = ("idle", "partial_head", "partial_body")
MAX_SLOW = 5000

HEAD = b"GET /health/live HTTP/1.1\r\nHost: 127.0.0.1\r\n"  # never finished
BODY = (
    b"POST /ask HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    b"Content-Length: 200\r\n\r\n" + b'{"question": "How do I'
)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def raise_own_file_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def environment(data_dir: Path) -> dict[str, str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("KB_") and k != "QDRANT_URL"}
    environ.update(
        KB_DATA_DIR=str(data_dir),
        KB_LIMITS__ENABLED="false",
        HF_HUB_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
    )
    return environ


@contextmanager
def server(
    command: list[str], *, nofile: int, data_dir: Path, port: int, start_s: float, log: Path
) -> Iterator[float]:
    """Run ``command`` under ``ulimit -n nofile`` until ``/health/live`` answers; yields the
    start-up time."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))

    started = time.monotonic()
    stderr = log.open("wb")
    process = subprocess.Popen(
        command,
        env=environment(data_dir),
        cwd=data_dir.parent,
        stdout=subprocess.DEVNULL,
        stderr=stderr,
        preexec_fn=limit,
    )
    try:
        while probe(port, timeout=1.0) is None:
            if process.poll() is not None:
                raise SystemExit(f"{command[0]} exited with {process.returncode} before answering")
            if time.monotonic() - started > start_s:
                raise SystemExit(f"{command[0]} did not answer /health/live within {start_s:.0f} s")
            time.sleep(0.5)
        yield time.monotonic() - started
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)
        stderr.close()


def probe(port: int, *, timeout: float) -> float | None:
    """One ``GET /health/live`` on a new connection: seconds to the whole 200 response, or None."""
    started = time.monotonic()
    try:
        with socket.create_connection((HOST, port), timeout=timeout) as conn:
            conn.sendall(b"GET /health/live HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            got = b""
            while True:
                left = timeout - (time.monotonic() - started)
                if left <= 0:
                    return None
                conn.settimeout(left)
                chunk = conn.recv(4096)
                if not chunk:
                    break
                got += chunk
    except OSError:
        return None
    return time.monotonic() - started if got.startswith(b"HTTP/1.1 200") and b'"live"' in got else None


def open_slow(port: int, count: int) -> list[tuple[str, socket.socket, float]]:
    """``count`` connections, kinds in turn; each has sent what its kind sends (and when)."""
    opened: list[tuple[str, socket.socket, float]] = []
    for i in range(count):
        kind = KINDS[i % len(KINDS)]
        try:
            conn = socket.create_connection((HOST, port), timeout=2.0)
        except OSError:
            continue
        try:
            if kind == "partial_head":
                conn.sendall(HEAD)
            elif kind == "partial_body":
                conn.sendall(BODY)
        except OSError:
            pass
        conn.setblocking(False)
        opened.append((kind, conn, time.monotonic()))
    return opened


def ending(conn: socket.socket) -> str | None:
    """How the server ended this connection so far: None while it is open."""
    try:
        data = conn.recv(4096)
    except BlockingIOError:
        return None
    except OSError:
        return "reset"
    if not data:
        return "closed"
    return data.split(b" ", 2)[1].decode("ascii", "replace") if data.startswith(b"HTTP/") else "other"


def watch(opened: list[tuple[str, socket.socket, float]], seconds: float) -> dict[str, dict[str, Any]]:
    """Wait up to ``seconds`` for the server to end the slow connections; per kind, how they
    ended and when (seconds from opening each)."""
    started = time.monotonic()
    ends: dict[int, tuple[str, float]] = {}
    with selectors.DefaultSelector() as selector:  # epoll: no limit on descriptor numbers
        for i, (_kind, conn, _at) in enumerate(opened):
            selector.register(conn, selectors.EVENT_READ, i)
        while len(ends) < len(opened) and time.monotonic() - started < seconds:
            for key, _events in selector.select(timeout=0.2):
                how = ending(opened[key.data][1])
                if how is not None:
                    ends[key.data] = (how, time.monotonic() - opened[key.data][2])
                    selector.unregister(key.fileobj)
    summary: dict[str, dict[str, Any]] = {}
    for kind in KINDS:
        mine = [i for i, (k, _conn, _at) in enumerate(opened) if k == kind]
        outcomes: dict[str, int] = {}
        times = []
        for i in mine:
            how, at = ends.get(i, ("open", 0.0))
            outcomes[how] = outcomes.get(how, 0) + 1
            if how != "open":
                times.append(at)
        summary[kind] = {
            "opened": len(mine),
            "outcomes": outcomes,
            "ended_p50_s": round(statistics.median(times), 2) if times else None,
            "ended_max_s": round(max(times), 2) if times else None,
        }
    return summary


def latencies(port: int, probes: int, *, spread_s: float, timeout: float) -> dict[str, Any]:
    values: list[float | None] = []
    for _ in range(probes):
        values.append(probe(port, timeout=timeout))
        time.sleep(spread_s / probes)
    ok = sorted(v for v in values if v is not None)

    def at(q: float) -> float | None:
        return round(ok[min(len(ok) - 1, int(q * len(ok)))] * 1000, 1) if ok else None

    return {
        "probes": probes,
        "failed": probes - len(ok),
        "first_ms": None if values[0] is None else round(values[0] * 1000, 1),  # right after a burst
        "p50_ms": at(0.5),
        "p95_ms": at(0.95),
        "max_ms": at(1.0),
    }


def open_fds(port: int) -> int | None:
    """Descriptors of the process listening on ``port`` (Linux: from /proc), else None."""
    inode = None
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].split(":")[1], 16) == port:
                inode = fields[9]
    if inode is None:
        return None
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
            if any(os.readlink(f"/proc/{pid}/fd/{fd}") == f"socket:[{inode}]" for fd in fds):
                return len(fds)
        except OSError:
            continue
    return None


def run_one(
    name: str, command: Callable[[int], list[str]], args: argparse.Namespace, work: Path
) -> dict[str, Any]:
    port = free_port()
    data_dir = work / f"data-{name}"
    data_dir.mkdir()
    log = work / f"{name.replace(' ', '-')}.log"
    with server(
        command(port), nofile=args.nofile, data_dir=data_dir, port=port, start_s=args.start_timeout, log=log
    ) as took:
        quiet = latencies(port, args.probes, spread_s=1.0, timeout=args.probe_timeout)
        opening = time.monotonic()
        opened = open_slow(port, args.slow)
        opened_s = time.monotonic() - opening
        watched: dict[str, dict[str, Any]] = {}
        watcher = threading.Thread(target=lambda: watched.update(watch(opened, args.hold + args.watch)))
        watcher.start()
        try:
            held = latencies(port, args.probes, spread_s=args.hold, timeout=args.probe_timeout)
            fds = open_fds(port)
            watcher.join()
        finally:
            for _kind, conn, _at in opened:
                conn.close()
    said = log.read_text(errors="replace") if log.exists() else ""
    if args.keep_logs:
        print(f"--- {name} stderr ---\n{said[-4000:]}", file=sys.stderr)
    return {
        "server": name,
        "start_s": round(took, 1),
        "slow_opened": len(opened),
        "opening_s": round(opened_s, 2),
        "server_fds_while_held": fds,
        "health_quiet": quiet,
        "health_with_slow_clients": held,
        "slow_connections": watched,
        # asyncio's accept() failing for want of descriptors (it then stops accepting for 1 s)
        "accept_out_of_files": said.count("out of system resource"),
        "closing_log_lines": said.count("connections_closed"),
    }


def table(result: dict[str, Any]) -> str:
    rows = [
        f"slow clients: {result['slow']} against ulimit -n {result['nofile']}, "
        f"load {'/'.join(f'{x:.2f}' for x in result['loadavg'])}",
        f"{'server':8} {'quiet p50':>10} {'held 1st':>9} {'held p50':>9} {'held p95':>9} {'held max':>9} {'failed':>7} {'fds':>5}"
        "  how the slow connections ended",
    ]
    for run in result["runs"]:
        quiet, held = run["health_quiet"], run["health_with_slow_clients"]

        def ms(v: float | None) -> str:
            return "-" if v is None else f"{v:.1f}"

        ends = "; ".join(
            f"{kind}: "
            + ",".join(f"{k}={n}" for k, n in sorted(s["outcomes"].items()))
            + (f" (p50 {s['ended_p50_s']} s)" if s["ended_p50_s"] is not None else "")
            for kind, s in run["slow_connections"].items()
        )
        rows.append(
            f"{run['server']:8} {ms(quiet['p50_ms']):>10} {ms(held['first_ms']):>9} {ms(held['p50_ms']):>9} {ms(held['p95_ms']):>9} "
            f"{ms(held['max_ms']):>9} {held['failed']:>3}/{held['probes']:<3} {run['server_fds_while_held'] or '-':>5}  {ends}"
        )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--slow", type=int, default=600, help="slow connections to open (at most 5000)")
    parser.add_argument("--nofile", type=int, default=512, help="the server's open-file limit (ulimit -n)")
    parser.add_argument("--probes", type=int, default=20, help="/health/live requests per measurement")
    parser.add_argument(
        "--hold", type=float, default=5.0, help="seconds the probes are spread over while held"
    )
    parser.add_argument("--watch", type=float, default=15.0, help="seconds to wait for the slow ones to end")
    parser.add_argument("--probe-timeout", type=float, default=3.0)
    parser.add_argument("--start-timeout", type=float, default=180.0)
    parser.add_argument(
        "--plain", action=argparse.BooleanOptionalAction, default=True, help="also run plain uvicorn"
    )
    parser.add_argument("--out", type=Path)
    parser.add_argument("--keep-logs", action="store_true", help="print the end of each server's stderr")
    args = parser.parse_args()
    args.slow = min(max(args.slow, 3), MAX_SLOW)
    raise_own_file_limit(args.slow + 256)

    kb = str(PYTHON.with_name("kb"))
    commands: list[tuple[str, Callable[[int], list[str]]]] = [
        ("kb serve", lambda port: [kb, "serve", "--host", HOST, "--port", str(port)])
    ]
    if args.plain:
        commands.append(
            (
                "uvicorn",
                lambda port: [
                    str(PYTHON), "-m", "uvicorn", "--factory", "app.http:create_app", "--http", "h11",
                    "--host", HOST, "--port", str(port), "--log-level", "critical", "--app-dir", str(ROOT),
                ],
            )
        )  # fmt: skip
    work = Path(tempfile.mkdtemp(prefix="kb-slow-clients-"))
    try:
        runs = [run_one(name, command, args, work) for name, command in commands]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result = {
        "bench": "slow_clients",
        "command": " ".join(["bench/slow_clients.py", *sys.argv[1:]]),
        "slow": args.slow,
        "nofile": args.nofile,
        "loadavg": os.getloadavg(),
        "runs": runs,
    }
    emit(result, args.out)
    print(table(result), file=sys.stderr)


if __name__ == "__main__":
    main()
