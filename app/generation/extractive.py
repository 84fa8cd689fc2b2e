"""The offline answerer: quotes the context sentences that best answer the question.

Used when no API key is configured, and in tests. It never writes anything that is not in the
sources (apart from fixed connecting phrases and the question's own words), so it cannot
hallucinate; it can only select badly. How it selects:

* Candidates are the prose sentences of the context. Table rows, code blocks, headings, list
  stubs and the cut-off ends of a chunk (chunks overlap, so one may start mid-sentence) are never
  quoted; a sentence split inside inline code is joined back, so a command stays whole.
* Each candidate is scored by meaning and by words: the cosine between its embedding and the
  question's (when the provider has an embedder), plus the share of the question's terms it
  contains (``app.text.terms``), each term weighted by how rare it is across the context, so a
  sentence matching "rotation" beats one matching the ubiquitous "key". Better-ranked sources get
  a small bonus.
* The answer leads with the single best sentence; a few more follow only when they score nearly
  as well, within a word budget. When even the best scores below a floor, the answer says the
  knowledge base does not say what was asked, and names what the closest sources are about.

Output is deterministic: the same prompt (and embedder) gives the same answer.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import PurePath
from typing import Protocol

import numpy as np

from app.generation.base import ModelProvider, TextDelta, Usage
from app.prompting import Prompt
from app.records import ScoredChunk
from app.settings import GenerationSettings
from app.text.sentences import split_sentences
from app.text.terms import terms
from app.text.tokens import ClaudeTokenEstimate

__all__ = ["ExtractiveProvider", "SentenceEmbedder", "not_said"]

_WORDS_PER_DELTA = 3
_MIN_WORDS = 5
"""Shorter sentences (headings, list stubs, captions) say too little to be quoted as an answer."""
_MIN_WORDS_UNFINISHED = 9
"""A sentence without closing punctuation must be this long to count as prose, not a label."""
_RANK_PRIOR = 0.06
"""Bonus for the best-ranked source, decreasing linearly: a tie-breaker, never an override."""
_EMBEDDED_AT_MOST = 24
"""Sentences per answer read by meaning (embedded with the question): the cost of an answer is
about linear in it."""
_SEMANTIC_WEIGHT = 0.55
_LEXICAL_WEIGHT = 0.45
_ANSWER_FLOOR = 0.35
"""Below this combined score the best sentence does not answer the question (measured on the docs QA
set and the off-topic questions of the regression test; see docs/answers.md)."""
_LEXICAL_ONLY_FLOOR = 0.2
"""The floor when there is no embedder: term coverage alone."""
_FOLLOW_MARGIN = 0.3
"""A further sentence is quoted only when it scores within this much of the best one."""
_NEIGHBOUR_MARGIN = 1.0
"""The margin for the sentences right before and after the best one in its passage: as wide as
the scores go, so they always come next (docs-qa and pg-essays-qa found the most answers so)."""
_WORD_BUDGET = 60
"""Further sentences stop once the answer holds this many words (the best one is always whole)."""
_TITLES_SHOWN = 3

# Markdown decoration at the start of a line: list bullets, numbers, heading marks, quotes.
_LEADING_MARKUP_RE = re.compile(r"^\s*(?:[-*+•>]|\d+[.)]|#{1,6})\s+")
_TABLE_RE = re.compile(r"(?:^|\n)\s*\||\s\|\s|\|\s*:?-{3,}")
_FENCE_RE = re.compile(r"^\s*(```|~~~).*?(?:^\s*\1[^\n]*$|\Z)", re.MULTILINE | re.DOTALL)
_INDENTED_CODE_RE = re.compile(r"(?:^|\n)(?:\n|^)((?:(?: {4}|\t)[^\n]*(?:\n|$))+)")
_TERMINAL_RE = re.compile(r"""[.!?…]["'”’)\]]*$""")
_BULLET_RE = re.compile(r"^\s*(?:[-*+•]|\d+[.)])\s+")
_LOWER_START_RE = re.compile(r"^[a-z]")
_CONTINUATION_RE = re.compile(r"^[,;:)\]}.]")
_LABEL_WORDS = 6
_MIN_ITEM_WORDS = 2
_LIST_WORDS = 70
"""A list of unlabelled items is quoted whole only when its items fit in this many words."""
_LIST_ITEMS = 3

_NO_KB = {
    "timeout": "The knowledge base could not be searched (timeout), so I can't answer from it. "
    "Please try again in a moment.",
    "error": "The knowledge base could not be searched (unavailable), so I can't answer from it.",
    "empty": "I found nothing relevant to your question in the knowledge base, so I can't answer "
    "it from there.",
}


class SentenceEmbedder(Protocol):
    """What the answerer needs of an embedding model: unit-length vectors for texts."""

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Vectors of shape ``(len(texts), dimension)``, unit length."""
        ...


@dataclass(frozen=True, slots=True)
class _Candidate:
    source: int
    """1-based source number (the citation)."""
    position: int
    text: str
    terms: frozenset[str]
    item: int | None = None
    """The list this sentence opens an item of (per source), or None outside lists."""
    label: str = ""
    """The item's lead before its colon ("PDF (.pdf)"), when it has a short one."""


class ExtractiveProvider(ModelProvider):
    """Answers by quoting the best-answering sentences of the context, with citations."""

    name = "extractive"

    def __init__(self, settings: GenerationSettings, *, embedder: SentenceEmbedder | None = None) -> None:
        self.model = "extractive-v1"
        self.sentences = settings.extractive_sentences
        self._embedder = embedder
        self._counter = ClaudeTokenEstimate()

    async def stream(self, prompt: Prompt) -> AsyncIterator[TextDelta | Usage]:
        # Embedding the candidates is CPU work: keep it off the event loop.
        answer = await asyncio.to_thread(self.answer, prompt)
        for piece in _pieces(answer, _WORDS_PER_DELTA):
            yield TextDelta(piece)
            # Yield to the loop between pieces so a disconnect can cancel the stream promptly.
            await asyncio.sleep(0)
        input_tokens = self._counter.count(prompt.system) + sum(
            self._counter.count(m.content) for m in prompt.messages
        )
        yield Usage(input_tokens=input_tokens, output_tokens=self._counter.count(answer))

    def answer(self, prompt: Prompt) -> str:
        """The whole answer text (what ``stream`` sends, in pieces)."""
        status = prompt.retrieval_status
        if status != "ok" or not prompt.context:
            return _NO_KB.get(status, _NO_KB["empty"])
        candidates = candidate_sentences(prompt.context)
        scored = self._score(prompt.question, candidates, len(prompt.context))
        floor = _ANSWER_FLOOR if self._embedder is not None else _LEXICAL_ONLY_FLOOR
        if not scored or scored[0][0] < floor:
            return _not_covered(prompt.question, prompt.context)
        listed = _listed(scored, candidates)
        if listed:
            return _compose([scored[0][1]], listed)
        return _compose(_follow_ups(scored, candidates, self.sentences))

    def _score(
        self, question: str, candidates: Sequence[_Candidate], sources: int
    ) -> list[tuple[float, _Candidate]]:
        """Candidates with their combined score, best first (ties: better source, earlier sentence)."""
        if not candidates:
            return []
        lexical = _term_coverage(question, candidates)
        prior = [_RANK_PRIOR * (sources - c.source + 1) / sources for c in candidates]
        if self._embedder is not None:
            # Embedding is the cost of an answer: only the sentences best by words and source
            # rank are read by meaning; the rest keep their word score, which cannot win.
            by_words = sorted(range(len(candidates)), key=lambda i: (-(lexical[i] + prior[i]), i))
            shortlist = sorted(by_words[:_EMBEDDED_AT_MOST])
            vectors = self._embedder.embed([question, *(candidates[i].text for i in shortlist)])
            semantic = [0.0] * len(candidates)
            for i, cosine in zip(
                shortlist, np.clip(vectors[1:] @ vectors[0], 0.0, 1.0).tolist(), strict=True
            ):
                semantic[i] = cosine
            mix = [_SEMANTIC_WEIGHT * s + _LEXICAL_WEIGHT * t for s, t in zip(semantic, lexical, strict=True)]
        else:
            mix = lexical
        scored = [(round(m + p, 6), c) for m, p, c in zip(mix, prior, candidates, strict=True)]
        scored.sort(key=lambda item: (-item[0], item[1].source, item[1].position))
        return scored


def candidate_sentences(context: Sequence[ScoredChunk]) -> list[_Candidate]:
    """The quotable sentences of the context, in source order, each text once."""
    out: list[_Candidate] = []
    seen: set[str] = set()
    for number, chunk in enumerate(context, start=1):
        # A sentence under "Supported formats" is about formats without saying the word.
        heading = (
            frozenset(terms(chunk.record.heading_path[-1])) if chunk.record.heading_path else frozenset()
        )
        for position, (sentence, item, label) in enumerate(_prose_sentences(chunk.record.text)):
            if sentence in seen:  # the same sentence from overlapping chunks
                continue
            seen.add(sentence)
            out.append(
                _Candidate(number, position, sentence, frozenset(terms(sentence)) | heading, item, label)
            )
    return out


def _prose_sentences(text: str) -> list[tuple[str, int | None, str]]:
    """The sentences of one chunk worth quoting, one line each, with the list item each opens.

    Returns (sentence, list number or None, item label) in order.
    """
    text = _FENCE_RE.sub("\n\n", text)
    text = _INDENTED_CODE_RE.sub("\n\n", text)
    units: list[tuple[str, int | None, bool]] = []  # (raw sentence, list number, opens an item)
    lists = 0
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


def _term_coverage(question: str, candidates: Sequence[_Candidate]) -> list[float]:
    """Per candidate, the rarity-weighted share (0..1) of the question's terms it contains."""
    wanted = set(terms(question))
    if not wanted:
        return [0.0] * len(candidates)
    sources = {c.source for c in candidates}
    n = len(sources)
    # Inverse document frequency over the context's sources; a term found nowhere still counts
    # in the denominator: a sentence cannot cover what the context never mentions.
    df = {t: len({c.source for c in candidates if t in c.terms}) for t in wanted}
    idf = {t: math.log(1.0 + n / max(df[t], 0.5)) for t in wanted}
    total = sum(idf.values())
    return [sum(idf[t] for t in wanted & c.terms) / total for c in candidates]


def _follow_ups(
    scored: list[tuple[float, _Candidate]], candidates: Sequence[_Candidate], limit: int
) -> list[_Candidate]:
    """The best sentence, its neighbours in prose, then those nearly as good while the word
    budget lasts.

    The sentence before or after the best one in its passage often finishes its thought ("The
    embedded store can be opened by one process at a time." "If kb serve is running ..., kb
    ingest stops at once."), so each is offered before the rest when it scores within
    ``_NEIGHBOUR_MARGIN`` of the best, a wider margin than other sentences get. A sentence ending with a colon introduces something that is not quoted
    (a list, a table, code), so it follows only as a neighbour ("Install the package into a
    virtual environment:" before its code block still says what to do).
    """
    best_score, best = scored[0]
    by_place = {(c.source, c.position): c for c in candidates}
    score_of = {id(c): score for score, c in scored}
    neighbours = {
        id(c)
        for c in (by_place.get((best.source, best.position + step)) for step in (-1, 1))
        if c is not None and c.item is None and score_of[id(c)] >= best_score - _NEIGHBOUR_MARGIN
    }
    # Stable: the neighbours first, each group keeping its order by score.
    ordered = sorted(scored[1:], key=lambda item: id(item[1]) not in neighbours)
    picked = [best]
    words = len(best.text.split())
    for score, candidate in ordered:
        if len(picked) == limit:
            break
        if id(candidate) not in neighbours and score < best_score - _FOLLOW_MARGIN:
            break
        if candidate.text.endswith(":") and id(candidate) not in neighbours:
            continue
        length = len(candidate.text.split())
        if words + length > _WORD_BUDGET:
            continue
        picked.append(candidate)
        words += length
    return picked


def _listed(scored: list[tuple[float, _Candidate]], candidates: Sequence[_Candidate]) -> list[str]:
    """The items of a list that answers the question, as lines to quote; [] when none does.

    A question such as "which formats ..." is answered by a whole list, not by its best item: when
    the best sentence introduces a list of a few items ("The loaders read:"), the answer quotes
    every item, or only their labels ("PDF (.pdf)") when the items are long; so it does when the
    best sentence is an item of a list whose items all have labels (an enumeration of kinds). A list item that only comes near the best sentence
    is quoted as a sentence: quoting its whole list whenever an item came near the
    best sentence measured worse (docs-qa: 0.76 against 0.81 of answers found in a good context).
    """
    _, lead = scored[0]
    # A lead that ends with a colon introduces the list right after it: that list is its answer.
    following = (
        c
        for c in candidates
        if c.source == lead.source and c.position == lead.position + 1 and c.item is not None
    )
    anchor = next(following, None) if lead.text.endswith(":") else None
    introduced = anchor is not None
    anchor = anchor or (lead if lead.item is not None else None)
    if anchor is None:
        return []
    items = [c for c in candidates if c.source == anchor.source and c.item == anchor.item]
    if len(items) < _LIST_ITEMS or not (introduced or all(c.label for c in items)):
        return []
    rest = [c for c in items if c is not lead]
    # Labels such as "PDF (.pdf)" name the items; one-word ones ("ok", "error") need their text.
    if all(c.label for c in items) and any(len(c.label.split()) > 1 for c in items):
        return [f"- {c.label} [{c.source}]" for c in rest]
    if sum(len(c.text.split()) for c in items) <= _LIST_WORDS:
        return [f"- {c.text} [{c.source}]" for c in rest]
    return []


def _compose(picked: Sequence[_Candidate], listed: Sequence[str] = ()) -> str:
    """The best sentence on its own line, then the others (or a list's items), with citations."""
    first, *rest = picked
    lines = [f"{first.text} [{first.source}]"]
    more = [f"- {c.text} [{c.source}]" for c in rest] + list(listed)
    if more:
        lines += ["", *more]
    return "\n".join(lines)


def _not_covered(question: str, context: Sequence[ScoredChunk]) -> str:
    topics: list[str] = []
    seen: set[str] = set()
    for number, chunk in enumerate(context, start=1):
        record = chunk.record
        title = record.title.strip() or PurePath(record.source).name or record.source
        path = [title, *(h for h in record.heading_path if h.strip() and h.strip() != title)]
        topic = " > ".join(path[:1] + path[-1:]) if len(path) > 1 else title
        if topic in seen:
            continue
        seen.add(topic)
        topics.append(f"{topic} [{number}]")
        if len(topics) == _TITLES_SHOWN:
            break
    return f"{not_said(question)} The closest sources are about: " + "; ".join(topics) + "."


_PRONOUNS = {"i": "you", "me": "you", "my": "your", "mine": "yours", "we": "you", "our": "your", "us": "you"}
_HOW_TO_RE = re.compile(
    r"^(how|where|when|why)\s+(?:do|can|should|could|would|must)\s+(?:i|we)\s+(.+)$", re.I
)
_WH_BE_RE = re.compile(r"^(what|who|where|when|which|why|how)\s+(is|are|was|were)\s+(.+)$", re.I)
_WH_RE = re.compile(r"^(what|who|where|when|which|why|how)\b\s*(.*)$", re.I)
_YES_NO_RE = re.compile(
    r"^(is|are|was|were|does|do|did|can|could|will|would|should|has|have)\s+(\S+)\s*(.*)$", re.I
)
_DROPPED_AUXILIARIES = frozenset({"does", "do", "did"})


def not_said(question: str) -> str:
    """ "The knowledge base does not say …", finishing with what ``question`` asked, in its words."""
    asked = " ".join(question.strip().rstrip("?!. ").split())
    if not asked:
        return "The knowledge base does not say."
    if match := _HOW_TO_RE.match(asked):
        clause = f"{match.group(1).lower()} to {match.group(2)}"
    elif match := _WH_BE_RE.match(asked):
        clause = f"{match.group(1).lower()} {match.group(3)} {match.group(2).lower()}"
    elif match := _WH_RE.match(asked):
        clause = f"{match.group(1).lower()} {match.group(2)}".rstrip()
    elif match := _YES_NO_RE.match(asked):
        auxiliary, subject, rest = match.group(1).lower(), match.group(2), match.group(3)
        verb = "" if auxiliary in _DROPPED_AUXILIARIES else f" {auxiliary}"
        clause = f"whether {subject}{verb} {rest}".rstrip()
    else:
        clause = f"anything about {asked[0].lower()}{asked[1:]}"
    words = [_PRONOUNS.get(word.lower(), word) for word in clause.split()]
    return f"The knowledge base does not say {' '.join(words)}."


def _pieces(text: str, words: int) -> list[str]:
    """``text`` cut into pieces of a few words each; joined, they give back ``text`` exactly."""
    tokens = re.findall(r"\s*\S+", text) or [text]
    tail = text[sum(len(t) for t in tokens) :]  # trailing whitespace, if any
    pieces = ["".join(tokens[i : i + words]) for i in range(0, len(tokens), words)]
    pieces[-1] += tail
    return pieces
