"""What the offline answerer may quote: the prose sentences and table rows of a context.

Ingestion hands chunks on as plain text: a paragraph is one line, a list item a ``- `` line, a
table row a line of cells separated by `` | ``, and a code block keeps its line breaks (Markdown
and HTML lose their fences on the way). So a code block is recognised by its shape (continuation
lines, a density of symbols prose does not have), and a table by its separators.

* Prose sentences are quoted as they are, one line each, without list bullets or heading marks.
  Headings, list stubs, labels and the cut-off ends of a chunk (chunks overlap, so one may start
  mid-sentence) are left out; a sentence split inside inline code is joined back, so a command
  stays whole.
* A table row is never quoted as a table: one row may be quoted as one labelled line, its first
  cell as the label ("top_k: integer, optional; how many sources may reach the answer (default
  6, at most 20)"), short cells named by their column. The table's header, and the heading of
  the chunk, count as the row's words: a row under "key | default" is about defaults without
  saying so.
* Code is never quoted.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from app.records import ScoredChunk
from app.text.sentences import split_sentences
from app.text.terms import terms

__all__ = [
    "Candidate",
    "candidate_sentences",
    "list_units",
    "looks_like_code",
    "prose_sentences",
    "table_rows",
]

_MIN_WORDS = 5
"""Shorter sentences (headings, list stubs, captions) say too little to be quoted as an answer."""
_MIN_WORDS_UNFINISHED = 9
"""A sentence without closing punctuation must be this long to count as prose, not a label."""
_MIN_ITEM_WORDS = 2
_UNIT_ITEMS = 3
_LABEL_WORDS = 6
_ROW_WORDS = 45
"""A table row longer than this is a paragraph in a cell, not a fact to quote on one line."""
_HEADER_CELL_WORDS = 3
_NAMED_CELL_WORDS = 3
"""Cells of at most this many words are named by their column ("default all-MiniLM-L6-v2"); a
longer one reads on its own."""
_CODE_SYMBOLS = frozenset('{}[]<>=/\\|$#@~^*;"`')
_CODE_DENSITY = 0.08
"""Share of a text's visible characters that are code symbols above which it is code: prose,
even about software, stays well below (a sentence naming a path or two); a command line, JSON,
an HTTP exchange or a config file is above."""

# Markdown decoration at the start of a line: list bullets, numbers, heading marks, quotes.
_LEADING_MARKUP_RE = re.compile(r"^\s*(?:[-*+•>]|\d+[.)]|#{1,6})\s+")
_TABLE_RE = re.compile(r"(?:^|\n)\s*\||\s\|\s|\|\s*:?-{3,}")
_FENCE_RE = re.compile(r"^\s*(```|~~~).*?(?:^\s*\1[^\n]*$|\Z)", re.MULTILINE | re.DOTALL)
_INDENTED_CODE_RE = re.compile(r"(?:^|\n)(?:\n|^)((?:(?: {4}|\t)[^\n]*(?:\n|$))+)")
_TERMINAL_RE = re.compile(r"""[.!?…]["'”’)\]]*$""")
_BULLET_RE = re.compile(r"^\s*(?:[-*+•]|\d+[.)])\s+")
_LOWER_START_RE = re.compile(r"^[a-z]")
_CONTINUATION_RE = re.compile(r"^[,;:)\]}.]")
_ROW_SPLIT_RE = re.compile(r"\s+\|\s+")
_DIGIT_RE = re.compile(r"\d")
_SEPARATOR_CELL_RE = re.compile(r"^:?-+:?$|^$")


@dataclass(frozen=True, slots=True)
class Candidate:
    """One quotable sentence (or table row) of the context."""

    source: int
    """1-based source number (the citation)."""
    position: int
    text: str
    """What is quoted."""
    terms: frozenset[str]
    """Its index terms, with those of its heading (and, for a row, its table's header)."""
    item: int | None = None
    """The list this sentence opens an item of (per source), or None outside lists."""
    label: str = ""
    """The item's lead before its colon ("PDF (.pdf)"), when it has a short one."""
    row: bool = False
    """A table row, rendered as one labelled line."""
    unit: bool = False
    """A whole labelled list read as one text (its heading and its items' labels): an
    enumeration answers "which ..." as a whole, though no item does alone. Scored, never quoted
    as such; ``item`` names the list, ``label`` is its heading (what the list is about)."""


def candidate_sentences(context: Sequence[ScoredChunk]) -> list[Candidate]:
    """The quotable sentences and rows of the context, in source order, each text once."""
    out: list[Candidate] = []
    seen: set[str] = set()
    for number, chunk in enumerate(context, start=1):
        # A sentence under "Supported formats" is about formats without saying the word.
        heading = (
            frozenset(terms(chunk.record.heading_path[-1])) if chunk.record.heading_path else frozenset()
        )
        for position, (sentence, item, label, extra) in enumerate(_quotable(chunk.record.text)):
            if sentence in seen:  # the same sentence from overlapping chunks
                continue
            seen.add(sentence)
            words = frozenset(terms(sentence)) | heading | frozenset(terms(extra))
            out.append(Candidate(number, position, sentence, words, item, label, row=bool(extra)))
    return out


def list_units(candidates: Sequence[Candidate], context: Sequence[ScoredChunk]) -> list[Candidate]:
    """One ``unit`` candidate per labelled list of at least ``min_items`` items: "Supported formats:
    Markdown (.md, .markdown); Plain text (.txt, .text); PDF (.pdf); ...", with every item's words."""
    groups: dict[tuple[int, int], list[Candidate]] = {}
    for c in candidates:
        if c.item is not None:
            groups.setdefault((c.source, c.item), []).append(c)
    units: list[Candidate] = []
    for (source, item), members in groups.items():
        if len(members) < _UNIT_ITEMS or not all(c.label for c in members):
            continue
        path = context[source - 1].record.heading_path
        labels = "; ".join(c.label for c in members)
        heading = path[-1] if path else ""
        text = f"{heading}: {labels}" if heading else labels
        # The list stands for its whole section: every heading above it says what it is about.
        words = frozenset().union(*(c.terms for c in members), *(terms(h) for h in path))
        units.append(Candidate(source, members[0].position, text, words, item, label=heading, unit=True))
    return units


def _quotable(text: str) -> list[tuple[str, int | None, str, str]]:
    """(text, list number, label, header words) of one chunk: prose sentences and table rows, in
    order; the header words are non-empty for rows only."""
    text = _FENCE_RE.sub("\n\n", text)
    text = _INDENTED_CODE_RE.sub("\n\n", text)
    prose: list[str] = []
    out: list[tuple[str, int | None, str, str]] = []
    lists = 0

    def flush() -> None:
        nonlocal lists
        if prose:
            for sentence, item, label in prose_sentences("\n\n".join(prose), first_list=lists):
                out.append((sentence, item, label, ""))
                if item is not None:
                    lists = max(lists, item)
            prose.clear()

    for block in re.split(r"\n[ \t]*\n", text):
        if _is_table(block):
            flush()
            out.extend((line, None, "", header) for line, header in table_rows(block))
            continue
        if not block.strip() or looks_like_code(block):
            flush()  # a code block ends the passage: the sentence before it is not cut off
            continue
        prose.append(block)
    flush()
    return out


def looks_like_code(block: str) -> bool:
    """Whether a block of chunk text is code: a command, JSON, an HTTP exchange, a config file.

    Prose reaches ingestion as one line per paragraph and ``- `` lines per list. So a block of
    several other lines, one of them indented or none of them finished like a sentence, is code,
    and so is one dense in the symbols code is made of; a single line is code when it is not
    finished like a sentence and is that dense (``| jq``, ``{"request_id": ...}``).
    """
    lines = [line for line in block.split("\n") if line.strip()]
    plain = [line for line in lines if not _BULLET_RE.match(line)]
    if not plain:
        return False
    if len(lines) == 1:
        line = lines[0].strip()
        if _TERMINAL_RE.search(line) or line.endswith(":"):
            return False
        return _density(line) >= _CODE_DENSITY
    if any(line.startswith("$ ") for line in plain):
        return True  # a shell session: the prompt, then what the command printed
    if len(plain) >= 2:
        indented = any(line[:1].isspace() for line in plain[1:])
        unfinished = not any(_TERMINAL_RE.search(line.rstrip()) for line in plain)
        if indented or unfinished:
            return True
    return _density("\n".join(plain)) >= _CODE_DENSITY


def _density(text: str) -> float:
    visible = [ch for ch in text if not ch.isspace()]
    return sum(ch in _CODE_SYMBOLS for ch in visible) / len(visible) if visible else 0.0


def _is_table(block: str) -> bool:
    lines = [line for line in block.split("\n") if line.strip()]
    return bool(lines) and all(_ROW_SPLIT_RE.search(line) for line in lines)


def table_rows(block: str) -> list[tuple[str, str]]:
    """The rows of a table block as (labelled line, header words); the header itself is not a row.

    The first line is the header when its cells look like column names (a few words, no
    digits); a chunk that starts inside a table has none, and its rows are read without one.
    """
    rows = [
        [cell.strip() for cell in _ROW_SPLIT_RE.split(line.strip().strip("|"))] for line in block.split("\n")
    ]
    # A Markdown separator row (``--- | :---:``) divides the header from the rows; it says nothing.
    rows = [row for row in rows if any(row) and not all(_SEPARATOR_CELL_RE.match(cell) for cell in row)]
    header: list[str] = []
    if rows and all(
        len(cell.split()) <= _HEADER_CELL_WORDS and not _DIGIT_RE.search(cell) for cell in rows[0]
    ):
        header, rows = rows[0], rows[1:]
    out: list[tuple[str, str]] = []
    for row in rows:
        label, *cells = row
        if not label or not cells or not any(cells) or len(" ".join(row).split()) > _ROW_WORDS:
            continue
        named = []
        for index, cell in enumerate(cells, start=1):
            if not cell:
                continue
            column = header[index] if index < len(header) else ""
            short = len(cell.split()) <= _NAMED_CELL_WORDS
            named.append(
                f"{column} {cell}" if column and short and column.lower() not in cell.lower() else cell
            )
        line = f"{label}: {'; '.join(named)}"
        out.append((line, " ".join(header) or "table"))
    return out


def prose_sentences(text: str, *, first_list: int = 0) -> list[tuple[str, int | None, str]]:
    """The sentences of prose worth quoting, one line each, with the list item each opens.

    Returns (sentence, list number or None, item label) in order; lists are numbered on from
    ``first_list``.
    """
    units: list[tuple[str, int | None, bool]] = []  # (raw sentence, list number, opens an item)
    lists = first_list
    for block in re.split(r"\n[ \t]*\n", text):
        is_list = bool(_BULLET_RE.match(block))
        if is_list:
            lists += 1
        for number, sentence in enumerate(_join_split_code(split_sentences(block))):
            opens = is_list and bool(_BULLET_RE.match(sentence))
            units.append((sentence, lists if is_list else None, opens or (is_list and number == 0)))
    kept: list[tuple[str, int | None, str]] = []
    for index, (sentence, in_list, opens) in enumerate(units):
        if _TABLE_RE.search(sentence) or sentence.lstrip().startswith("#"):
            continue
        clean = _clean(sentence)
        if index == 0 and _CONTINUATION_RE.match(clean):
            continue  # the chunk starts mid-sentence
        finished = bool(_TERMINAL_RE.search(clean))
        if index == len(units) - 1 and len(units) > 1 and not finished and not clean.endswith(":"):
            continue  # the chunk may end mid-sentence, however long the line
        words = len(clean.split())
        if opens and finished and words >= _MIN_ITEM_WORDS:
            pass  # a short list item ("Plain text (.txt).") still belongs to its enumeration
        elif words < _MIN_WORDS:
            continue  # "Example:", "For instance:" introduce what follows, they say nothing
        elif not finished and not clean.endswith(":") and words < _MIN_WORDS_UNFINISHED:
            continue  # a label, not prose; a line ending with a colon says what follows does
        if not finished and looks_like_code(clean):
            continue  # a one-line command or payload that lost its line breaks
        label = ""
        lead = clean.partition(": ")[0] if ": " in clean else clean.rstrip(".")
        if opens and len(lead.split()) <= _LABEL_WORDS:
            label = lead
        kept.append((clean, in_list if opens else None, label))
    return kept


def _join_split_code(sentences: list[str]) -> list[str]:
    """Sentences rejoined where the splitter cut inside code or a command.

    An odd count of backticks means the boundary fell inside inline code; a piece that starts
    in lower case continues the previous one (``kb ingest PATH [PATH ...] loads documents`` is
    one sentence, whatever the dots in it).
    """
    joined: list[str] = []
    for sentence in sentences:
        if joined and (joined[-1].count("`") % 2 or _LOWER_START_RE.match(sentence)):
            joined[-1] = f"{joined[-1]} {sentence}"
        else:
            joined.append(sentence)
    return joined


def _clean(sentence: str) -> str:
    """One line of prose: markdown bullets/heading marks removed, whitespace collapsed."""
    return " ".join(_LEADING_MARKUP_RE.sub("", sentence).split())
