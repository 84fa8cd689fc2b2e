"""Where the configuration folder and the prompt templates are found.

``config/`` and ``prompts/`` live at the top of the repository. The wheel carries a copy of both
inside the package (``app/_resources/``, mapped by ``[tool.hatch.build.targets.wheel.force-include]``
in ``pyproject.toml``), so an installed ``kb`` finds them from any working directory. First found
wins:

1. ``KB_CONFIG_DIR`` / ``KB_PROMPTS_DIR``, taken as given (a relative path is relative to the
   working directory);
2. the copy installed with the package;
3. the source tree (a checkout, or the editable install ``scripts/setup`` makes, where the
   package is imported from the source tree and there is no installed copy).

For the prompts, the ``prompts.directory`` setting, when set, comes before all three.

Paths are worked out on each call, never at import time, so an environment variable set after
import (tests, ``kb`` subcommands) is honoured.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

__all__ = ["CONFIG_DIR_ENV", "PROMPTS_DIR_ENV", "config_dir", "prompts_dir"]

CONFIG_DIR_ENV = "KB_CONFIG_DIR"
PROMPTS_DIR_ENV = "KB_PROMPTS_DIR"


def config_dir(environ: Mapping[str, str] | None = None) -> Path:
    """The folder of ``default.toml`` and the per-environment files."""
    return _find("config", CONFIG_DIR_ENV, os.environ if environ is None else environ)


def prompts_dir(directory: str | None = None, environ: Mapping[str, str] | None = None) -> Path:
    """The folder of the versioned prompt templates.

    ``directory`` is the ``prompts.directory`` setting: when set it wins, and a relative path is
    taken from the working directory, like every other path in the configuration.
    """
    if directory:
        return Path(directory).expanduser()
    return _find("prompts", PROMPTS_DIR_ENV, os.environ if environ is None else environ)


def _find(name: str, variable: str, environ: Mapping[str, str]) -> Path:
    chosen = environ.get(variable)
    if chosen:
        return Path(chosen).expanduser()
    package = Path(__file__).resolve().parent
    installed = package / "_resources" / name
    if installed.is_dir():
        return installed
    return package.parent / name
