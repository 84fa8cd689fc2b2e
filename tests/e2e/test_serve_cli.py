"""``kb serve`` claims its port before the slow start-up and says how to reach it.

These run the real ``kb`` executable in a subprocess. Their embedding model is a path that does
not exist: had ``kb serve`` loaded the model before binding, the failure would be about the model
and would come only after the slow imports, instead of the port message here.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from app.cli import cli
from tests.e2e.servers import LiveServer

pytestmark = pytest.mark.e2e

KB = Path(sys.executable).with_name("kb")


def kb_environment(tmp_path: Path, **extra: str) -> dict[str, str]:
    environ = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("KB_") and name not in ("QDRANT_URL", "ANTHROPIC_API_KEY")
    }
    environ.update(
        KB_DATA_DIR=str(tmp_path / "data"),
        KB_EMBEDDING__MODEL=str(tmp_path / "no-such-model"),
        HF_HUB_OFFLINE="1",
        **extra,
    )
    return environ


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port another program is listening on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        yield other.getsockname()[1]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.timeout(60)
@pytest.mark.parametrize("check", [[], ["--check"]], ids=["serve", "serve --check"])
def test_a_busy_port_fails_at_once_with_a_clear_message(
    busy_port: int, tmp_path: Path, check: list[str]
) -> None:
    started = time.monotonic()
    result = subprocess.run(
        [str(KB), "serve", *check, "--port", str(busy_port)],
        env=kb_environment(tmp_path),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    took = time.monotonic() - started

    assert result.returncode != 0
    assert f"port {busy_port} on 127.0.0.1 is already in use" in result.stderr
    assert "--port" in result.stderr  # says what to do about it
    assert "embedding model" not in result.stderr  # it never got as far as the model
    assert "Traceback" not in result.stderr
    # Process start-up and imports only; loading the model would take several times as long.
    assert took < 15, f"took {took:.1f} s"


@pytest.mark.timeout(60)
def test_serve_check_passes_on_a_free_port_and_does_not_stay(tmp_path: Path) -> None:
    port = free_port()
    result = subprocess.run(
        [str(KB), "serve", "--check", "--port", str(port)],
        env=kb_environment(tmp_path),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert f"127.0.0.1:{port} is free" in result.stderr


@pytest.mark.timeout(60)
def test_serve_holds_the_configured_port_and_prints_the_matching_kb_ask_hint(tmp_path: Path) -> None:
    port = free_port()
    server = subprocess.Popen(
        [str(KB), "serve"],
        env=kb_environment(tmp_path, KB_SERVER__PORT=str(port)),
        cwd=tmp_path,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert server.stderr is not None
        said = [server.stderr.readline(), server.stderr.readline()]
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as rival, pytest.raises(OSError):
            rival.bind(("127.0.0.1", port))  # held while the model would still be loading
    finally:
        server.kill()
        server.wait(timeout=30)
        assert server.stderr is not None
        server.stderr.close()

    assert f"listening on 127.0.0.1:{port}" in said[0]
    assert "Ctrl-C" in said[0]
    assert f"ask --url http://127.0.0.1:{port} " in said[1]


def test_kb_ask_without_url_asks_the_configured_port(kb_server: LiveServer) -> None:
    result = CliRunner().invoke(
        cli,
        ["ask", "How do I install on Linux?"],
        env={"KB_URL": None, "KB_SERVER__HOST": "127.0.0.1", "KB_SERVER__PORT": str(kb_server.port)},
    )
    assert result.exit_code == 0, result.output
    assert "retrieval: ok" in result.stderr
