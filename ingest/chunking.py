"""Structure-aware chunking: split a ``LoadedDocument`` into drafts that each fit the model.

Guarantee: for every draft, ``counter.count(embedding_text) <= max_tokens``, where the embedding
text is the heading path joined with `` > ``, a newline, then the body (exactly what
``ChunkRecord.embedding_text`` builds). Each draft is checked with one real count; sums of piece
counts are only used to plan.

Policy, outermost first:

* Sections (heading path, PDF page) are never merged; each is chunked on its own.
* The heading path counts against the budget. When it would take more than a third of it, the
  outermost headings are dropped, then the innermost one is cut at a token boundary; the draft
  carries the shortened path, since that is what gets embedded.
* Whole paragraphs are packed while they fit. A paragraph that cannot fit a chunk on its own is
  split at sentences (``.``, ``!``, ``?`` followed by whitespace, and CJK ``。！？``), a sentence
  that is still too long at line breaks, and a line that is still too long at token boundaries,
  preferring whitespace, then punctuation.
* Overlap: a chunk after the first in a section starts with the longest run of whole trailing
  units (sentences, or lines/pieces of over-long sentences) of the previous chunk that fits
  ``overlap_tokens``; a unit is never cut to make overlap, so an over-long last sentence means no
  overlap. Overlap repeats only the previous chunk's own content, never all of it, never more
  than half the body budget, and shrinks (or disappears) when the next paragraph needs the room.
* A last chunk whose new content is under ``min_tokens`` is merged into the previous chunk of the
  same section when the result still fits.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from typing import NamedTuple

import msgspec

from app.embedding import TokenCounter
from ingest.documents import LoadedDocument

__all__ = ["ChunkDraft", "chunk_document"]

_MIN_MAX_TOKENS = 8
_PARAGRAPH_BREAK = re.compile(r"\n(?:[ \t]*\n)+")
_SENTENCE_END = re.compile(r"[.!?]+[\"'”’)\]]*(?=\s)|[。！？]+[」』”’）)]*")


class ChunkDraft(msgspec.Struct, frozen=True):
    """One chunk before it is embedded: its (possibly shortened) heading path, body and page."""

    heading_path: tuple[str, ...]
    text: str
    page: int | None = None


class _Unit(NamedTuple):
    """A sentence, line or token window: a character span of the section text."""

    para: int
    start: int
    end: int
    tokens: int


class _Section(NamedTuple):
    text: str
    paragraphs: list[tuple[int, int]]
    token_starts: list[int]

    def tokens_between(self, start: int, end: int) -> int:
        return bisect_left(self.token_starts, end) - bisect_left(self.token_starts, start)


def chunk_document(
    document: LoadedDocument,
    counter: TokenCounter,
    *,
    max_tokens: int,
    overlap_tokens: int = 32,
    min_tokens: int = 24,
) -> list[ChunkDraft]:
    """Split ``document`` into drafts whose embedding text is at most ``max_tokens`` tokens."""
    if max_tokens < _MIN_MAX_TOKENS:
        raise ValueError(f"max_tokens must be at least {_MIN_MAX_TOKENS}, got {max_tokens}")
    if overlap_tokens < 0 or min_tokens < 0:
        raise ValueError("overlap_tokens and min_tokens must not be negative")
    fitted_paths: dict[tuple[str, ...], tuple[tuple[str, ...], int]] = {}
    drafts: list[ChunkDraft] = []
    for section in document.sections:
        if not section.text.strip():
            continue
        if section.heading_path not in fitted_paths:
            fitted_paths[section.heading_path] = _fit_heading_path(section.heading_path, counter, max_tokens // 3)
        path, path_tokens = fitted_paths[section.heading_path]
        prepared = _prepare(section.text, counter)
        for text in _chunk_section(prepared, path, path_tokens, counter, max_tokens, overlap_tokens, min_tokens):
            drafts.append(ChunkDraft(heading_path=path, text=text, page=section.page))
    return drafts


def _embedding_text(path: tuple[str, ...], text: str) -> str:
    # Must stay identical to ChunkRecord.embedding_text: the guarantee is about that string.
    return " > ".join(path) + "\n" + text if path else text


def _fit_heading_path(path: tuple[str, ...], counter: TokenCounter, limit: int) -> tuple[tuple[str, ...], int]:
    """Shorten ``path`` to at most ``limit`` tokens: innermost headings matter most for topic."""
    path = tuple(heading for heading in path if heading.strip())
    while path:
        tokens = counter.count(" > ".join(path))
        if tokens <= limit:
            return path, tokens
        if len(path) > 1:
            path = path[1:]
            continue
        heading = _truncate(path[0], counter, limit)
        path = (heading,) if heading else ()
    return (), 0


def _truncate(text: str, counter: TokenCounter, limit: int) -> str:
    """The longest token-boundary prefix of ``text`` that counts at most ``limit`` tokens."""
    spans = counter.offsets(text)
    for keep in range(min(limit, len(spans) - 1), 0, -1):
        candidate = text[: spans[keep][0]].rstrip()
        if counter.count(candidate) <= limit:
            return candidate
    return ""


def _prepare(text: str, counter: TokenCounter) -> _Section:
    """Paragraph spans plus token starts of the whole section, from a single tokenizer call."""
    paragraphs: list[tuple[int, int]] = []
    position = 0
    for separator in [*_PARAGRAPH_BREAK.finditer(text), None]:
        end = separator.start() if separator else len(text)
        chunk = text[position:end]
        if chunk.strip():
            leading = len(chunk) - len(chunk.lstrip("\n"))
            paragraphs.append((position + leading, position + len(chunk.rstrip())))
        position = separator.end() if separator else end
    token_starts = [start for start, _ in counter.offsets(text)]
    return _Section(text, paragraphs, token_starts)


def _chunk_section(
    section: _Section,
    path: tuple[str, ...],
    path_tokens: int,
    counter: TokenCounter,
    max_tokens: int,
    overlap_tokens: int,
    min_tokens: int,
) -> list[str]:
    budget = max_tokens - path_tokens
    attempt = 0
    while budget > 0:
        units = [_units(section, index, budget) for index in range(len(section.paragraphs))]
        chunks = _pack(units, budget, min(overlap_tokens, budget // 2), min_tokens)
        texts = [_render(section.text, chunk) for chunk in chunks]
        excess = max(counter.count(_embedding_text(path, text)) - max_tokens for text in texts)
        if excess <= 0:
            return texts
        # Piece counts are additive for word-piece tokenizers except where a cut falls inside a
        # word; re-plan with a smaller budget, shrinking faster each time so this stays short.
        attempt += 1
        budget -= max(excess, attempt)
    raise RuntimeError("tokenizer counts are too inconsistent to fit chunks into max_tokens")


def _units(section: _Section, index: int, limit: int) -> list[_Unit]:
    """Sentences of a paragraph; ones over ``limit`` tokens become lines, then token windows."""
    start, end = section.paragraphs[index]
    units: list[_Unit] = []
    for sentence_start, sentence_end in _spans(section.text, start, end, _SENTENCE_END):
        tokens = section.tokens_between(sentence_start, sentence_end)
        if tokens <= limit:
            units.append(_Unit(index, sentence_start, sentence_end, tokens))
            continue
        for line_start, line_end in _line_spans(section.text, sentence_start, sentence_end):
            tokens = section.tokens_between(line_start, line_end)
            if tokens <= limit:
                units.append(_Unit(index, line_start, line_end, tokens))
            else:
                units.extend(_windows(section, index, line_start, line_end, limit))
    return units


def _spans(text: str, start: int, end: int, boundary: re.Pattern[str]) -> list[tuple[int, int]]:
    """Pieces of ``text[start:end]`` ending at each ``boundary`` match, whitespace trimmed."""
    cuts = [match.end() for match in boundary.finditer(text, start, end)]
    spans: list[tuple[int, int]] = []
    position = start
    for cut in [*cuts, end]:
        piece = text[position:cut]
        if piece.strip():
            spans.append((position + len(piece) - len(piece.lstrip()), position + len(piece.rstrip())))
        position = cut
    return spans


def _line_spans(text: str, start: int, end: int) -> list[tuple[int, int]]:
    spans: list[tuple[int, int]] = []
    position = start
    while position < end:
        newline = text.find("\n", position, end)
        cut = end if newline == -1 else newline
        if text[position:cut].strip():
            piece = text[position:cut]
            spans.append((position + len(piece) - len(piece.lstrip()), position + len(piece.rstrip())))
        position = cut + 1
    return spans


def _windows(section: _Section, index: int, start: int, end: int, limit: int) -> list[_Unit]:
    """Cut ``text[start:end]`` into pieces of at most ``limit`` tokens at token starts."""
    text, starts = section.text, section.token_starts
    first, last = bisect_left(starts, start), bisect_left(starts, end)
    units: list[_Unit] = []
    piece_start, token = start, first
    while last - token > limit:
        cut = _best_cut(text, starts, token + max(1, limit // 2), token + limit)
        units.append(_Unit(index, piece_start, _end_before_space(text, starts[cut]), cut - token))
        piece_start, token = starts[cut], cut
    units.append(_Unit(index, piece_start, end, last - token))
    return units


def _end_before_space(text: str, position: int) -> int:
    while position > 0 and text[position - 1].isspace():
        position -= 1
    return position


def _best_cut(text: str, starts: list[int], lowest: int, highest: int) -> int:
    """Index of the token to start the next piece at: after whitespace, else at punctuation."""
    for candidate in range(highest, lowest - 1, -1):
        if text[starts[candidate] - 1].isspace():
            return candidate
    for candidate in range(highest, lowest - 1, -1):
        # A cut next to punctuation does not split a word, so the pieces re-count the same.
        if not (text[starts[candidate] - 1].isalnum() and text[starts[candidate]].isalnum()):
            return candidate
    return highest


def _pack(paragraphs: list[list[_Unit]], budget: int, overlap: int, min_tokens: int) -> list[list[_Unit]]:
    """Greedy packing of whole paragraphs, falling back to their units; see the module docstring."""
    chunks: list[tuple[list[_Unit], int]] = []  # units, and how many of them lead as overlap
    current: list[_Unit] = []
    repeated = 0
    used = 0

    def close(room_needed: int) -> None:
        nonlocal current, repeated, used
        chunks.append((current, repeated))
        tail = _overlap_tail(current[repeated + 1 :], min(overlap, budget - room_needed))
        current, repeated, used = tail, len(tail), sum(unit.tokens for unit in tail)

    for units in paragraphs:
        size = sum(unit.tokens for unit in units)
        if used + size <= budget:
            current.extend(units)
            used += size
            continue
        if size <= budget:
            close(size)
            current.extend(units)
            used += size
            continue
        for unit in units:
            if used + unit.tokens > budget and len(current) > repeated:
                close(unit.tokens)
            current.append(unit)
            used += unit.tokens
    if len(current) > repeated:
        chunks.append((current, repeated))

    if len(chunks) >= 2:
        (previous, previous_repeated), (last, last_repeated) = chunks[-2], chunks[-1]
        fresh = last[last_repeated:]
        fresh_tokens = sum(unit.tokens for unit in fresh)
        if fresh_tokens < min_tokens and sum(unit.tokens for unit in previous) + fresh_tokens <= budget:
            chunks[-2:] = [(previous + fresh, previous_repeated)]
    return [units for units, _ in chunks]


def _overlap_tail(units: list[_Unit], limit: int) -> list[_Unit]:
    """The longest run of trailing whole units whose tokens add up to at most ``limit``."""
    taken = 0
    total = 0
    for unit in reversed(units):
        if total + unit.tokens > limit:
            break
        total += unit.tokens
        taken += 1
    return units[len(units) - taken :]


def _render(text: str, units: list[_Unit]) -> str:
    """Consecutive units of one paragraph are one slice of the source; paragraphs join with a blank line."""
    parts: list[str] = []
    group_start = units[0]
    for previous, unit in zip(units, units[1:]):
        if unit.para != previous.para:
            parts.append(text[group_start.start : previous.end])
            group_start = unit
    parts.append(text[group_start.start : units[-1].end])
    return "\n\n".join(parts)
