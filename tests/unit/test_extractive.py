"""The offline extractive answerer: grounded quotes with citations, honest when it can't answer."""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence
from typing import ClassVar

import numpy as np
import pytest

from app.generation.base import ModelProvider, TextDelta, Usage
from app.generation.extractive import ExtractiveProvider, not_said
from app.generation.extractive_text import looks_like_code
from app.postprocess import extract_citations
from app.prompting import Message, Prompt
from app.records import RetrievalStatus, ScoredChunk
from app.settings import GenerationSettings
from app.text.tokens import ClaudeTokenEstimate
from tests.factories import chunk_record

pytestmark = pytest.mark.unit


def chunk(n: int, title: str, text: str, heading_path: tuple[str, ...] = ()) -> ScoredChunk:
    record = chunk_record(
        f"p{n}",
        text=text,
        title=title,
        source=f"/kb/{title.lower().replace(' ', '-')}.md",
        heading_path=heading_path,
    )
    return ScoredChunk(record=record, score=1.0 - n / 10)


class ConceptEmbedder:
    """A deterministic stand-in for the embedding model: words mean their concept.

    Each word maps to a concept (synonyms share one), the concepts are hashed into a small
    vector, and the vector is normalised: texts sharing concepts are close, whatever their words.
    """

    CONCEPTS: ClassVar[dict[str, str]] = {
        "holiday": "vacation",
        "holidays": "vacation",
        "leave": "vacation",
        "vacation": "vacation",
        "days": "days",
        "day": "days",
        "annual": "yearly",
        "yearly": "yearly",
        "year": "yearly",
    }

    def __init__(self) -> None:
        self.calls: list[int] = []

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append(len(texts))
        vectors = np.zeros((len(texts), 64), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in re.findall(r"[a-z0-9]+", text.lower()):
                vectors[row, zlib.crc32(self.CONCEPTS.get(word, word).encode()) % 64] += 1.0
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.where(norms == 0, 1.0, norms)


VPN = chunk(
    1,
    "VPN guide",
    "## Connecting\nInstall the VPN client from the software portal. "
    "The VPN requires two-factor authentication at every login.",
)
PASSWORDS = chunk(
    2,
    "Password policy",
    "Passwords expire every 90 days. To reset a forgotten password, open the self-service portal "
    "and choose Reset password. Contact the service desk if your account is locked.",
)
EXPENSES = chunk(
    3,
    "Expenses",
    "Submit expense claims within 30 days of purchase. Claims above 500 euros need a manager's "
    "approval. Receipts must be attached as PDF files.",
)
CONTEXT = (VPN, PASSWORDS, EXPENSES)


def prompt(
    question: str, context: tuple[ScoredChunk, ...] = CONTEXT, status: RetrievalStatus = "ok"
) -> Prompt:
    return Prompt(
        version="v1",
        system="You answer from the knowledge base.",
        messages=(Message("user", f"documents...\n\nQuestion: {question}"),),
        question=question,
        retrieval_status=status,
        context=context,
    )


def provider(sentences: int = 4, embedder: ConceptEmbedder | None = None) -> ExtractiveProvider:
    return ExtractiveProvider(GenerationSettings(extractive_sentences=sentences), embedder=embedder)


def quoted_lines(answer: str) -> list[str]:
    """The answer's quoted lines (the lead and any "- " follow-ups), without citations."""
    lines = [line.removeprefix("- ") for line in answer.splitlines() if line.strip()]
    return [re.sub(r" \[\d+\]$", "", line) for line in lines]


async def collect(p: ExtractiveProvider, pr: Prompt) -> tuple[str, list[TextDelta], list[Usage]]:
    items = [item async for item in p.stream(pr)]
    deltas = [i for i in items if isinstance(i, TextDelta)]
    usages = [i for i in items if isinstance(i, Usage)]
    assert items[-1] in usages, "usage comes last"
    return "".join(d.text for d in deltas), deltas, usages


def test_identity() -> None:
    p = provider()
    assert isinstance(p, ModelProvider)
    assert p.name == "extractive" and p.model == "extractive-v1"


async def test_a_grounded_answer_quotes_and_cites_the_right_source() -> None:
    answer, _, _ = await collect(provider(), prompt("How do I reset my password?"))
    expected = "To reset a forgotten password, open the self-service portal and choose Reset password."
    assert expected + " [2]" in answer
    assert extract_citations(answer, 3) == [2]
    assert "VPN" not in answer and "expense" not in answer.lower()


async def test_every_quoted_sentence_is_from_the_context() -> None:
    question = "Which portal do I use for the VPN client or a password reset?"
    answer, _, _ = await collect(provider(sentences=10), prompt(question))
    quoted = quoted_lines(answer)
    assert quoted
    all_text = " ".join(" ".join(c.record.text.split()) for c in CONTEXT)
    for sentence in quoted:
        assert sentence in all_text


async def test_rare_question_terms_outweigh_common_ones() -> None:
    # "key" is in every chunk; "rotation" only in the third. With one sentence allowed, the rare
    # term wins even though its chunk ranks last.
    context = (
        chunk(1, "Keys", "Every service key is listed in the key inventory."),
        chunk(2, "Vault", "The vault stores each key encrypted at rest."),
        chunk(3, "Rotation", "Automatic rotation happens on the first day of the month."),
    )
    pr = prompt("When does key rotation run?", context)
    answer, _, _ = await collect(provider(sentences=1), pr)
    assert extract_citations(answer, 3) == [3]


async def test_the_sentence_limit_is_respected() -> None:
    pr = prompt("portal password VPN expense claims receipts")
    answer, _, _ = await collect(provider(sentences=2), pr)
    assert len(re.findall(r"\[\d\]", answer)) <= 2


async def test_it_leads_with_the_single_best_sentence_then_near_equals() -> None:
    question = "Expense claims above 500 euros need whose approval?"
    answer, _, _ = await collect(provider(), prompt(question))
    first, *rest = answer.splitlines()
    assert first == "Claims above 500 euros need a manager's approval. [3]"
    assert all(line.startswith("- ") for line in rest if line)


async def test_sentences_of_other_passages_far_below_the_best_are_not_added_as_padding() -> None:
    answer, _, _ = await collect(provider(sentences=4), prompt("How do I reset my password?"))
    lines = quoted_lines(answer)
    assert (
        lines[0] == "To reset a forgotten password, open the self-service portal and choose Reset password."
    )
    # Its neighbours in the passage may finish its thought; nothing of another source pads it.
    assert set(extract_citations(answer, 3)) == {2}  # PASSWORDS only


async def test_when_nothing_answers_it_says_what_was_asked_and_what_the_sources_are_about() -> None:
    answer, _, _ = await collect(provider(), prompt("What is on the cafeteria menu today?"))
    assert answer.startswith("The knowledge base does not say what on the cafeteria menu today is.")
    assert "The closest sources are about: VPN guide [1]; Password policy [2]; Expenses [3]." in answer


async def test_the_closest_sources_are_named_by_title_and_section() -> None:
    context = (
        chunk(
            1,
            "Configuration",
            "Settings come from TOML files and the environment.",
            ("Configuration", "Secrets"),
        ),
        chunk(2, "Asking", "Questions are sent to the ask endpoint as JSON.", ("Asking", "Over HTTP")),
    )
    answer, _, _ = await collect(provider(), prompt("How do I configure SSO with Okta?", context))
    assert answer == (
        "The knowledge base does not say how to configure SSO with Okta. "
        "The closest sources are about: Configuration > Secrets [1]; Asking > Over HTTP [2]."
    )


async def test_a_weak_word_match_is_not_an_answer() -> None:
    # "policy" matches, but nothing about vacations: quoting the password policy would mislead.
    answer, _, _ = await collect(provider(embedder=ConceptEmbedder()), prompt("What is the vacation policy?"))
    assert answer.startswith("The knowledge base does not say what the vacation policy is.")
    assert "Passwords expire" not in answer


@pytest.mark.parametrize(
    ("question", "said"),
    [
        ("How do I configure SSO with Okta?", "how to configure SSO with Okta"),
        ("What is the vacation policy?", "what the vacation policy is"),
        ("Does kb support .docx?", "whether kb support .docx"),
        ("Is there a dark mode?", "whether there is a dark mode"),
        ("Can I run it on my laptop?", "whether you can run it on your laptop"),
        ("Which databases are supported?", "which databases are supported"),
        ("Okta single sign-on", "anything about okta single sign-on"),
    ],
)
def test_not_said_finishes_with_what_the_question_asked_in_its_words(question: str, said: str) -> None:
    assert not_said(question) == f"The knowledge base does not say {said}."


# --- what is never quoted ----------------------------------------------------------------------


async def test_a_table_is_never_pasted_and_the_prose_beside_it_can_answer() -> None:
    context = (
        chunk(
            1,
            "Settings",
            "| key | default | meaning |\n| --- | --- | --- |\n| server.port | 8000 | the HTTP port to listen on |\n\n"
            "The service listens on port 8000 unless server.port says otherwise.",
        ),
    )
    answer, _, _ = await collect(provider(), prompt("Which port does the service listen on?", context))
    assert "|" not in answer and "---" not in answer
    assert "The service listens on port 8000 unless server.port says otherwise." in quoted_lines(answer)


# Tables as ingestion hands them on: one line per row, cells separated by " | ", header first.
SETTINGS_TABLE = (
    "The defaults below are checked against the settings structs.\n\n"
    "key | default | meaning\n"
    "data_dir | ./data | where the embedded store and local state live\n"
    "embedding.model | all-MiniLM-L6-v2 | sentence-transformers model name or folder\n"
    "retrieval.top_k | 6 | how many sources may reach the answer\n"
    "server.port | 8000 | the HTTP port to listen on"
)


async def test_a_table_row_that_answers_is_quoted_as_one_labelled_line() -> None:
    context = (chunk(1, "Configuration", SETTINGS_TABLE, ("Configuration", "Important settings")),)
    answer, _, _ = await collect(
        provider(embedder=ConceptEmbedder()), prompt("What is the default embedding model?", context)
    )
    lines = quoted_lines(answer)
    assert lines[0] == "embedding.model: default all-MiniLM-L6-v2; sentence-transformers model name or folder"
    assert "|" not in answer
    # A row is a fact; the rest of the table does not come along as padding.
    assert sum(line.count(": default ") for line in lines) <= 2


async def test_the_header_and_separator_rows_of_a_table_are_never_quoted() -> None:
    text = "| key | default |\n| --- | --- |\n| server.port | 8000 |\n| server.host | 127.0.0.1 |"
    answer, _, _ = await collect(
        provider(), prompt("What is the default key?", (chunk(1, "Settings", text),))
    )
    assert "key: default" not in answer and "---" not in answer


@pytest.mark.parametrize(
    "code",
    [
        # What ingestion makes of fenced blocks: the fences are gone, the line breaks are kept.
        "curl -N http://127.0.0.1:8000/ask -H 'content-type: application/json' \\\n"
        '     -d \'{"question": "How do I ingest documents into the service?"}\'',
        'HTTP/1.1 200 OK\ncontent-type: text/event-stream\nRateLimit-Policy: "ask";q=30;w=60',
        '{"request_id":"a9c0cb3751b3415e86f59ab7aa24ef26","rating":"down","prompt_version":"answer@v1"}',
        "export KB_GENERATION__PROVIDER=openai\nexport KB_GENERATION__OPENAI_MODEL=llama3.1:8b",
        "$ kb keys hash --name ci --role user\nkey 0a1b2c3d4e5f (ci): shown only once.",
    ],
)
async def test_code_that_lost_its_fences_is_never_quoted(code: str) -> None:
    prose = "Send questions to the ask endpoint of the service with a JSON body."
    after = "The answer streams back to the client as a sequence of server-sent events."
    # In the middle of the chunk: a chunk's unfinished last line is left out for another reason.
    text = f"{prose}\n\n{code}\n\n{after}"
    question = f"How do I send questions to the service, as in {code.split()[0]}?"
    answer, _, _ = await collect(
        provider(sentences=4, embedder=ConceptEmbedder()), prompt(question, (chunk(1, "Asking", text),))
    )
    assert prose in quoted_lines(answer)
    assert set(quoted_lines(answer)) <= {prose, after}, answer


def test_prose_about_software_is_not_taken_for_code() -> None:
    for prose in (
        "The image sets KB_ENV=production, HF_HUB_OFFLINE=1 and KB_SERVER__WORKERS=1. Its command is kb serve.",
        'A request the service refuses gets a JSON error of the form {"error": {"code"}}, at once.',
        "- config/default.toml: overrides shared by every environment.\n- config/<env>.toml: overrides.",
    ):
        assert not looks_like_code(prose), prose


async def test_a_list_whose_heading_answers_is_quoted_though_no_item_does_alone() -> None:
    formats = chunk(
        1,
        "Ingesting",
        "- Markdown (.md, .markdown): headings build the heading path and front matter gives the title.\n"
        "- Plain text (.txt, .text).\n"
        "- PDF (.pdf): text is extracted page by page and every chunk keeps its page number.\n"
        "- Word (.docx): the heading styles build the heading path and each table row becomes one line.",
        ("Ingesting documents", "Supported formats"),
    )
    other = chunk(
        2,
        "Ingesting",
        "Other file types are skipped and listed in the summary as unsupported.",
        ("Ingesting documents", "Supported formats"),
    )
    answer, _, _ = await collect(
        provider(embedder=ConceptEmbedder()), prompt("Which file formats can I ingest?", (other, formats))
    )
    for name in ("Markdown", "Plain text", "PDF", "Word"):
        assert name in answer, answer
    assert not answer.startswith("Other file types")


async def test_a_short_list_introduced_by_the_best_sentence_is_quoted_whole() -> None:
    text = (
        "Settings come from three places, the later winning:\n\n"
        "- config/default.toml: overrides shared by every environment.\n"
        "- config/<env>.toml: overrides for one environment, chosen with KB_ENV.\n"
        "- Environment variables: KB_<SECTION>__<KEY> for any key."
    )
    answer, _, _ = await collect(
        provider(), prompt("Where do settings come from?", (chunk(1, "Configuration", text),))
    )
    assert "chosen with KB_ENV" in answer  # the items whole, not their labels only
    assert len(answer.split()) <= 60


async def test_code_blocks_are_never_quoted() -> None:
    text = (
        "Install the package with pip before the first run of the service.\n\n"
        "```sh\npip install kb-service and then run the service with the default settings.\n```\n\n"
        "    pip install --upgrade kb-service to get the newest release of the service.\n"
    )
    answer, _, _ = await collect(
        provider(sentences=4), prompt("How do I install the service with pip?", (chunk(1, "Setup", text),))
    )
    assert quoted_lines(answer) == ["Install the package with pip before the first run of the service."]


async def test_headings_list_stubs_and_labels_are_never_quoted() -> None:
    text = (
        "## Resetting passwords\n- Reset password.\n- Password:\n\n"
        "Open the self-service portal to reset a forgotten password in two minutes."
    )
    answer, _, _ = await collect(
        provider(sentences=4), prompt("How do I reset a password?", (chunk(1, "Passwords", text),))
    )
    assert quoted_lines(answer) == [
        "Open the self-service portal to reset a forgotten password in two minutes."
    ]


async def test_a_chunk_cut_mid_sentence_is_not_quoted_from_its_cut_end() -> None:
    text = "Passwords are reset in the self-service portal. To unlock an account after too many failed"
    answer, _, _ = await collect(
        provider(sentences=4), prompt("How do I unlock a locked account?", (chunk(1, "Accounts", text),))
    )
    assert "failed" not in answer


# --- commands stay whole -----------------------------------------------------------------------


async def test_a_command_with_dots_is_quoted_whole() -> None:
    # The splitter ends a sentence after "...]" and a space; the command is one sentence anyway.
    text = "kb ingest PATH [PATH ...] loads documents, cuts them into chunks and writes them to the store."
    answer, _, _ = await collect(
        provider(), prompt("How do I ingest documents?", (chunk(1, "Ingesting", text),))
    )
    assert quoted_lines(answer) == [text]


async def test_inline_code_is_never_cut() -> None:
    text = "Run `kb ingest docs ... --prune` to drop documents whose file is gone. It is safe to repeat."
    answer, _, _ = await collect(
        provider(sentences=1),
        prompt("How do I drop documents whose file is gone?", (chunk(1, "Ingesting", text),)),
    )
    assert quoted_lines(answer) == ["Run `kb ingest docs ... --prune` to drop documents whose file is gone."]


# --- meaning, sources and lists ----------------------------------------------------------------


async def test_meaning_counts_as_well_as_words() -> None:
    context = (
        chunk(1, "Time off", "Every employee receives 25 days of annual leave per calendar year."),
        chunk(2, "Office", "The office is closed on public holidays and the day after them."),
    )
    question = "How many vacation days do I get each year?"
    by_words, _, _ = await collect(provider(sentences=1), prompt(question, context))
    by_meaning, _, _ = await collect(
        provider(sentences=1, embedder=ConceptEmbedder()), prompt(question, context)
    )
    assert quoted_lines(by_meaning) == ["Every employee receives 25 days of annual leave per calendar year."]
    assert by_meaning != by_words or "25 days" in by_words


async def test_the_embedder_is_asked_once_per_answer_for_the_question_and_the_candidates() -> None:
    embedder = ConceptEmbedder()
    await collect(provider(embedder=embedder), prompt("How do I reset my password?"))
    # One call: the question plus the seven quotable sentences of the three sources.
    assert embedder.calls == [1 + 7]


async def test_of_two_equal_sentences_the_better_source_wins() -> None:
    same = "Backups run every night at two in the morning."
    context = (chunk(1, "Ops", same.replace("Backups", "Full backups")), chunk(2, "Ops notes", same))
    answer, _, _ = await collect(provider(sentences=1), prompt("When do backups run?", context))
    assert extract_citations(answer, 2) == [1]


async def test_a_question_answered_by_a_list_gets_the_whole_list() -> None:
    text = (
        "- Markdown (.md, .markdown): headings build the heading path and front matter gives the title.\n"
        "- Plain text (.txt, .text).\n"
        "- HTML (.html, .htm): scripts, styles and navigation are dropped, and headings are kept as the path.\n"
        "- PDF (.pdf): text is extracted page by page and every chunk keeps its page number for citations.\n"
        "- Word (.docx): the heading styles build the heading path and each table row becomes one line."
    )
    context = (chunk(1, "Ingesting documents", text, ("Ingesting documents", "Supported formats")),)
    answer, _, _ = await collect(provider(), prompt("Which file formats can I ingest?", context))
    for name in (
        "Markdown (.md, .markdown)",
        "Plain text",
        "HTML (.html, .htm)",
        "PDF (.pdf)",
        "Word (.docx)",
    ):
        assert name in answer
    assert len(answer.split()) <= 60


@pytest.mark.parametrize(
    ("status", "says"),
    [
        ("timeout", "The knowledge base could not be searched (timeout), so I can't answer"),
        ("error", "The knowledge base could not be searched (unavailable), so I can't answer"),
        ("empty", "I found nothing relevant to your question in the knowledge base"),
    ],
)
async def test_without_retrieval_results_it_says_why_and_invents_nothing(
    status: RetrievalStatus, says: str
) -> None:
    answer, _, _ = await collect(provider(), prompt("How do I reset my password?", (), status))
    assert answer.startswith(says)
    assert extract_citations(answer, 3) == [] and "[" not in answer


async def test_ok_with_an_empty_context_is_answered_as_empty() -> None:
    answer, _, _ = await collect(provider(), prompt("How do I reset my password?", (), "ok"))
    assert answer.startswith("I found nothing relevant")


async def test_answers_are_deterministic() -> None:
    pr = prompt("How do I reset my password or connect to the VPN?")
    first_text, first_deltas, _ = await collect(provider(), pr)
    second_text, second_deltas, _ = await collect(provider(), pr)
    assert first_text == second_text and first_deltas == second_deltas


async def test_streams_a_few_words_at_a_time() -> None:
    p, pr = provider(), prompt("How do I reset my password or connect to the VPN?")
    answer, deltas, _ = await collect(p, pr)
    assert answer == p.answer(pr)
    assert len(deltas) >= 5
    assert all(1 <= len(d.text.split()) <= 3 for d in deltas)


async def test_one_usage_with_estimated_tokens_comes_last() -> None:
    pr = prompt("How do I reset my password?")
    answer, _, usages = await collect(provider(), pr)
    count = ClaudeTokenEstimate().count
    input_tokens = count(pr.system) + count(pr.messages[0].content)
    assert usages == [Usage(input_tokens=input_tokens, output_tokens=count(answer))]


async def test_the_stream_can_be_closed_early() -> None:
    stream = provider().stream(prompt("How do I reset my password or connect to the VPN?"))
    first = await anext(stream)  # type: ignore[call-overload]
    assert isinstance(first, TextDelta)
    await stream.aclose()  # type: ignore[attr-defined]
    with pytest.raises(StopAsyncIteration):
        await anext(stream)  # type: ignore[call-overload]
