"""The offline answerer: quotes the context sentences that best answer the question.

Used when no API key is configured, and in tests. It never writes anything that is not in the
sources (apart from fixed connecting phrases and the question's own words), so it cannot
hallucinate; it can only select badly. How it selects:

* Candidates are the prose sentences of the context and its table rows, each row as one
  labelled line (``app.generation.extractive_text``). Tables as tables, code, headings, list
  stubs and the cut-off ends of a chunk are never quoted; a command stays whole.
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
import contextvars
import functools
import math
import re
from collections.abc import AsyncIterator, Sequence
from pathlib import PurePath
from typing import Protocol

import numpy as np

from app.generation.base import ModelProvider, TextDelta, Usage
from app.generation.extractive_text import Candidate, candidate_sentences, list_units
from app.prompting import Prompt
from app.records import ScoredChunk
from app.settings import GenerationSettings
from app.text.terms import terms
from app.text.tokens import ClaudeTokenEstimate

__all__ = ["ExtractiveProvider", "SentenceEmbedder", "not_said"]

_WORDS_PER_DELTA = 3
_RANK_PRIOR = 0.06
"""Bonus for the best-ranked source, decreasing linearly: a tie-breaker, never an override."""
_EMBEDDED_AT_MOST = 24
"""Sentences per answer read by meaning (embedded with the question): the cost of an answer is
about linear in it."""
_SEMANTIC_WEIGHT = 0.55
_LEXICAL_WEIGHT = 0.45
_ANSWER_FLOOR = 0.40
"""Below this combined score the best sentence does not answer the question: chosen on docs-qa,
pg-essays-qa and the ten questions of tests/integration/test_ten_questions.py (docs/evaluation.md,
"The offline answerer")."""
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
_ROWS_AT_MOST = 2
"""Table rows in one answer: a row is a fact; several are a table."""

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


class ExtractiveProvider(ModelProvider):
    """Answers by quoting the best-answering sentences of the context, with citations."""

    name = "extractive"

    def __init__(self, settings: GenerationSettings, *, embedder: SentenceEmbedder | None = None) -> None:
        self.model = "extractive-v1"
        self.sentences = settings.extractive_sentences
        self._embedder = embedder
        self._counter = ClaudeTokenEstimate()
        # One answer at a time: answering is CPU work, so several at once finish no sooner on a
        # few cores, and their threads would take the interpreter from the retrievals of the
        # requests behind them, which have a deadline.
        self._one_at_a_time = asyncio.Semaphore(1)

    async def stream(self, prompt: Prompt) -> AsyncIterator[TextDelta | Usage]:
        # Embedding the candidates is CPU work: keep it off the event loop.
        answer = await self._answer_in_turn(prompt)
        for piece in _pieces(answer, _WORDS_PER_DELTA):
            yield TextDelta(piece)
            # Yield to the loop between pieces so a disconnect can cancel the stream promptly.
            await asyncio.sleep(0)
        input_tokens = self._counter.count(prompt.system) + sum(
            self._counter.count(m.content) for m in prompt.messages
        )
        yield Usage(input_tokens=input_tokens, output_tokens=self._counter.count(answer))

    async def _answer_in_turn(self, prompt: Prompt) -> str:
        """``answer(prompt)`` on a worker thread, once the answer before it has finished.

        The turn is handed on when the thread ends, not when the caller stops waiting: a
        request cancelled mid-answer (its client left) cannot stop the thread, and handing the
        turn on at once would let every abandoned answer keep computing beside the next ones,
        on the model the questions behind them wait for."""
        await self._one_at_a_time.acquire()
        try:
            # As ``asyncio.to_thread``: the thread sees this request's context (its log fields).
            call = functools.partial(contextvars.copy_context().run, self.answer, prompt)
            work = asyncio.get_running_loop().run_in_executor(None, call)
        except BaseException:
            self._one_at_a_time.release()
            raise
        work.add_done_callback(self._hand_on)
        return await asyncio.shield(work)

    def _hand_on(self, work: asyncio.Future[str]) -> None:
        self._one_at_a_time.release()
        if not work.cancelled():
            work.exception()  # retrieved: an abandoned answer's failure is nobody's to report

    def answer(self, prompt: Prompt) -> str:
        """The whole answer text (what ``stream`` sends, in pieces)."""
        status = prompt.retrieval_status
        if status != "ok" or not prompt.context:
            return _NO_KB.get(status, _NO_KB["empty"])
        candidates = candidate_sentences(prompt.context)
        units = list_units(candidates, prompt.context)
        scored = self._score(prompt.question, [*candidates, *units], len(prompt.context))
        floor = _ANSWER_FLOOR if self._embedder is not None else _LEXICAL_ONLY_FLOOR
        if not scored or scored[0][0] < floor:
            return _not_covered(prompt.question, prompt.context)
        best = scored[0][1]
        if best.unit:
            # The list as a whole answers best: its first item leads, the others follow.
            items = [c for c in candidates if c.source == best.source and c.item == best.item]
            return _compose(items[:1], _list_lines(items[0], items))
        scored = [entry for entry in scored if not entry[1].unit]
        listed = _listed(scored, candidates)
        if listed:
            return _compose([scored[0][1]], listed)
        return _compose(_follow_ups(scored, candidates, self.sentences))

    def _score(
        self, question: str, candidates: Sequence[Candidate], sources: int
    ) -> list[tuple[float, Candidate]]:
        """Candidates with their combined score, best first (ties: better source, earlier sentence)."""
        if not candidates:
            return []
        lexical = _term_coverage(question, candidates)
        prior = [_RANK_PRIOR * (sources - c.source + 1) / sources for c in candidates]
        if self._embedder is not None:
            # Embedding is the cost of an answer: only the sentences best by words and source
            # rank are read by meaning; the rest keep their word score, which cannot win.
            by_words = sorted(range(len(candidates)), key=lambda i: (-(lexical[i] + prior[i]), i))
            # Lists read as a whole are few and always read by meaning: their words are spread
            # over items, so words alone undersell them.
            units = {i for i, c in enumerate(candidates) if c.unit}
            shortlist = sorted(set(by_words[:_EMBEDDED_AT_MOST]) | units)
            # A list is about what its heading says ("Supported formats") more than its labels.
            headed = [i for i in shortlist if candidates[i].unit and candidates[i].label]
            texts = [candidates[i].text for i in shortlist] + [candidates[i].label for i in headed]
            vectors = self._embedder.embed([question, *texts])
            cosines = np.clip(vectors[1:] @ vectors[0], 0.0, 1.0).tolist()
            semantic = [0.0] * len(candidates)
            for i, cosine in zip([*shortlist, *headed], cosines, strict=True):
                semantic[i] = max(semantic[i], cosine)
            mix = [_SEMANTIC_WEIGHT * s + _LEXICAL_WEIGHT * t for s, t in zip(semantic, lexical, strict=True)]
        else:
            mix = lexical
        scored = [(round(m + p, 6), c) for m, p, c in zip(mix, prior, candidates, strict=True)]
        scored.sort(key=lambda item: (-item[0], item[1].source, item[1].position))
        return scored


def _term_coverage(question: str, candidates: Sequence[Candidate]) -> list[float]:
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
    scored: list[tuple[float, Candidate]], candidates: Sequence[Candidate], limit: int
) -> list[Candidate]:
    """The best sentence, its neighbours in prose, then those nearly as good while the word
    budget lasts.

    The sentence before or after the best one in its passage often finishes its thought ("The
    embedded store can be opened by one process at a time." "If kb serve is running ..., kb
    ingest stops at once."), so each is offered before the rest when it scores within
    ``_NEIGHBOUR_MARGIN`` of the best, a wider margin than other sentences get (table rows are
    nobody's neighbours: the next row is another fact). A sentence ending with a colon introduces
    something that is not quoted (a list, a table, code), so it follows only as a neighbour
    ("Install the package into a virtual environment:" before its code block still says what to
    do).
    """
    best_score, best = scored[0]
    by_place = {(c.source, c.position): c for c in candidates}
    score_of = {id(c): score for score, c in scored}
    neighbours = {
        id(c)
        for c in (by_place.get((best.source, best.position + step)) for step in (-1, 1))
        if c is not None
        and c.item is None
        and not c.row
        and not best.row
        and score_of[id(c)] >= best_score - _NEIGHBOUR_MARGIN
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
        if candidate.row and sum(c.row for c in picked) >= _ROWS_AT_MOST:
            continue  # a few facts from tables, never a table pasted as lines
        picked.append(candidate)
        words += length
    return picked


def _listed(scored: list[tuple[float, Candidate]], candidates: Sequence[Candidate]) -> list[str]:
    """The items of a list that answers the question, as lines to quote; [] when none does.

    A question such as "which formats ..." is answered by a whole list, not by its best item: when
    the best sentence introduces a list of a few items ("The loaders read:"), the answer quotes
    every item whole when they fit the word budget, else only their labels ("PDF (.pdf)"); so it
    does when the best sentence is an item of a list whose items all have labels (an enumeration
    of kinds). A list item that only comes near the best sentence is quoted as a sentence:
    quoting its whole list whenever an item came near the best sentence measured worse on
    docs-qa (docs/evaluation.md, "The offline answerer").
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
    return _list_lines(lead, items)


def _list_lines(lead: Candidate, items: Sequence[Candidate]) -> list[str]:
    """The items of a list other than ``lead``, whole when they fit the word budget, else by
    their labels; [] when neither reads well."""
    rest = [c for c in items if c is not lead]
    if sum(len(c.text.split()) for c in [lead, *rest]) <= _WORD_BUDGET:
        return [f"- {c.text} [{c.source}]" for c in rest]
    # Too long to quote whole: labels such as "PDF (.pdf)" still name the items; one-word ones
    # ("ok", "error") say nothing without their text.
    if all(c.label for c in items) and any(len(c.label.split()) > 1 for c in items):
        return [f"- {c.label} [{c.source}]" for c in rest]
    return []


def _compose(picked: Sequence[Candidate], listed: Sequence[str] = ()) -> str:
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
