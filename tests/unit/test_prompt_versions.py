"""Every version in prompts/ renders, for every retrieval status, within the token budget.

Parametrised over the folder: a new version file is tested the moment it exists. The budget is
the one the service runs with: the documents block within ``ranking.context_tokens`` (what
``AskPipeline.select_context`` fits), the question within ``ranking.question_max_tokens``, and
the version's own text (system, template, status wording) within ``TEMPLATE_TOKENS``.
"""

from __future__ import annotations

import re

import pytest

from app.prompting import PromptRegistry, build_condense_prompt, build_prompt, document_overhead
from app.ranking import fit_to_budget
from app.records import RetrievalStatus, ScoredChunk
from app.resources import prompts_dir
from app.settings import Settings
from app.text.tokens import ClaudeTokenEstimate
from tests.factories import chunk_record

pytestmark = pytest.mark.unit

REGISTRY = PromptRegistry(prompts_dir(environ={}))
ANSWER_VERSIONS = REGISTRY.versions("answer")
CONDENSE_VERSIONS = REGISTRY.versions("condense")
STATUSES: tuple[RetrievalStatus, ...] = ("ok", "empty", "timeout", "error")
SETTINGS = Settings()
COUNT = ClaudeTokenEstimate().count

TEMPLATE_TOKENS = 1200
"""What a version's own words may cost per request: the system prompt, the user template and the
longest status wording. A prompt that grows past it eats into the documents' share."""

LEFTOVER_RE = re.compile(
    r"\{(?:status_block|documents|question|count|index|title|source|heading|page|text)\}"
)


def longest_question() -> str:
    words: list[str] = []
    while COUNT(" ".join([*words, "rotation"])) <= SETTINGS.ranking.question_max_tokens:
        words.append("rotation")
    return " ".join(words) + "?"


def candidates() -> list[ScoredChunk]:
    """Far more text than fits, with titles, headings and tag-like text."""
    chunks = []
    for n in range(1, 25):
        record = chunk_record(
            f"c{n}",
            text=f"Keys are rotated every {n} days by the platform team. </document> " * 12,
            title=f"Security runbook part {n}",
            source=f"/kb/security/runbook-{n}.md",
            heading_path=("Operations", "Keys", f"Rotation {n}"),
        )
        chunks.append(ScoredChunk(record=record, score=1.0 - n / 100))
    return chunks


def test_the_folder_has_versions_to_test() -> None:
    assert ANSWER_VERSIONS and CONDENSE_VERSIONS


@pytest.mark.parametrize("version", ANSWER_VERSIONS)
@pytest.mark.parametrize("status", STATUSES)
def test_an_answer_version_renders_every_status_within_the_token_budget(
    version: str, status: RetrievalStatus
) -> None:
    template = REGISTRY.answer(version)
    question = longest_question()
    context: list[ScoredChunk] = []
    if status == "ok":
        pool = candidates()
        overhead = document_overhead(template, pool, COUNT)
        context = fit_to_budget(pool, SETTINGS.ranking.context_tokens, COUNT, per_chunk_overhead=overhead)
        assert 1 < len(context) < len(pool)  # the budget, not the pool, decided

    prompt = build_prompt(template, question=question, status=status, context=context)
    text = prompt.messages[0].content

    assert prompt.retrieval_status == status and prompt.version == version
    assert not LEFTOVER_RE.search(text), "a placeholder was left unfilled"
    assert text.endswith(question)
    documents = re.search(r"<documents>.*</documents>", text, flags=re.DOTALL)
    if status == "ok":
        assert documents is not None
        # A neutralised tag costs about one token more than the text it replaced (``document_overhead``).
        assert COUNT(documents.group()) <= SETTINGS.ranking.context_tokens + text.count("&lt;")
        assert re.findall(r'<document index="(\d+)"', text) == [str(n) for n in range(1, len(context) + 1)]
        assert str(len(context)) in text.split("<documents>")[0]  # the status says how many
    else:
        assert documents is None and "<document" not in text
    assert status.upper() in text  # the status is stated in plain words
    total = COUNT(prompt.system) + COUNT(text)
    budget = SETTINGS.ranking.context_tokens + SETTINGS.ranking.question_max_tokens + TEMPLATE_TOKENS
    assert total <= budget


@pytest.mark.parametrize("version", ANSWER_VERSIONS)
def test_an_answer_version_own_text_fits_its_share(version: str) -> None:
    template = REGISTRY.answer(version)
    wordings = [getattr(template.status, status) for status in STATUSES]
    own = COUNT(template.system) + COUNT(template.user) + max(COUNT(w) for w in wordings)
    assert own <= TEMPLATE_TOKENS


@pytest.mark.parametrize("version", CONDENSE_VERSIONS)
def test_a_condense_version_renders_a_full_conversation_within_its_budget(version: str) -> None:
    class Turn:
        def __init__(self, n: int) -> None:
            self.question = longest_question()
            self.answer = f"Answer {n}: " + "keys rotate monthly [1]. " * 100

    turns = [Turn(n) for n in range(SETTINGS.answers.conversation_turns)]
    template = REGISTRY.condense(version)
    prompt = build_condense_prompt(template, history=turns, question="and for contractors?", answer_chars=600)
    text = prompt.messages[0].content

    assert not re.search(r"\{(?:history|question|answer)\}", text)
    assert text.count("Answer 0:") == 1 and text.count("Answer 5:") == 1
    assert "and for contractors?" in text
    per_turn = SETTINGS.ranking.question_max_tokens + COUNT("x" * 600) + COUNT(template.turn)
    assert COUNT(prompt.system) + COUNT(text) <= TEMPLATE_TOKENS + len(turns) * per_turn
