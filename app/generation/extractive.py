"""The offline answerer: quotes the context sentences that best match the question.

Used when no API key is configured, and in tests. It never writes anything that is not in the
sources (apart from fixed connecting phrases), so it cannot hallucinate; it can only select
badly. Sentences are scored by the question terms they contain (``app.text.terms``: stemmed,
stop words removed), each term weighted by how rare it is across the context, so a sentence
matching "rotation" beats one matching the ubiquitous "key". Output is deterministic.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import AsyncIterator, Sequence
from pathlib import PurePath

from app.generation.base import ModelProvider, TextDelta, Usage
from app.prompting import Prompt
from app.records import ScoredChunk
from app.settings import GenerationSettings
from app.text.sentences import split_sentences
from app.text.terms import terms
from app.text.tokens import ClaudeTokenEstimate

__all__ = ["ExtractiveProvider"]

_WORDS_PER_DELTA = 3
_MIN_WORDS = 4
"""Shorter sentences (headings, list stubs) say too little to be quoted as an answer."""
_RANK_PRIOR = 0.1
"""Bonus for the best-ranked source, decreasing linearly: a tie-breaker, never an override."""
_TITLES_SHOWN = 3
# Markdown decoration at the start of a line: list bullets, numbers, heading marks, quotes.
_LEADING_MARKUP_RE = re.compile(r"^\s*(?:[-*+•>]|\d+[.)]|#{1,6})\s+")

_NO_KB = {
    "timeout": "The knowledge base could not be searched (timeout), so I can't answer from it. "
    "Please try again in a moment.",
    "error": "The knowledge base could not be searched (unavailable), so I can't answer from it.",
    "empty": "I found nothing relevant to your question in the knowledge base, so I can't answer "
    "it from there.",
}


class ExtractiveProvider(ModelProvider):
    """Answers by quoting the best-matching sentences of the context, with citations."""

    name = "extractive"

    def __init__(self, settings: GenerationSettings) -> None:
        self.model = "extractive-v1"
        self.sentences = settings.extractive_sentences
        self._counter = ClaudeTokenEstimate()

    async def stream(self, prompt: Prompt) -> AsyncIterator[TextDelta | Usage]:
        answer = self.answer(prompt)
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
        picked = _pick_sentences(prompt.question, prompt.context, self.sentences)
        if not picked:
            return _no_direct_answer(prompt.context)
        lines = ["Here is what the knowledge base says (quoted from the sources):", ""]
        for source in sorted(picked):
            quoted = " ".join(f"{sentence} [{source}]" for _, sentence in sorted(picked[source]))
            lines.append(f"- {quoted}")
        return "\n".join(lines)


def _pick_sentences(
    question: str, context: Sequence[ScoredChunk], limit: int
) -> dict[int, list[tuple[int, str]]]:
    """Best sentences with a positive match, as {source number: [(position, sentence)]}."""
    wanted = set(terms(question))
    if not wanted:
        return {}
    per_chunk = [[(s, set(terms(s))) for s in map(_clean, split_sentences(c.record.text))] for c in context]
    # Inverse document frequency over the context's chunks; +1 keeps a term found everywhere
    # worth something.
    n = len(context)
    df = {t: sum(1 for chunk in per_chunk if any(t in found for _, found in chunk)) for t in wanted}
    idf = {t: math.log(1.0 + n / df[t]) for t in wanted if df[t]}

    scored: list[tuple[float, int, int, str]] = []
    for rank, sentences in enumerate(per_chunk):
        prior = _RANK_PRIOR * (n - rank) / n
        for position, (sentence, found) in enumerate(sentences):
            overlap = wanted & found
            if overlap and len(sentence.split()) >= _MIN_WORDS:
                scored.append((sum(idf[t] for t in overlap) + prior, rank, position, sentence))
    # Best score first; ties go to the better-ranked source, then the earlier sentence.
    scored.sort(key=lambda s: (-s[0], s[1], s[2]))
    picked: dict[int, list[tuple[int, str]]] = {}
    seen: set[str] = set()
    for _, rank, position, sentence in scored:
        if len(seen) == limit:
            break
        if sentence in seen:  # the same sentence from overlapping chunks
            continue
        seen.add(sentence)
        picked.setdefault(rank + 1, []).append((position, sentence))
    return picked


def _clean(sentence: str) -> str:
    """One line of prose: markdown bullets/heading marks removed, whitespace collapsed."""
    return " ".join(_LEADING_MARKUP_RE.sub("", sentence).split())


def _no_direct_answer(context: Sequence[ScoredChunk]) -> str:
    shown: list[str] = []
    titles: set[str] = set()
    for number, chunk in enumerate(context, start=1):
        record = chunk.record
        title = record.title.strip() or PurePath(record.source).name or record.source
        if title in titles:
            continue
        titles.add(title)
        shown.append(f"{title} [{number}]")
        if len(shown) == _TITLES_SHOWN:
            break
    return (
        "The sources I found don't seem to answer this directly. The closest matches are: "
        + "; ".join(shown)
        + "."
    )


def _pieces(text: str, words: int) -> list[str]:
    """``text`` cut into pieces of a few words each; joined, they give back ``text`` exactly."""
    tokens = re.findall(r"\s*\S+", text) or [text]
    tail = text[sum(len(t) for t in tokens) :]  # trailing whitespace, if any
    pieces = ["".join(tokens[i : i + words]) for i in range(0, len(tokens), words)]
    pieces[-1] += tail
    return pieces
