"""Post-process an answer: which sources did it actually cite?

Citations are bracketed source numbers as the prompt asks for them: ``[1]``, ``[1, 3]``,
``[1][2]``, ``[1-3]``. Anything else in brackets is prose, not a citation: ``[a]``, markdown
links ``[text](url)``, footnotes ``[^1]``, and indexing inside code (``xs[1]``).
"""

from __future__ import annotations

import re

__all__ = ["extract_citations"]

# Fenced code blocks (closed or still open at the end of the answer) and inline code spans.
_CODE_RE = re.compile(r"```.*?(?:```|\Z)|~~~.*?(?:~~~|\Z)|`[^`\n]*`", re.DOTALL)
_NUMBER_OR_RANGE = r"\d+(?:\s*[-\u2013\u2014]\s*\d+)?"
# A bracket group of numbers and ranges, not followed by "(" (a markdown link) or ":" (a
# reference-style link definition).
_GROUP_RE = re.compile(rf"\[\s*({_NUMBER_OR_RANGE}(?:\s*[,;]\s*{_NUMBER_OR_RANGE})*)\s*\](?![(:])")
_ITEM_RE = re.compile(r"(\d+)(?:\s*[-\u2013\u2014]\s*(\d+))?")


def extract_citations(answer: str, source_count: int) -> list[int]:
    """Source numbers cited in ``answer``, deduplicated, in order of first appearance.

    Numbers outside ``1..source_count`` are ignored; a range keeps its in-range part
    (``[2-9]`` with 3 sources cites 2 and 3) and a reversed range (``[3-1]``) is ignored.
    """
    if source_count <= 0:
        return []
    prose = _CODE_RE.sub(" ", answer)
    seen: dict[int, None] = {}
    for group in _GROUP_RE.finditer(prose):
        for item in _ITEM_RE.finditer(group.group(1)):
            first = int(item.group(1))
            last = int(item.group(2)) if item.group(2) else first
            # Clamp before expanding, so "[1-999999999]" costs nothing.
            for n in range(max(first, 1), min(last, source_count) + 1):
                seen.setdefault(n, None)
    return list(seen)
