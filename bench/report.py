"""How every benchmark reports: its JSON on stdout and, with ``--out``, in a file.

Imported by the scripts beside it (``python bench/<name>.py`` puts this folder on the path).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["emit"]


def emit(result: dict[str, Any], out: Path | None) -> None:
    """Print ``result`` as indented JSON, and write the same text to ``out`` when given."""
    text = json.dumps(result, indent=2)
    print(text)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n", encoding="utf-8")
