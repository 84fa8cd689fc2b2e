"""Structure-aware chunking: split a ``LoadedDocument`` into drafts that each fit the model.

Guarantee: for every draft, ``counter.count(embedding_text) <= max_tokens``, where the embedding
text is the heading path joined with `` > ``, a newline, then the body (exactly what
``app.records.embedding_text`` builds). Each draft is checked with one real count; sums of piece
counts are only used to plan. With a counter that gives token ids (an ``IdTokenizer``), that
count is of the ids, and ``chunk_document_ids`` returns them with the drafts: they are the
model's input for the chunk, so ingestion hands them to the model instead of tokenizing the
chunk a second time.

Policy, outermost first:

* Sections (heading path, PDF page) are never merged; each is chunked on its own.
* The heading path counts against the budget. When it would take more than a third of it, the
  outermost headings are dropped, then the innermost one is cut at a token boundary; the draft
  carries the shortened path, since that is what gets embedded.
* Whole paragraphs are packed while they fit. A paragraph that cannot fit a chunk on its own (or
  that, moved whole to the next chunk, would leave less than ``min_tokens`` behind) is split
  at sentences (``app.text.sentences``, the splitter answers are cut and quoted by too), a
  sentence that is still too long at line breaks, and a line that is still too long at token boundaries,
  preferring whitespace, then punctuation. Line-structured text (code, tables, lists: lines
  without a sentence end) is split at lines rather than treated as one long sentence.
* Overlap: a chunk after the first in a section starts with the longest run of whole trailing
  units (sentences, or lines/pieces of over-long sentences) of the previous chunk that fits
  ``overlap_tokens``; a unit is never cut to make overlap, so an over-long last sentence means no
  overlap. Overlap repeats only the previous chunk's own content, never all of it, never more
  than half the body budget, and shrinks (or disappears) when the next paragraph needs the room.
* ``min_tokens``: besides the rule above, a section's last chunk with less new content than this
  takes whole sentences from the end of the previous chunk when both continue one paragraph
  (greedy packing means the small piece never fits into the previous chunk, so merging cannot
  help). A section shorter than ``min_tokens`` is still one chunk.
* Whitespace inside a paragraph is kept as written (code stays code); paragraphs are joined by
  a blank line.
"""

from __future__ import annotations

import itertools
import re
from bisect import bisect_left
from typing import NamedTuple

import msgspec

from app.records import embedding_text
from app.text.sentences import sentence_spans
from app.text.tokens import IdTokenizer, Tokenizer
from ingest.documents import LoadedDocument

__all__ = ["ChunkDraft", "chunk_document", "chunk_document_ids"]

_MIN_MAX_TOKENS = 8
_PARAGRAPH_BREAK = re.compile(r"\n(?:[ \t]*\n)+")
_LINE_END = re.compile(r"\n")
_CLOSES_SENTENCE = re.compile(r"[.!?。！？][\"'”’)\]」』）]*$")


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


class _Plan(NamedTuple):
    budget: int
    """Tokens left for the body once the heading path is counted."""
    overlap_tokens: int
    min_tokens: int


class _Section(NamedTuple):
    text: str
    paragraphs: list[tuple[int, int]]
    token_starts: list[int]

    def tokens_between(self, start: int, end: int) -> int:
        return bisect_left(self.token_starts, end) - bisect_left(self.token_starts, start)


def chunk_document(
    document: LoadedDocument,
    counter: Tokenizer,
    *,
    max_tokens: int,
    overlap_tokens: int = 32,
    min_tokens: int = 24,
) -> list[ChunkDraft]:
    """Split ``document`` into drafts whose embedding text is at most ``max_tokens`` tokens.

    Raises ``ValueError`` for a ``max_tokens`` below 8 or negative options.
    """
    drafts = chunk_document_ids(
        document, counter, max_tokens=max_tokens, overlap_tokens=overlap_tokens, min_tokens=min_tokens
    )
    return [draft for draft, _ in drafts]


def chunk_document_ids(
    document: LoadedDocument,
    counter: Tokenizer,
    *,
    max_tokens: int,
    overlap_tokens: int = 32,
    min_tokens: int = 24,
) -> list[tuple[ChunkDraft, list[int] | None]]:
    """``chunk_document``, each draft with the token ids of its embedding text (no special
    tokens) when ``counter`` is an ``IdTokenizer``, else ``None``."""
    if max_tokens < _MIN_MAX_TOKENS:
        raise ValueError(f"max_tokens must be at least {_MIN_MAX_TOKENS}, got {max_tokens}")
    if overlap_tokens < 0 or min_tokens < 0:
        raise ValueError("overlap_tokens and min_tokens must not be negative")
    fitted_paths: dict[tuple[str, ...], tuple[tuple[str, ...], int]] = {}
    drafts: list[tuple[ChunkDraft, list[int] | None]] = []
    for section in document.sections:
        if not section.text.strip():
            continue
        if section.heading_path not in fitted_paths:
            fitted = _fit_heading_path(section.heading_path, counter, max_tokens // 3)
            fitted_paths[section.heading_path] = fitted
        path, path_tokens = fitted_paths[section.heading_path]
        plan = _Plan(max_tokens - path_tokens, overlap_tokens, min_tokens)
        texts = _chunk_section(_prepare(section.text, counter), path, counter, max_tokens, plan)
        drafts.extend(
            (ChunkDraft(heading_path=path, text=text, page=section.page), ids) for text, ids in texts
        )
    return drafts


def _fit_heading_path(path: tuple[str, ...], counter: Tokenizer, limit: int) -> tuple[tuple[str, ...], int]:
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


def _truncate(text: str, counter: Tokenizer, limit: int) -> str:
    """The longest token-boundary prefix of ``text`` that counts at most ``limit`` tokens."""
    cuts = [start for start, _ in counter.offsets(text)[1 : limit + 1]][::-1]
    # Whole words first: a cut inside a word leaves a fragment that can re-count longer.
    for cut in [cut for cut in cuts if text[cut - 1].isspace()] + cuts:
        candidate = text[:cut].rstrip()
        if counter.count(candidate) <= limit:
            return candidate
    return ""


def _prepare(text: str, counter: Tokenizer) -> _Section:
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
    section: _Section, path: tuple[str, ...], counter: Tokenizer, max_tokens: int, plan: _Plan
) -> list[tuple[str, list[int] | None]]:
    """The section's chunk texts, each with the ids of its embedding text when ``counter`` gives ids."""
    attempt = 0
    while plan.budget > 0:
        units = [_units(section, index, plan.budget) for index in range(len(section.paragraphs))]
        texts = [_render(section.text, chunk) for chunk in _pack(units, plan)]
        if isinstance(counter, IdTokenizer):
            # The real count of each draft is the length of its ids; keep them for the model.
            ids: list[list[int] | None] = [counter.ids(embedding_text(path, text)) for text in texts]
            counts = [len(found) for found in ids if found is not None]
        else:
            ids = [None] * len(texts)
            counts = [counter.count(embedding_text(path, text)) for text in texts]
        excess = max(count - max_tokens for count in counts)
        if excess <= 0:
            return list(zip(texts, ids, strict=True))
        # Piece counts are additive for word-piece tokenizers except where a cut falls inside a
        # word; re-plan with a smaller budget, shrinking faster each time so this stays short.
        attempt += 1
        plan = plan._replace(budget=plan.budget - max(excess, attempt))
    raise RuntimeError("tokenizer counts are too inconsistent to fit chunks into max_tokens")


def _units(section: _Section, index: int, limit: int) -> list[_Unit]:
    """Sentences of a paragraph; lines of line-structured text and of sentences over ``limit``
    tokens; token windows of lines still over ``limit``."""
    start, end = section.paragraphs[index]
    units: list[_Unit] = []
    sentences = [(start + a, start + b) for a, b in sentence_spans(section.text[start:end])]
    for sentence_start, sentence_end in sentences:
        tokens = section.tokens_between(sentence_start, sentence_end)
        sentence = section.text[sentence_start:sentence_end]
        # Several lines that do not end a sentence are code, a table or a list: lines are their
        # natural units. Wrapped prose (text, PDF) ends in punctuation and stays whole.
        line_structured = "\n" in sentence and not _CLOSES_SENTENCE.search(sentence)
        if tokens <= limit and not line_structured:
            units.append(_Unit(index, sentence_start, sentence_end, tokens))
            continue
        for line_start, line_end in _spans(section.text, sentence_start, sentence_end, _LINE_END):
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
            leading = len(piece) - len(piece.lstrip())
            spans.append((position + leading, position + len(piece.rstrip())))
        position = cut
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


def _pack(paragraphs: list[list[_Unit]], plan: _Plan) -> list[list[_Unit]]:
    """Pack a section's paragraphs into chunks of units; see the module docstring for the rules."""
    packer = _Packer(plan)
    for units in paragraphs:
        packer.add_paragraph(units)
    return packer.finish()


class _Chunk(NamedTuple):
    units: list[_Unit]
    repeated: int
    """How many leading units repeat the previous chunk (overlap)."""

    @property
    def fresh(self) -> list[_Unit]:
        return self.units[self.repeated :]


class _Packer:
    def __init__(self, plan: _Plan) -> None:
        self.budget = plan.budget
        self.min_tokens = plan.min_tokens
        self.overlap = min(plan.overlap_tokens, plan.budget // 2)
        self.chunks: list[_Chunk] = []
        self.current = _Chunk([], 0)

    def add_paragraph(self, units: list[_Unit]) -> None:
        size = _tokens(units)
        used = _tokens(self.current.units)
        if used + size <= self.budget:
            self.current.units.extend(units)
        elif size <= self.budget and _tokens(self.current.fresh) >= self.min_tokens:
            self._close(room_needed=size)
            self.current.units.extend(units)
        else:
            # Too big for any chunk, or moving it whole would strand a tiny chunk behind it (say,
            # the sentence introducing a code block): fill up sentence by sentence instead.
            for unit in units:
                if used + unit.tokens > self.budget and self.current.fresh:
                    self._close(room_needed=unit.tokens)
                    used = _tokens(self.current.units)
                self.current.units.append(unit)
                used += unit.tokens

    def finish(self) -> list[list[_Unit]]:
        if self.current.fresh:
            self.chunks.append(self.current)
        if len(self.chunks) >= 2:
            self._fill_last()
        return [chunk.units for chunk in self.chunks]

    def _close(self, room_needed: int) -> None:
        self.chunks.append(self.current)
        # Never repeat the previous chunk's first own unit, so no chunk is a copy of another.
        candidates = self.current.fresh[1:]
        tail = _overlap_tail(candidates, min(self.overlap, self.budget - room_needed))
        self.current = _Chunk(list(tail), len(tail))

    def _fill_last(self) -> None:
        """Give a last chunk with under ``min_tokens`` of its own content whole sentences from the
        end of the previous chunk, when both continue the same paragraph.

        Greedy packing means the tiny piece never fits into the previous chunk, so merging is not
        an option; moving the split point back is.
        """
        previous, last = self.chunks[-2], self.chunks[-1]
        fresh, kept = last.fresh, previous.units
        fresh_tokens = _tokens(fresh)
        while (
            fresh_tokens < self.min_tokens
            and len(kept) > previous.repeated + 1
            and kept[-1].para == fresh[0].para
            and fresh_tokens + kept[-1].tokens <= self.budget
        ):
            fresh, kept = [kept[-1], *fresh], kept[:-1]
            fresh_tokens += fresh[0].tokens
        if kept is previous.units:
            return
        room = min(self.overlap, self.budget - fresh_tokens)
        tail = _overlap_tail(kept[previous.repeated + 1 :], room)
        self.chunks[-2:] = [_Chunk(kept, previous.repeated), _Chunk([*tail, *fresh], len(tail))]


def _tokens(units: list[_Unit]) -> int:
    return sum(unit.tokens for unit in units)


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
    """Consecutive units of a paragraph are one slice of the source; paragraphs join with a blank
    line."""
    parts: list[str] = []
    group_start = units[0]
    for previous, unit in itertools.pairwise(units):
        if unit.para != previous.para:
            parts.append(text[group_start.start : previous.end])
            group_start = unit
    parts.append(text[group_start.start : units[-1].end])
    return "\n\n".join(parts)
