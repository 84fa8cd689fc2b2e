"""The built wheel installs and runs from any folder: configuration and prompts travel with it.

The wheel goes into a fresh virtualenv with ``--no-deps --no-index``; the dependencies (torch,
the model package) are seen through a ``.pth`` file naming this project's virtualenv, so nothing
is downloaded. That virtualenv's editable install of ``kb`` is not visible there (a ``.pth`` line
adds a folder to ``sys.path`` but its own ``.pth`` files are not read), and every command runs
from an empty folder: the source tree is never imported, which the test checks.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import httpx
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(420)]

ROOT = Path(__file__).resolve().parents[2]
GUIDE = """# Backups

The backup job runs every night at two o'clock and keeps thirty daily copies.
Restoring a backup takes about ten minutes and needs the operator role.
"""


def run(*command: str | Path, cwd: Path, env: dict[str, str], timeout: float = 180) -> str:
    result = subprocess.run(
        [str(part) for part in command], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, f"{command} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv with the wheel of this checkout installed; returns its bin folder."""
    base = tmp_path_factory.mktemp("wheel")
    clean = {name: value for name, value in os.environ.items() if name not in ("PYTHONPATH",)}
    run(
        sys.executable,
        "-m",
        "build",
        "--wheel",
        "--no-isolation",
        "--outdir",
        base / "dist",
        ROOT,
        cwd=base,
        env=clean,
    )
    (wheel,) = (base / "dist").glob("kb-*.whl")

    venv = base / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=base, env=clean)
    python = venv / "bin" / "python"
    site_packages = Path(
        run(
            python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=base, env=clean
        ).strip()
    )
    (site_packages / "_project_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    run(
        sys.executable,
        "-m",
        "pip",
        "--python",
        python,
        "install",
        "--no-deps",
        "--no-index",
        "--quiet",
        wheel,
        cwd=base,
        env=clean,
    )
    return venv / "bin"


@pytest.fixture
def user_env(tmp_path: Path) -> dict[str, str]:
    """A user's shell: nothing of this project's configuration, no key, no Qdrant server."""
    environ = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("KB_") and name not in ("PYTHONPATH", "ANTHROPIC_API_KEY", "QDRANT_URL")
    }
    # test.toml (provider = extractive) must come from the installed package, or KB_ENV=test fails.
    return {**environ, "KB_ENV": "test", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def test_the_installed_package_is_imported_with_its_own_configuration_and_prompts(
    installed: Path, tmp_path: Path, user_env: dict[str, str]
) -> None:
    where = run(
        installed / "python",
        "-c",
        "import app, app.resources as r; print(app.__file__); print(r.config_dir()); print(r.prompts_dir())",
        cwd=tmp_path,
        env=user_env,
    ).split()
    venv = installed.parent.resolve()
    for path in where:
        assert Path(path).resolve().is_relative_to(venv), f"{path} is not inside {venv}"
    assert (Path(where[1]) / "test.toml").is_file()
    assert (Path(where[2]) / "answer" / "v1.toml").is_file()


def test_kb_ingest_and_kb_serve_work_from_an_empty_folder(
    installed: Path, tmp_path: Path, user_env: dict[str, str]
) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "backups.md").write_text(GUIDE)
    work = tmp_path / "work"
    work.mkdir()

    run(installed / "kb", "ingest", docs, "--quiet", cwd=work, env=user_env)
    assert (work / "data").is_dir()  # data_dir defaults to ./data, in the working folder
    # Only the development configuration answers without a key: make one, as an operator would.
    key = run(installed / "kb", "keys", "create", "--name", "smoke", "--role", "user", cwd=work, env=user_env)
    headers = {"Authorization": f"Bearer {key.strip()}"}

    port = free_port()
    server = subprocess.Popen(
        [str(installed / "kb"), "serve", "--port", str(port)],
        cwd=work,
        env=user_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        give_up = time.monotonic() + 180
        while True:
            assert server.poll() is None, f"kb serve exited: {server.communicate()[1]}"
            try:
                if httpx.get(f"{base}/health/ready", headers=headers, timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < give_up, "kb serve was not ready within 180 s"
            time.sleep(0.5)

        answer = httpx.post(
            f"{base}/ask",
            json={"question": "How long are backups kept?", "stream": False},
            headers=headers,
            timeout=60,
        )
    finally:
        server.terminate()
        server.communicate(timeout=30)

    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["retrieval_status"] == "ok"
    assert any(source["source"].endswith("backups.md") for source in body["sources"])
    assert body["prompt_version"] == "answer@v1"  # the template shipped in the wheel
    assert body["model"].startswith("extractive")  # test.toml, shipped in the wheel
    assert "thirty" in body["answer"]
