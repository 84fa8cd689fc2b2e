"""The ``<kb-ask>`` widget and the full-page UI at ``/``, in real headless Chromium.

Debian's ``chromium`` is driven by Playwright against the real app under uvicorn on loopback (real
model, real embedded store). The store is built for this module with the real ``Ingestor``: the
``tests/data/mixed`` corpus plus hostile documents (an ``<img onerror>``, an entity-escaped
``<script>`` that ingestion turns into a literal one, ``javascript:`` links). Answers come from the
offline extractive answerer, or, where a test needs an answer that streams slowly or fails, from the
real Anthropic provider talking to the wire-level fake Messages API.

Two conditions cannot be produced by the service today and are injected at the browser's network
layer with ``page.route``: a 429 (there is no rate limiter yet) and model output carrying markup
(the extractive answerer only quotes documents).
"""

from __future__ import annotations

import gzip
import json
import re
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Locator, Page, Playwright, expect, sync_playwright

from app.embedding import SentenceTransformerEmbedder
from app.http import create_app
from app.store import open_store
from ingest.runner import Ingestor
from tests.e2e.browser import CHROMIUM, axe_script, launch_chromium, run_axe
from tests.e2e.conftest import CORPUS, settings_for
from tests.e2e.proxy import PullablePlug
from tests.e2e.servers import LiveServer, live_server
from tests.fakes.anthropic_server import FakeAnthropic, Reply, closed_port_url

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / ".artifacts" / "ui"
LINUX = "How do I install on Linux?"
ROTATION = "How often do I rotate the keys?"
WAIT_MS = 10_000

HOSTILE_DOCS = {
    # Plain text keeps markup verbatim, so the tag reaches the snippet as written.
    "rotation-notes.txt": (
        "Key rotation notes.\n\n"
        "Rotate the signing keys every quarter <img src=x onerror=\"window.__pwned='img';alert('img')\"> "
        "and keep the old key for one week.\n"
    ),
    # Markdown: the entity becomes a literal <script> in the chunk text, and the javascript:
    # link survives as Markdown link syntax, which the widget's renderer sees.
    "rotation.md": (
        "# Key rotation\n\n"
        "The key rotation script prints &lt;script&gt;window.__pwned='entity'&lt;/script&gt; "
        "when it rotates the keys, which is harmless.\n\n"
        "Read [the key rotation runbook](javascript:window.__pwned='link') before you rotate keys.\n"
    ),
    "rotation.html": (
        "<html><head><title>Rotation checklist</title></head><body><h1>Rotation checklist</h1>"
        "<p>Rotate keys with the &lt;script&gt;alert('entity-html')&lt;/script&gt; helper, "
        "as the key rotation checklist says.</p>"
        "<p>Key rotation steps are in <a href=\"javascript:alert('html-link')\">the rotation list</a>.</p>"
        "</body></html>"
    ),
}


# --------------------------------------------------------------------------- servers


@pytest.fixture(scope="module")
def ui_store(tmp_path_factory: pytest.TempPathFactory, embedder: SentenceTransformerEmbedder) -> Path:
    """A data folder holding the mixed corpus and the hostile documents; copy it, never serve it."""
    docs = tmp_path_factory.mktemp("ui-docs") / "runbooks"
    docs.mkdir()
    for name, text in HOSTILE_DOCS.items():
        (docs / name).write_text(text, encoding="utf-8")
    data_dir = tmp_path_factory.mktemp("ui-store")
    settings = settings_for(data_dir)
    store = open_store(settings)
    try:
        report = Ingestor(store, embedder, chunking=settings.chunking, ingest=settings.ingest).ingest_paths(
            [CORPUS, docs]
        )
    finally:
        store.close()
    assert report.new >= 6 and report.chunks_written > 0, report
    return data_dir


@pytest.fixture(scope="module")
def serve(
    ui_store: Path, tmp_path_factory: pytest.TempPathFactory, embedder: SentenceTransformerEmbedder
) -> Iterator[Callable[..., LiveServer]]:
    """``serve(environ=..., empty=False, **overrides)``: an app on a fresh copy of the module's
    store (or on an empty one), stopped when the module ends."""
    with ExitStack() as running:

        def start(
            environ: dict[str, str] | None = None, *, empty: bool = False, **overrides: Any
        ) -> LiveServer:
            data_dir = tmp_path_factory.mktemp("ui-data")
            if not empty:
                shutil.copytree(ui_store, data_dir, dirs_exist_ok=True)
            app = create_app(settings_for(data_dir, environ, **overrides), embedder=embedder)
            return running.enter_context(live_server(app))

        yield start


@pytest.fixture(scope="module")
def kb(serve: Callable[..., LiveServer]) -> LiveServer:
    """The app with the offline extractive answerer."""
    return serve()


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeAnthropic]:
    with FakeAnthropic() as fake:
        yield fake


@pytest.fixture(scope="module")
def claude_kb(serve: Callable[..., LiveServer], upstream: FakeAnthropic) -> LiveServer:
    """The app with the real Anthropic provider against the fake Messages API."""
    return serve(
        environ={"ANTHROPIC_API_KEY": "sk-ant-ui-test"},
        generation={
            "provider": "anthropic",
            "base_url": upstream.base_url,
            "model": "claude-ui",
            "max_retries": 0,
            "first_token_timeout_s": 5.0,
            "total_timeout_s": 30.0,
        },
    )


@pytest.fixture
def fake(upstream: FakeAnthropic) -> FakeAnthropic:
    upstream.reset()
    return upstream


# --------------------------------------------------------------------------- the browser


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium (scripts/setup --dev does)")
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    expect.set_options(timeout=WAIT_MS)
    chromium = launch_chromium(playwright)
    yield chromium
    chromium.close()


@dataclass
class Watched:
    """A page, and what it did that it should not: dialogs, uncaught errors, CSP refusals."""

    page: Page
    dialogs: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    csp: list[str] = field(default_factory=list)

    def widget(self, selector: str = "") -> Locator:
        return self.page.locator(f"kb-ask {selector}".strip())

    def ask(self, question: str) -> None:
        self.widget("textarea").fill(question)
        self.widget("textarea").press("Enter")

    def wait_until_answered(self) -> None:
        """The stream is over: done, stopped or failed."""
        self.page.wait_for_function(
            """() => {
                const root = document.querySelector('kb-ask')?.shadowRoot;
                if (!root) return false;
                const busy = root.querySelector('.answer').getAttribute('aria-busy') === 'true';
                return !busy && !root.querySelector('.result').hidden
                    && (!root.querySelector('.tools').hidden || !root.querySelector('.notice').hidden);
            }""",
            timeout=WAIT_MS,
        )

    def answer(self) -> str:
        return self.widget(".answer").inner_text()

    def focused(self) -> dict[str, Any]:
        """What has focus, looking into the widget's shadow root."""
        focused: dict[str, Any] = self.page.evaluate(
            """() => {
                let el = document.activeElement;
                while (el && el.shadowRoot && el.shadowRoot.activeElement) el = el.shadowRoot.activeElement;
                const style = el ? getComputedStyle(el) : null;
                return {tag: el?.tagName.toLowerCase(), id: el?.id, text: el?.textContent,
                        outline: style?.outlineStyle, outlineWidth: style?.outlineWidth};
            }"""
        )
        return focused


@pytest.fixture
def watched(browser: Browser) -> Iterator[Watched]:
    context = browser.new_context(viewport={"width": 1000, "height": 900}, color_scheme="light")
    context.set_default_timeout(WAIT_MS)
    page = context.new_page()
    seen = Watched(page)

    def on_dialog(dialog: Any) -> None:
        seen.dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    page.on("pageerror", lambda error: seen.errors.append(str(error)))
    page.on("console", lambda m: seen.csp.append(m.text) if "Content Security Policy" in m.text else None)
    yield seen
    context.close()
    assert not seen.errors, f"uncaught errors in the page: {seen.errors}"
    assert not seen.csp, f"the page's Content-Security-Policy refused something: {seen.csp}"


def assert_grounded(watched: Watched) -> None:
    """An answer from the mixed corpus's deployment guide, quoting it with citations."""
    answer = watched.answer()
    assert "nothing relevant" not in answer and len(answer) > 40, answer
    assert watched.widget(".answer a.cite").count() >= 1
    expect(watched.widget(".sources li .src-meta").first).to_contain_text("mixed/guide.md")


def open_page(watched: Watched, server: LiveServer | PullablePlug) -> Page:
    watched.page.goto(server.base_url + "/")
    expect(watched.widget("textarea")).to_be_visible()
    return watched.page


def sse(*events: tuple[str, dict[str, Any]]) -> str:
    return "".join(f"event: {kind}\ndata: {json.dumps(data)}\n\n" for kind, data in events)


def source(number: int, title: str = "Guide", snippet: str = "A snippet.") -> dict[str, Any]:
    return {
        "id": number,
        "title": title,
        "source": f"docs/{title.lower()}.md",
        "score": 0.9,
        "snippet": snippet,
        "heading": f"{title} > Install",
        "page": None,
    }


DONE = {
    "citations": [1],
    "usage": {"input_tokens": 1, "output_tokens": 1},
    "model": "m",
    "prompt_version": "answer@v1",
    "request_id": "r",
    "timings_ms": {},
}


# --------------------------------------------------------------------------- assets


def test_the_page_and_the_widget_are_served_with_caching_and_security_headers(kb: LiveServer) -> None:
    with httpx.Client(base_url=kb.base_url, timeout=10.0) as client:
        page = client.get("/")
        stable = client.get("/widget.js")
        (versioned_url,) = re.findall(r'<script src="(/widget\.[0-9a-f]{16}\.js)"', page.text)
        versioned = client.get(versioned_url)
        revalidated = client.get("/widget.js", headers={"If-None-Match": stable.headers["etag"]})
        plain = client.get(versioned_url, headers={"Accept-Encoding": "identity"})
        refused = client.get(versioned_url, headers={"Accept-Encoding": "gzip;q=0, identity"})
        schema = client.get("/schema/openapi.json").json()

    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp and "unsafe" not in csp
    assert "<script>" not in page.text  # no inline script: the page is only the element and its script
    assert page.headers["cache-control"] == "no-cache"
    for response in (page, stable, versioned):
        assert response.headers["x-content-type-options"] == "nosniff"
    assert versioned.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert "immutable" not in stable.headers["cache-control"] and "max-age" in stable.headers["cache-control"]
    assert stable.content == versioned.content == plain.content
    assert stable.headers["content-type"].startswith("text/javascript")
    assert revalidated.status_code == 304 and not revalidated.content
    # The widget script's size on the wire (httpx asked for gzip; it decoded the body).
    assert versioned.headers["content-encoding"] == "gzip"
    assert "content-encoding" not in plain.headers and "content-encoding" not in refused.headers
    assert versioned.headers["vary"] == "Accept-Encoding"
    assert len(gzip.compress(plain.content, 9)) < 30 * 1024
    assert not {"/", "/widget.js", versioned_url} & schema["paths"].keys()  # not part of the API


# --------------------------------------------------------------------------- answering


def test_an_answer_appears_with_its_sources_and_citations_that_link_to_them(
    watched: Watched, kb: LiveServer
) -> None:
    open_page(watched, kb)

    watched.ask(LINUX)
    watched.wait_until_answered()

    assert_grounded(watched)
    expect(watched.widget(".status")).to_have_text(re.compile(r"^\d+ sources? found$"))
    expect(watched.widget(".asked")).to_contain_text(LINUX)
    sources = watched.widget(".sources li")
    assert sources.count() >= 1
    first = sources.first
    expect(first.locator(".src-title")).not_to_be_empty()
    expect(first.locator(".src-meta")).to_contain_text("mixed/guide.md")
    expect(first.locator(".src-snippet")).not_to_be_empty()
    citations = watched.widget(".answer a.cite")
    assert citations.count() >= 1
    cited = citations.first.get_attribute("data-source")
    expect(watched.widget(f"#kb-source-{cited} .cited")).to_have_text("cited")

    url = watched.page.url
    citations.first.click()
    assert watched.focused()["id"] == f"kb-source-{cited}"
    expect(watched.widget(f"#kb-source-{cited}")).to_have_class(re.compile("flash"))
    assert watched.page.url == url  # the host page's fragment is left alone

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    watched.page.screenshot(path=ARTIFACTS / "answered.png", full_page=True)
    watched.page.emulate_media(color_scheme="dark")
    watched.page.screenshot(path=ARTIFACTS / "answered-dark.png", full_page=True)


def test_the_answer_grows_while_it_streams(
    watched: Watched, claude_kb: LiveServer, fake: FakeAnthropic
) -> None:
    words = [
        "Create ",
        "a virtual ",
        "environment ",
        "first [1]. ",
        "Then ",
        "install ",
        "the ",
        "package ",
        "with ",
        "pip [1].",
    ]
    fake.script(Reply.text(words, delay=0.2))
    open_page(watched, claude_kb)

    watched.ask(LINUX)
    busy = watched.widget(".answer[aria-busy=true]")
    expect(busy).to_have_text(re.compile(r"\w"))  # some text, while the stream is still open
    early = busy.inner_text().split()
    watched.wait_until_answered()

    final = watched.answer().split()
    assert final[: len(early)] == early and len(final) > len(early)  # it grew, in order
    assert " ".join(final) == "".join(words).strip()
    expect(watched.widget(".answer a.cite")).to_have_count(2)
    expect(watched.widget(".sources li").first).to_be_visible()


def test_an_error_from_the_model_is_shown_in_words(
    watched: Watched, claude_kb: LiveServer, fake: FakeAnthropic
) -> None:
    fake.script(Reply.error(401))
    open_page(watched, claude_kb)

    watched.ask(LINUX)
    watched.wait_until_answered()

    notice = watched.widget(".notice")
    expect(notice).to_have_text(re.compile(r"^The answer could not be completed: .+"))
    expect(notice).to_have_attribute("role", "alert")
    expect(watched.widget("button[type=submit]")).to_be_enabled()


def test_a_question_the_service_refuses_is_explained(watched: Watched, kb: LiveServer) -> None:
    open_page(watched, kb)

    watched.ask("why " * 400)  # over the question's token limit: a 422 from the real service
    watched.wait_until_answered()

    expect(watched.widget(".notice")).to_contain_text("The question was not accepted: ")
    expect(watched.widget(".notice")).to_contain_text("request id")


# --------------------------------------------------------------------------- nothing is injected


def test_hostile_documents_and_a_hostile_question_render_inert(watched: Watched, kb: LiveServer) -> None:
    page = open_page(watched, kb)
    url = page.url
    question = f"{ROTATION} <script>window.__pwned='question'</script><img src=x onerror=alert('q')>"

    watched.ask(question)
    watched.wait_until_answered()

    text = watched.widget(".result").inner_text()
    # The markup is shown as the text it is: the literal tags are there, as characters.
    assert "<script>window.__pwned='question'</script>" in text
    assert "<img src=x onerror=" in text
    assert (
        "<script>window.__pwned='entity'</script>" in text or "<script>alert('entity-html')</script>" in text
    )
    assert "javascript:" in text  # the Markdown link syntax, not a link
    inert = page.evaluate(
        """() => {
            const root = document.querySelector('kb-ask').shadowRoot;
            return {
                elements: [...root.querySelectorAll('script, img, iframe, object, embed, svg, style')].length,
                hrefs: [...root.querySelectorAll('[href]')].map(a => a.getAttribute('href')),
                handlers: [...root.querySelectorAll('*')].flatMap(
                    el => [...el.attributes].map(a => a.name).filter(n => n.startsWith('on'))),
                pwned: window.__pwned ?? null,
            };
        }"""
    )
    assert inert["elements"] == 0 and inert["handlers"] == []
    assert all(re.fullmatch(r"#kb-source-\d+|https?://.+", href) for href in inert["hrefs"]), inert["hrefs"]
    for link in watched.widget(".answer a.cite").all():
        link.click()
    page.wait_for_timeout(300)  # time for a late onerror, timer or navigation to show itself
    assert page.evaluate("window.__pwned ?? null") is None
    assert watched.dialogs == []
    assert page.url == url


def test_markup_in_the_model_output_renders_only_the_safe_markdown_subset(
    watched: Watched, kb: LiveServer
) -> None:
    answer = (
        "Intro with *emphasis*, **strong** and `<b>code</b>` [1].\n\n"
        "- one <img src=x onerror=alert('md')>\n"
        "- [safe link](https://example.com/docs) and [script](javascript:alert('a'))\n"
        "- [upper](JaVaScRiPt:alert('b')) [spaced]( javascript:alert('c')) [data](data:text/html,<script>alert('d')</script>)\n"
        "- [relative](/admin) [7] and https://example.org/page.\n\n"
        "```\n<script>alert('fence')</script>\n```\n"
        "<a href=\"javascript:alert('raw')\">raw</a>"
    )
    stream = sse(
        ("retrieval", {"status": "ok", "sources": [source(1)], "took_ms": 1.0}),
        *(("delta", {"text": answer[i : i + 7]}) for i in range(0, len(answer), 7)),
        ("done", DONE),
    )
    page = open_page(watched, kb)
    page.route(
        "**/ask",
        lambda route: route.fulfill(status=200, headers={"Content-Type": "text/event-stream"}, body=stream),
    )

    watched.ask("anything")
    watched.wait_until_answered()

    rendered = page.evaluate(
        """() => {
            const a = document.querySelector('kb-ask').shadowRoot.querySelector('.answer');
            return {
                tags: [...new Set([...a.querySelectorAll('*')].map(e => e.tagName.toLowerCase()))].sort(),
                links: [...a.querySelectorAll('a')].map(l => [l.textContent, l.getAttribute('href'), l.rel]),
                code: [...a.querySelectorAll('code')].map(c => c.textContent),
                items: a.querySelectorAll('ul > li').length,
                text: a.textContent,
            };
        }"""
    )
    assert rendered["tags"] == ["a", "code", "em", "li", "p", "pre", "strong", "ul"]
    assert rendered["links"] == [
        ["[1]", "#kb-source-1", ""],
        ["safe link", "https://example.com/docs", "noopener noreferrer nofollow"],
        ["https://example.org/page", "https://example.org/page", "noopener noreferrer nofollow"],
    ]
    assert rendered["code"] == ["<b>code</b>", "<script>alert('fence')</script>"]
    assert rendered["items"] == 4
    for words in (
        "script",
        "upper",
        "spaced",
        "data",
        "relative",
        "[7]",
        "<img src=x onerror=alert('md')>",
        "raw</a>",
    ):
        assert words in rendered["text"]
    assert watched.dialogs == []


# --------------------------------------------------------------------------- stop, failures


def test_stop_aborts_the_stream_and_the_service_cancels_the_model_call(
    watched: Watched, claude_kb: LiveServer, fake: FakeAnthropic
) -> None:
    fake.script(Reply.text([f"word{i} " for i in range(60)], delay=0.2))  # ~12 s if read to the end
    open_page(watched, claude_kb)

    watched.ask(LINUX)
    expect(watched.widget(".answer")).to_contain_text("word1")
    watched.widget(".stop").click()
    stopped_at = time.monotonic()

    expect(watched.widget(".notice")).to_have_text("Stopped. The answer above is incomplete.")
    expect(watched.widget(".stop")).to_be_hidden()
    assert watched.focused()["tag"] == "textarea"  # focus did not fall to the page
    (call,) = fake.requests
    give_up = time.monotonic() + 5
    while call.client_closed_at is None and time.monotonic() < give_up:
        time.sleep(0.02)
    assert call.client_closed_at is not None, "the service kept reading the model's answer"
    assert call.client_closed_at - stopped_at < 2.0
    assert call.finished_at is None  # abandoned, not read to its end
    assert "word59" not in watched.answer()


def test_escape_in_the_question_box_stops_the_stream(
    watched: Watched, claude_kb: LiveServer, fake: FakeAnthropic
) -> None:
    fake.script(Reply.text([f"word{i} " for i in range(60)], delay=0.2))
    open_page(watched, claude_kb)

    watched.ask(LINUX)
    expect(watched.widget(".answer")).to_contain_text("word1")
    watched.widget("textarea").press("Escape")

    expect(watched.widget(".notice")).to_have_text("Stopped. The answer above is incomplete.")
    assert watched.focused()["tag"] == "textarea"


def test_a_connection_lost_mid_stream_is_said_not_silently_frozen(
    watched: Watched, claude_kb: LiveServer, fake: FakeAnthropic
) -> None:
    fake.script(Reply.text([f"word{i} " for i in range(60)], delay=0.2))
    with PullablePlug(claude_kb.port) as plug:  # the page and /ask both go through it
        open_page(watched, plug)
        watched.ask(LINUX)
        expect(watched.widget(".answer")).to_contain_text("word1")

        plug.pull()

        expect(watched.widget(".notice")).to_contain_text(
            "The connection was lost before the answer was complete"
        )
    expect(watched.widget(".answer")).to_have_attribute("aria-busy", "false")
    expect(watched.widget(".answer")).to_contain_text("word1")  # what arrived stays
    expect(watched.widget("button[type=submit]")).to_be_enabled()


def test_a_network_gone_silent_mid_stream_ends_in_words_not_a_frozen_cursor(
    watched: Watched, claude_kb: LiveServer, fake: FakeAnthropic
) -> None:
    fake.script(Reply.text([f"word{i} " for i in range(60)], delay=0.2))
    watched.page.clock.install()  # the widget's timers run on a clock the test can move
    with PullablePlug(claude_kb.port) as plug:
        open_page(watched, plug)
        watched.ask(LINUX)
        expect(watched.widget(".answer")).to_contain_text("word1")

        plug.freeze()  # no byte, no heartbeat, no close: only time tells
        watched.page.clock.fast_forward("01:00")

        expect(watched.widget(".notice")).to_contain_text("The service stopped responding")
    expect(watched.widget(".answer")).to_have_attribute("aria-busy", "false")
    expect(watched.widget(".answer")).to_contain_text("word1")


def test_a_rate_limit_is_explained_with_the_wait_from_retry_after(watched: Watched, kb: LiveServer) -> None:
    page = open_page(watched, kb)
    body = {"error": {"code": "rate_limited", "message": "too many requests"}, "request_id": "r429"}
    page.route(
        "**/ask",
        lambda route: route.fulfill(
            status=429,
            headers={"Retry-After": "42", "Content-Type": "application/json"},
            body=json.dumps(body),
        ),
    )

    watched.ask(LINUX)
    watched.wait_until_answered()

    expect(watched.widget(".notice")).to_have_text(
        re.compile(r"rate limiting\. Try again in 4[12] seconds\.")
    )
    send = watched.widget("button[type=submit]")
    expect(send).to_be_disabled()
    expect(send).to_have_text(re.compile(r"Ask \(\d+ s\)"))


# --------------------------------------------------------------------------- retrieval status


def test_an_empty_knowledge_base_shows_no_matching_documents(
    watched: Watched, serve: Callable[..., LiveServer]
) -> None:
    open_page(watched, serve(empty=True))

    watched.ask(LINUX)
    watched.wait_until_answered()

    expect(watched.widget(".status")).to_have_text("No matching documents")
    expect(watched.widget(".sources")).to_be_hidden()


def test_an_unreachable_store_says_the_answer_is_not_grounded(
    watched: Watched, serve: Callable[..., LiveServer]
) -> None:
    open_page(watched, serve(environ={"QDRANT_URL": closed_port_url()}, store={"timeout_s": 1.0}))

    watched.ask(LINUX)
    watched.wait_until_answered()

    expect(watched.widget(".status")).to_have_text(
        "Search unavailable — this answer is not grounded in the knowledge base"
    )


# --------------------------------------------------------------------------- embedding, keyboard


HOSTILE_HOST = """<!doctype html>
<html><head><title>Host</title>
<style>
  * { all: unset !important; }
  div, p, ol, ul, li, section, form, textarea, button, h2, h3, label { display: none !important; }
  html { font-size: 4px; color: transparent; background: #000; }
  kb-ask * { color: red !important; display: none !important; }
</style>
<script src="/widget.js" defer></script>
</head><body>
<p class="status warn notice" id="probe">host text</p>
<button id="host-button">host button</button>
<kb-ask title="Ask here" placeholder="Your question, please"></kb-ask>
</body></html>"""


def test_the_widget_renders_and_works_inside_a_page_with_hostile_css(
    watched: Watched, kb: LiveServer
) -> None:
    page = watched.page
    # Any page of the service's own origin may embed it; this one exists only in the browser.
    page.route(
        f"{kb.base_url}/host.html", lambda route: route.fulfill(body=HOSTILE_HOST, content_type="text/html")
    )
    page.goto(f"{kb.base_url}/host.html")
    before = page.evaluate("() => getComputedStyle(document.getElementById('host-button')).backgroundColor")

    textarea = watched.widget("textarea")
    expect(textarea).to_be_visible()
    expect(textarea).to_have_attribute("placeholder", "Your question, please")
    expect(watched.widget("h2")).to_have_text("Ask here")
    watched.ask(LINUX)
    watched.wait_until_answered()

    assert_grounded(watched)
    for part in (".answer", ".sources li", "button[type=submit]", "h2", "label"):
        box = watched.widget(part).first.bounding_box()
        assert box and box["width"] > 20 and box["height"] > 10, (part, box)
    styles = page.evaluate(
        """() => {
            const root = document.querySelector('kb-ask').shadowRoot;
            const s = el => getComputedStyle(root.querySelector(el));
            return {size: s('.answer').fontSize, color: s('.answer').color, button: s('button[type=submit]').backgroundColor};
        }"""
    )
    assert styles == {"size": "15px", "color": "rgb(31, 35, 40)", "button": "rgb(5, 80, 174)"}
    # Nor does the widget's CSS reach the host page's elements of the same names and classes.
    after = page.evaluate("() => getComputedStyle(document.getElementById('host-button')).backgroundColor")
    assert after == before != styles["button"]
    probe = page.evaluate("() => getComputedStyle(document.getElementById('probe')).backgroundColor")
    assert probe == "rgba(0, 0, 0, 0)"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=ARTIFACTS / "hostile-host.png", full_page=True)


def test_keyboard_only_use(watched: Watched, kb: LiveServer) -> None:
    page = open_page(watched, kb)
    keyboard = page.keyboard

    for _ in range(5):  # from the top of the page, a few Tabs reach the question box
        keyboard.press("Tab")
        if watched.focused()["tag"] == "textarea":
            break
    focus = watched.focused()
    assert focus["tag"] == "textarea"
    assert focus["outline"] == "solid" and focus["outlineWidth"] == "3px"  # visible focus
    keyboard.type("How do I install")
    keyboard.press("Shift+Enter")
    keyboard.type("on Linux?")
    assert watched.widget("textarea").input_value() == "How do I install\non Linux?"
    keyboard.press("Enter")
    watched.wait_until_answered()

    assert watched.widget("textarea").input_value() == ""
    assert watched.focused()["tag"] == "textarea"
    expect(watched.widget(".asked")).to_contain_text("on Linux?")
    keyboard.press("Tab")  # the Ask button
    assert watched.focused()["text"] == "Ask"
    keyboard.press("Tab")  # the first citation in the answer
    focus = watched.focused()
    assert focus["tag"] == "a" and re.fullmatch(r"\[\d+\]", focus["text"])
    assert focus["outline"] == "solid"
    keyboard.press("Enter")
    assert re.fullmatch(r"kb-source-\d+", watched.focused()["id"])


def test_the_answer_can_be_copied(watched: Watched, kb: LiveServer) -> None:
    page = open_page(watched, kb)
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=kb.base_url)

    watched.ask(LINUX)
    watched.wait_until_answered()
    watched.widget("button").filter(has_text="Copy answer").click()

    expect(watched.widget(".tools [role=status]")).to_have_text("Copied")
    copied = page.evaluate("() => navigator.clipboard.readText()")
    assert re.search(r"\[\d+\]", copied)
    # The Markdown source of what is shown: the same words, list markers aside.
    assert re.sub(r"(?m)^\s*[-*] ", "", copied).split() == watched.answer().split()


def test_the_last_question_and_answer_survive_a_reload(watched: Watched, kb: LiveServer) -> None:
    page = open_page(watched, kb)
    watched.ask(LINUX)
    watched.wait_until_answered()
    answer, sources = watched.answer(), watched.widget(".sources").inner_text()
    asked: list[str] = []
    page.on("request", lambda request: asked.append(request.url) if request.url.endswith("/ask") else None)

    page.reload()

    expect(watched.widget(".asked")).to_contain_text(LINUX)
    assert watched.answer() == answer
    assert watched.widget(".sources").inner_text() == sources
    expect(watched.widget(".answer a.cite").first).to_be_visible()
    assert asked == []  # restored from session storage, not asked again


# --------------------------------------------------------------------------- accessibility


def test_axe_finds_no_serious_accessibility_violations(
    watched: Watched, kb: LiveServer, pytestconfig: pytest.Config, tmp_path: Path
) -> None:
    store = getattr(pytestconfig, "cache", None)  # absent under -p no:cacheprovider
    cache = store.mkdir("axe-core") if store is not None else tmp_path / "axe-core"
    axe = axe_script(cache)
    if axe is None:  # test_labels_names_and_contrast_meet_wcag_aa still checks the essentials
        pytest.skip("axe-core could not be fetched from the npm registry (npm pack)")
    page = open_page(watched, kb)
    watched.ask(LINUX)
    watched.wait_until_answered()

    audits: dict[str, dict[str, Any]] = {}
    for scheme in ("light", "dark"):
        page.emulate_media(color_scheme=scheme)
        audits[scheme] = run_axe(page, axe)
    page.route("**/ask", lambda route: route.fulfill(status=429, headers={"Retry-After": "5"}, body="{}"))
    watched.ask(LINUX)
    watched.wait_until_answered()
    audits["rate limited"] = run_axe(page, axe)

    serious = {
        state: [v for v in audit["violations"] if v["impact"] in ("serious", "critical")]
        for state, audit in audits.items()
    }
    assert serious == {state: [] for state in audits}, json.dumps(serious, indent=1)
    assert all(audit["shadow_checks"] > 20 for audit in audits.values())  # it did look inside


def _luminance(rgb: tuple[float, ...]) -> float:
    def linear(channel: float) -> float:
        c = channel / 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (linear(c) for c in rgb[:3])
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def _contrast(foreground: str, background: str) -> float:
    fg, bg = (tuple(float(x) for x in re.findall(r"[\d.]+", color)) for color in (foreground, background))
    lighter, darker = sorted((_luminance(fg), _luminance(bg)), reverse=True)
    return (lighter + 0.05) / (darker + 0.05)


def test_labels_names_and_contrast_meet_wcag_aa(watched: Watched, kb: LiveServer) -> None:
    """The essentials axe checks, computed here from what the browser rendered: every control
    has a label or a name, the live regions are declared, and every piece of text (placeholder
    included) contrasts at WCAG AA with the background it is drawn on, in light and dark."""
    page = open_page(watched, kb)
    watched.ask(LINUX)
    watched.wait_until_answered()
    collect = """() => {
        const root = document.querySelector('kb-ask').shadowRoot;
        const background = el => {
            for (let node = el; node; node = node.parentElement || node.getRootNode().host) {
                const bg = getComputedStyle(node).backgroundColor;
                if (bg !== 'rgba(0, 0, 0, 0)' && bg !== 'transparent') return bg;
            }
            return getComputedStyle(document.documentElement).backgroundColor;
        };
        const texts = [...root.querySelectorAll('*')].filter(el =>
            el.checkVisibility() && !el.disabled
            && [...el.childNodes].some(n => n.nodeType === 3 && n.textContent.trim()));
        const style = el => getComputedStyle(el);
        const textarea = root.querySelector('textarea');
        return {
            texts: texts.map(el => ({
                what: el.tagName + '.' + el.className + ': ' + el.textContent.slice(0, 30),
                color: style(el).color, background: background(el),
                large: parseFloat(style(el).fontSize) >= 24
                    || (parseFloat(style(el).fontSize) >= 18.66 && parseInt(style(el).fontWeight) >= 700),
            })).concat([{what: 'placeholder', color: getComputedStyle(textarea, '::placeholder').color,
                         background: background(textarea), large: false}]),
            unlabelled: [...root.querySelectorAll('textarea, input, select')]
                .filter(el => !el.labels.length && !el.getAttribute('aria-label')).length,
            unnamed: [...root.querySelectorAll('button, a')]
                .filter(el => !(el.getAttribute('aria-label') || el.textContent).trim()).length,
            live: [root.querySelector('.answer').getAttribute('aria-live'),
                   root.querySelector('.status').getAttribute('role'),
                   root.querySelector('.notice').getAttribute('role')],
        };
    }"""
    for scheme in ("light", "dark"):
        page.emulate_media(color_scheme=scheme)
        found = page.evaluate(collect)

        assert found["unlabelled"] == 0 and found["unnamed"] == 0
        assert found["live"] == ["polite", "status", "alert"]
        assert len(found["texts"]) > 10
        low = [
            (text["what"], round(ratio, 2))
            for text in found["texts"]
            if (ratio := _contrast(text["color"], text["background"])) < (3.0 if text["large"] else 4.5)
        ]
        assert low == [], (scheme, low)
