"""Build ``Settings`` from TOML files and the environment.

Every default lives in the settings structs (``app.settings``); files and variables only override
them. Order, later wins:

1. the defaults of the settings structs
2. ``default.toml`` in the configuration folder (overrides shared by every environment; the one
   shipped sets nothing)
3. ``<KB_ENV>.toml`` (when ``KB_ENV`` is set and the file exists; an unknown env with no file is
   an error, so a typo does not silently run with defaults)
4. ``KB_<SECTION>__<KEY>`` environment variables (``KB_DATA_DIR`` for top-level keys), parsed as
   TOML values when they parse (``3``, ``true``, ``["a"]``) and as strings otherwise
5. secrets, from the environment only: ``ANTHROPIC_API_KEY``, ``OPENAI_API_KEY``, ``QDRANT_URL``,
   ``QDRANT_API_KEY``, ``REDIS_URL``

The configuration folder is ``KB_CONFIG_DIR``, else the one installed with the package, else the
source tree's ``config/`` (``app.resources``).

Any unknown key, wrong type or out-of-range value raises ``ConfigError`` naming the key and the
file (or variable) it came from.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec

from app import resources
from app.errors import ConfigError
from app.settings import Secrets, Settings

__all__ = ["load_settings"]

_ENV_PREFIX = "KB_"
# KB_ variables that choose where configuration comes from rather than set a key.
_RESERVED_ENV = {"KB_ENV", resources.CONFIG_DIR_ENV, resources.PROMPTS_DIR_ENV}
_PATH_RE = re.compile(r"at `\$((?:\.\w+|\[\d+\])*)`")


def load_settings(
    *,
    env: str | None = None,
    environ: Mapping[str, str] | None = None,
    config_dir: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Load settings. ``overrides`` (nested dict) is applied last, for tests and tools."""
    environ = os.environ if environ is None else environ
    if config_dir is None:
        config_dir = resources.config_dir(environ)
        chosen = environ.get(resources.CONFIG_DIR_ENV)
        if chosen and not config_dir.is_dir():
            # A typo must not silently run with the defaults, as for KB_ENV below.
            raise ConfigError(f"{resources.CONFIG_DIR_ENV}={chosen!r} is not a folder")
    env = env or environ.get("KB_ENV") or "development"

    merged: dict[str, Any] = {}
    origin: dict[str, str] = {}

    default_file = config_dir / "default.toml"
    if default_file.is_file():
        _merge(merged, _read_toml(default_file), origin, str(default_file))
    env_file = config_dir / f"{env}.toml"
    if env_file.is_file():
        _merge(merged, _read_toml(env_file), origin, str(env_file))
    elif env not in ("development", "default"):
        raise ConfigError(f"KB_ENV={env!r} but there is no {env_file}")

    _merge(merged, _environment_overrides(environ), origin, "environment")
    if overrides:
        _merge(merged, dict(overrides), origin, "overrides")
    merged["env"] = env
    if "secrets" in merged:
        raise ConfigError(f"secrets may only come from the environment (found in {origin.get('secrets')})")

    try:
        settings = msgspec.convert(merged, Settings, strict=False)
    except msgspec.ValidationError as exc:
        raise ConfigError(_explain(exc, origin)) from None

    secrets = Secrets(
        anthropic_api_key=environ.get("ANTHROPIC_API_KEY") or None,
        openai_api_key=environ.get("OPENAI_API_KEY") or None,
        qdrant_url=environ.get("QDRANT_URL") or None,
        qdrant_api_key=environ.get("QDRANT_API_KEY") or None,
        redis_url=environ.get("REDIS_URL") or None,
    )
    settings = msgspec.structs.replace(settings, secrets=secrets)
    _check_cross_field(settings)
    return settings


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None


def _merge(
    into: dict[str, Any], new: Mapping[str, Any], origin: dict[str, str], source: str, prefix: str = ""
) -> None:
    for key, value in new.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping):
            if not isinstance(into.get(key), dict):
                into[key] = {}
            _merge(into[key], value, origin, source, dotted + ".")
        else:
            into[key] = value
        origin[dotted] = source


def _environment_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for name, raw in environ.items():
        if not name.startswith(_ENV_PREFIX) or name in _RESERVED_ENV:
            continue
        parts = name[len(_ENV_PREFIX) :].lower().split("__")
        if not all(parts):
            raise ConfigError(f"environment variable {name} is not of the form KB_SECTION__KEY")
        node = result
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"environment variable {name} conflicts with another KB_ variable")
        node[parts[-1]] = _parse_env_value(raw)
    return result


def _parse_env_value(raw: str) -> Any:
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def _explain(exc: msgspec.ValidationError, origin: Mapping[str, str]) -> str:
    message = str(exc)
    match = _PATH_RE.search(message)
    if not match:
        return f"invalid configuration: {message}"
    dotted = match.group(1).lstrip(".")
    key = dotted
    if "Object contains unknown field" in message:
        unknown = re.search(r"unknown field `([^`]+)`", message)
        if unknown:
            key = f"{dotted}.{unknown.group(1)}" if dotted else unknown.group(1)
    source = _origin_of(key, origin)
    return f"invalid configuration key {key!r} (from {source}): {message}"


def _origin_of(key: str, origin: Mapping[str, str]) -> str:
    probe = key
    while probe:
        if probe in origin:
            source = origin[probe]
            if source == "environment":
                return "environment variable " + _ENV_PREFIX + probe.upper().replace(".", "__")
            return source
        probe = probe.rpartition(".")[0]
    return "defaults"


def _check_cross_field(settings: Settings) -> None:
    if settings.server.workers > 1 and not settings.secrets.qdrant_url:
        raise ConfigError(
            "server.workers > 1 needs a Qdrant server (set QDRANT_URL): "
            "the embedded store can be opened by one process only"
        )
    settings.generation.check_provider()
    if settings.retrieval.top_k > settings.retrieval.max_top_k:
        raise ConfigError("retrieval.top_k must not exceed retrieval.max_top_k")
    if settings.chunking.overlap_tokens >= settings.chunking.max_tokens // 2:
        raise ConfigError("chunking.overlap_tokens must be less than half of chunking.max_tokens")
