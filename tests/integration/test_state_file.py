"""The local state file across processes, crashes and time: what a deployment without Redis relies on.

Other processes are real ones (``python -c`` on the same file), as ``kb keys create`` in a shell
next to a running ``kb serve`` would be.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from app.config import load_settings
from app.errors import ConfigError
from app.settings import StateSettings
from app.state import FileStateStore, open_state_store, state_file

ROOT = Path(__file__).resolve().parents[2]


def python(script: str, *args: str) -> subprocess.Popen[bytes]:
    """Run ``script`` (with ``FileStateStore`` and asyncio imported) in a new interpreter."""
    prelude = "import asyncio, sys\nfrom pathlib import Path\nfrom app.settings import StateSettings\n"
    prelude += "from app.state import FileStateStore\n"
    return subprocess.Popen(
        [sys.executable, "-c", prelude + textwrap.dedent(script), *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def finish(process: subprocess.Popen[bytes]) -> None:
    _, err = process.communicate(timeout=60)
    assert process.returncode == 0, err.decode()


async def test_a_write_from_another_process_is_seen_on_the_next_read(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    server = FileStateStore.open(path, StateSettings())
    try:
        assert await server.hash_get("keys", "abc") is None  # read (and nothing cached) before

        finish(
            python(
                """
                async def main():
                    shell = FileStateStore.open(Path(sys.argv[1]), StateSettings())
                    await shell.hash_set("keys", "abc", b"created in a shell")
                    await shell.aclose()
                asyncio.run(main())
                """,
                str(path),
            )
        )

        assert await server.hash_get("keys", "abc") == b"created in a shell"
    finally:
        await server.aclose()


async def test_processes_incrementing_one_counter_at_once_lose_no_increment(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    store = FileStateStore.open(path, StateSettings(timeout_s=5.0))
    script = """
        async def main():
            store = FileStateStore.open(Path(sys.argv[1]), StateSettings(timeout_s=5.0))
            for _ in range(100):
                await store.incr("hits")
            await store.aclose()
        asyncio.run(main())
        """
    try:
        workers = [python(script, str(path)) for _ in range(2)]
        for _ in range(100):
            await store.incr("hits")
        for worker in workers:
            finish(worker)

        assert await store.get("hits") == b"300"
    finally:
        await store.aclose()


async def test_a_process_killed_while_writing_leaves_whole_operations_and_a_sound_file(
    tmp_path: Path,
) -> None:
    path = tmp_path / "state.sqlite3"
    await FileStateStore.open(path, StateSettings()).aclose()  # the schema exists before the writer
    writer = python(
        """
        async def main():
            store = FileStateStore.open(Path(sys.argv[1]), StateSettings(timeout_s=5.0))
            number = 0
            while True:
                number += 1
                await store.list_push("turns", str(number).encode(), max_len=5)
                await store.incr("pushed")
                if number == 20:
                    print("writing", flush=True)
        asyncio.run(main())
        """,
        str(path),
    )
    try:
        assert writer.stdout is not None
        assert writer.stdout.readline() == b"writing\n", (
            writer.stderr.read().decode() if writer.stderr else ""
        )
        time.sleep(0.3)  # well inside the loop of writes
    finally:
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait(10)

    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    store = FileStateStore.open(path, StateSettings())
    try:
        turns = [int(turn) for turn in await store.list_range("turns", last=100)]
        assert len(turns) == 5  # trimmed in the same transaction as the push, never in between
        assert turns == list(range(turns[0], turns[0] + 5))  # consecutive, oldest first
        pushed = int(await store.get("pushed") or b"0")
        assert pushed in (turns[-1], turns[-1] - 1)  # killed between the push and its count at most
    finally:
        await store.aclose()


async def test_expired_entries_are_deleted_from_the_file_in_batches_as_writes_go_on(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    now = [1_700_000_000.0]
    store = FileStateStore.open(path, StateSettings(), clock=lambda: now[0])

    def rows() -> int:
        with sqlite3.connect(path) as raw:
            count: int = raw.execute("SELECT count(*) FROM entries").fetchone()[0]
            return count

    try:
        for number in range(700):
            await store.set(f"cache:{number}", b"answer", ttl_s=30)
        await store.set("kept", b"forever")
        assert rows() == 701

        now[0] += 120  # past every expiry and the purge interval
        await store.set("trigger", b"1")
        assert rows() == 701 + 1 - 500  # one bounded batch, not every expired entry at once

        await store.set("trigger", b"2")  # the batch was full: the next write purges again
        assert rows() == 2  # "kept" and "trigger"
    finally:
        await store.aclose()


async def test_a_relative_state_file_lives_under_the_data_folder_and_is_created_with_it(
    tmp_path: Path,
) -> None:
    settings = load_settings(environ={"KB_DATA_DIR": str(tmp_path / "data"), "KB_STATE__FILE": "nested/s.db"})

    store = open_state_store(settings)
    try:
        await store.set("k", b"v")
        assert state_file(settings) == tmp_path / "data" / "nested" / "s.db"
        assert state_file(settings).is_file()
        assert store.description == f"file {tmp_path / 'data' / 'nested' / 's.db'}"
    finally:
        await store.aclose()


def test_without_redis_url_the_state_store_is_the_file(tmp_path: Path) -> None:
    store = open_state_store(load_settings(environ={"KB_DATA_DIR": str(tmp_path)}))

    assert isinstance(store, FileStateStore)
    assert store.path == tmp_path / "state.sqlite3"


@pytest.mark.parametrize("version", [2, 99])
def test_a_state_file_from_a_newer_schema_is_refused_at_open(tmp_path: Path, version: int) -> None:
    path = tmp_path / "state.sqlite3"
    with sqlite3.connect(path) as raw:
        raw.execute(f"PRAGMA user_version={version}")

    with pytest.raises(ConfigError, match="newer version"):
        FileStateStore.open(path, StateSettings())
