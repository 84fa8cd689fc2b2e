"""Sentence boundaries: the one splitter that chunking, budget cuts and the extractive answerer share."""

from __future__ import annotations

import re

__all__ = ["sentence_spans", "split_sentences"]

# A sentence ends after ., !, ? or … (plus closing quotes/brackets) followed by whitespace, after
# CJK full stops, at a blank line, or at a line break before a list item, heading or table row
# (markdown chunks are line-structured; a hard-wrapped line inside a paragraph is not a boundary).
_BOUNDARY_RE = re.compile(
    r"""(?:[.!?…]+["'”’)\]]*(?=\s)|[。！？]+["'”’)\]」』）]*)"""
    r"""|\n[ \t]*\n\s*"""
    r"""|\n(?=[ \t]*(?:[-*+•]\s|\d+[.)]\s|\#|\|))""",
    re.UNICODE,
)
_ABBREVIATIONS = frozenset("e.g i.e etc vs cf fig mr mrs ms dr st approx incl resp".split())


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) offsets of the sentences of ``text``, whitespace trimmed, in order."""
    spans: list[tuple[int, int]] = []
    start = 0
    for match in _BOUNDARY_RE.finditer(text):
        end = match.end()
        if match.group().startswith(".") and _is_abbreviation(text, match.start()):
            continue
        _add_span(text, start, end, spans)
        start = end
    _add_span(text, start, len(text), spans)
    return spans


def split_sentences(text: str) -> list[str]:
    """The sentences of ``text``, whitespace trimmed, in order."""
    return [text[a:b] for a, b in sentence_spans(text)]


def _is_abbreviation(text: str, dot: int) -> bool:
    """Whether the period at ``dot`` ends an abbreviation or an initial rather than a sentence."""
    word = re.search(r"(\w+(?:\.\w+)*)$", text[max(0, dot - 12) : dot])
    if word is None:
        return False
    token = word.group(1)
    initial = len(token) == 1 and token.isalpha() and token.isupper()
    return initial or token.lower() in _ABBREVIATIONS


def _add_span(text: str, start: int, end: int, spans: list[tuple[int, int]]) -> None:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    if start < end:
        spans.append((start, end))
