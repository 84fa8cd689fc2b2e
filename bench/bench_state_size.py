"""What Redis holds for kb, and how big it gets: measured on a real redis-server.

    .venv/bin/python bench/bench_state_size.py --keys 20 --turns 3 --out /tmp/bench_state_size.json

A redis-server on loopback (``tests.services.redis``), a corpus ingested into a temporary
embedded store (default ``docs/``, questions about kb), and the real app (production configuration:
API keys required, request records without question or answer text) under uvicorn on
127.0.0.1 with ``REDIS_URL`` set. ``--keys`` API keys are created in Redis (``KeyRing``, as
``kb keys create`` does); each key asks one question of its own (so each first answer is a
cache entry of its own), follows it up ``--turns - 1`` times in the same conversation, and
rates the first answer. Everything in Redis then came from real requests.

Then every key in Redis is read with ``MEMORY USAGE`` (all samples) and grouped by what it is
for (its prefix after the namespace); ``INFO memory`` gives ``used_memory`` before the app
started and after the run. Per-item figures divide a group's bytes by what it counts: API keys
(one hash), conversations, cached answers, request records, feedback, limit counters per key.
JSON on stdout (and --out), a table on stderr. Bounded by ``--max-seconds`` (the asks stop
there; what was made by then is measured).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import httpx
import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from report import emit

from app.access import KeyRing
from app.config import load_settings
from app.embedding import SentenceTransformerEmbedder
from app.http import create_app
from app.logs import configure_logging
from app.settings import Settings
from app.state import open_state_store
from app.store import open_store
from ingest.runner import Ingestor
from tests.e2e.servers import live_server
from tests.services.redis import RedisServer, redis_server_binary

__all__: list[str] = []

ROOT = Path(__file__).resolve().parent.parent
QUESTIONS = [
    "How do I create an API key?",
    "How are request rate limits counted?",
    "Which file formats can be ingested?",
    "How do I move a prompt label?",
    "What does the readiness endpoint report?",
    "How do I run several app replicas?",
]
FOLLOW_UPS = ["and how do I revoke it?", "what about in production?", "is there a limit?", "and after that?"]


def create_keys(settings: Settings, count: int) -> list[str]:
    async def make() -> list[str]:
        state = open_state_store(settings)
        try:
            ring = KeyRing(state, settings.access)
            return [
                (await ring.create(name=f"bench-{n}", tenant=settings.ingest.tenant, role="user"))[0]
                for n in range(count)
            ]
        finally:
            await state.aclose()

    return asyncio.run(make())


def group_of(key: str, namespace: str) -> str:
    """What a key is for: its first segment after the namespace (two for prompt state)."""
    parts = key.split(":")
    if parts[0] == namespace and len(parts) > 1:
        parts = parts[1:]
    else:  # the limits library's own prefix
        return ":".join(parts[:2]) if len(parts) > 1 else parts[0]
    return ":".join(parts[:2]) if parts[0] in ("prompts",) else parts[0]


def measure(client: redis.Redis, namespace: str) -> dict[str, dict[str, Any]]:
    groups: dict[str, dict[str, Any]] = defaultdict(
        lambda: {"keys": 0, "bytes": 0, "expiring": 0, "types": set()}
    )
    for raw in client.scan_iter(count=1000):
        key = raw.decode()
        group = groups[group_of(key, namespace)]
        group["keys"] += 1
        group["bytes"] += int(client.memory_usage(key, samples=0) or 0)
        group["expiring"] += 1 if int(client.pttl(key)) > 0 else 0
        group["types"].add(client.type(key).decode())
    return {name: {**g, "types": sorted(g["types"])} for name, g in sorted(groups.items())}


def used_memory(client: redis.Redis) -> int:
    return int(client.info("memory")["used_memory"])


def run(args: argparse.Namespace) -> dict[str, Any]:
    binary = redis_server_binary()
    if binary is None:
        raise SystemExit("redis-server is not installed")
    with tempfile.TemporaryDirectory(prefix="kb-bench-state-") as tmp:
        server = RedisServer(Path(tmp) / "redis").start()
        try:
            url = server.url(0)
            environ = {
                "KB_ENV": "production",
                "KB_DATA_DIR": str(Path(tmp) / "data"),
                "REDIS_URL": url,
                "KB_SERVER__HOST": "127.0.0.1",
            }
            settings = load_settings(environ=environ)
            configure_logging(json_lines=True, level=logging.WARNING)  # the table, not every request
            embedder = SentenceTransformerEmbedder(settings.embedding)
            store = open_store(settings)
            try:
                Ingestor(store, embedder, chunking=settings.chunking, ingest=settings.ingest).ingest_paths(
                    [args.corpus]
                )
            finally:
                store.close()
            client = redis.Redis.from_url(url, socket_timeout=5)
            baseline = used_memory(client)
            keys = create_keys(settings, args.keys)
            asks = rated = 0
            conversations: set[str] = set()
            give_up = time.monotonic() + args.max_seconds
            with (
                live_server(create_app(settings, embedder=embedder)) as live,
                httpx.Client(base_url=live.base_url, timeout=60.0) as http,
            ):
                for number, key in enumerate(keys):
                    if time.monotonic() > give_up:
                        break
                    headers = {"Authorization": f"Bearer {key}"}
                    question = f"{QUESTIONS[number % len(QUESTIONS)]} (case {number})"
                    first = http.post("/ask", json={"question": question, "stream": False}, headers=headers)
                    first.raise_for_status()
                    asks += 1
                    body = first.json()
                    conversations.add(body["conversation_id"])
                    for turn in range(args.turns - 1):
                        follow = http.post(
                            "/ask",
                            json={
                                "question": FOLLOW_UPS[turn % len(FOLLOW_UPS)],
                                "conversation_id": body["conversation_id"],
                                "stream": False,
                            },
                            headers=headers,
                        )
                        follow.raise_for_status()
                        asks += 1
                    rating = http.post(
                        f"/ask/{body['request_id']}/feedback", json={"rating": "up"}, headers=headers
                    )
                    rated += rating.status_code == 201
                # Background jobs (request records, feedback) finish when the app stops.
            groups = measure(client, settings.state.namespace)
            after = used_memory(client)
            client.close()
        finally:
            server.stop()
    made = {
        "api_keys": len(keys),
        "keys_that_asked": len(conversations),
        "conversations": len(conversations),
        "asks": asks,
        "turns_per_conversation": args.turns,
        "rated": rated,
    }
    return {
        "bench": "state_size",
        "loadavg": os.getloadavg(),
        "corpus": str(args.corpus),
        "made": made,
        "used_memory": {"before": baseline, "after": after, "delta": after - baseline},
        "groups": groups,
        "per_item": per_item(groups, made),
    }


def per_item(groups: dict[str, dict[str, Any]], made: dict[str, int]) -> dict[str, float | None]:
    """Bytes per thing counted: a group's bytes over what it holds."""

    def per(group: str, count: int | None = None) -> float | None:
        found = groups.get(group)
        if found is None:
            return None
        return round(found["bytes"] / (count if count is not None else found["keys"]), 1)

    return {
        "api_key": per("keys", made["api_keys"]),  # one hash, a field per key
        "conversation": per("conversation"),  # a capped list of turns per conversation
        "cached_answer": per("answer-cache"),
        "answer_kept_for_feedback": per("answer"),
        "feedback_rating": per("feedback", made["rated"]),  # a list per day
        "request_record": per("request"),
        "request_record_slot": per("requests"),
        "limits_per_active_key": per("limits", made["keys_that_asked"]),
    }


def table(result: dict[str, Any]) -> str:
    lines = [f"{'group':<28} {'keys':>6} {'bytes':>10} {'bytes/key':>10} {'expiring':>8}  types"]
    for name, g in result["groups"].items():
        lines.append(
            f"{name:<28} {g['keys']:>6} {g['bytes']:>10} {g['bytes'] // max(1, g['keys']):>10} "
            f"{g['expiring']:>8}  {','.join(g['types'])}"
        )
    used = result["used_memory"]
    lines.append(f"used_memory before {used['before']} after {used['after']} delta {used['delta']}")
    lines.append("per item: " + ", ".join(f"{k}={v}" for k, v in result["per_item"].items()))
    lines.append(f"made: {result['made']}  loadavg {tuple(round(x, 2) for x in result['loadavg'])}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=20, help="API keys, each with one conversation")
    parser.add_argument("--turns", type=int, default=3, help="questions per conversation")
    parser.add_argument("--corpus", type=Path, default=ROOT / "docs")
    parser.add_argument("--max-seconds", type=float, default=180.0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    result = run(args)
    emit(result, args.out)
    print(table(result), file=sys.stderr)


if __name__ == "__main__":
    main()
