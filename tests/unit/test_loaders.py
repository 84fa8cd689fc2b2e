"""Loaders turn Markdown, text, HTML and PDF files into titled sections, or fail with LoadError."""

from __future__ import annotations

import io
import logging
import os
from pathlib import Path

import pytest
from pypdf import PdfReader, PdfWriter

from ingest.documents import LoadedDocument
from ingest.loaders import SUPPORTED_FORMATS, LoadError, detect_format, load_document
from tests.data.make_pdf import build_pdf

pytestmark = pytest.mark.unit

MIXED = Path(__file__).parents[1] / "data" / "mixed"


def load(name: str, content: str | bytes) -> LoadedDocument:
    data = content.encode() if isinstance(content, str) else content
    return load_document(Path(name), data)


def paths_and_texts(document: LoadedDocument) -> list[tuple[tuple[str, ...], str]]:
    return [(section.heading_path, section.text) for section in document.sections]


# --- formats -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("a.md", "markdown"),
        ("a.markdown", "markdown"),
        ("README.MD", "markdown"),
        ("a.txt", "text"),
        ("a.text", "text"),
        ("a.html", "html"),
        ("INDEX.HTM", "html"),
        ("a.pdf", "pdf"),
        ("a.docx", "docx"),
        ("DECK.PPTX", "pptx"),
        ("old.doc", None),
        ("Makefile", None),
        ("archive.tar.gz", None),
    ],
)
def test_detect_format_goes_by_suffix_ignoring_case(name: str, expected: str | None) -> None:
    assert detect_format(Path(name)) == expected


def test_supported_formats_lists_every_suffix_detect_format_accepts() -> None:
    assert set(SUPPORTED_FORMATS.values()) == {"markdown", "text", "html", "pdf", "docx", "pptx"}
    for suffix, fmt in SUPPORTED_FORMATS.items():
        assert detect_format(Path("x" + suffix)) == fmt


def test_an_unsupported_suffix_is_a_load_error() -> None:
    with pytest.raises(LoadError, match="unsupported file type: .odt"):
        load("report.odt", b"PK\x03\x04")


# --- markdown ----------------------------------------------------------------------------------

NESTED_MD = """\
Intro before any heading.

# Guide

Guide body.

## Install

### Linux

Use apt.

### macOS

Use brew.

## Usage

Run it.
"""


def test_markdown_headings_build_nested_paths_and_a_new_h2_closes_the_old_h3() -> None:
    document = load("guide.md", NESTED_MD)

    assert paths_and_texts(document) == [
        ((), "Intro before any heading."),
        (("Guide",), "Guide body."),
        (("Guide", "Install", "Linux"), "Use apt."),
        (("Guide", "Install", "macOS"), "Use brew."),
        (("Guide", "Usage"), "Run it."),
    ]
    assert document.title == "Guide"
    assert document.format == "markdown"


def test_markdown_hash_lines_inside_a_code_fence_are_code_not_headings() -> None:
    document = load("setup.md", "# Setup\n\n```bash\n# install deps\npip install kb\n```\n")

    assert paths_and_texts(document) == [(("Setup",), "# install deps\npip install kb")]


def test_markdown_front_matter_is_stripped_and_its_title_wins() -> None:
    source = "---\ntitle: 'Runbook'\ntags: [ops]\n---\n# Heading One\n\nBody text.\n"
    document = load("runbook.md", source)

    assert document.title == "Runbook"
    assert paths_and_texts(document) == [(("Heading One",), "Body text.")]


def test_markdown_a_thematic_break_over_prose_is_not_front_matter() -> None:
    document = load("notes.md", "---\nJust a line of prose.\n\n---\n\nMore prose.\n")

    assert paths_and_texts(document) == [((), "Just a line of prose.\n\nMore prose.")]


def test_markdown_title_falls_back_to_the_file_stem_without_h1_or_front_matter() -> None:
    assert load("release-notes.md", "## Changes\n\nFixed things.\n").title == "release-notes"


def test_markdown_keeps_paragraphs_setext_headings_list_items_and_table_rows_as_lines() -> None:
    source = (
        "Title\n=====\n\nFirst paragraph\nwrapped in source.\n\nSecond paragraph.\n\n"
        "- alpha\n- beta\n  - nested\n\n| key | value |\n|-----|-------|\n| a | 1 |\n"
    )
    (section,) = load("doc.md", source).sections

    assert section.heading_path == ("Title",)
    assert section.text == (
        "First paragraph wrapped in source.\n\nSecond paragraph.\n\n"
        "- alpha\n- beta\n  - nested\n\nkey | value\na | 1"
    )


def test_markdown_drops_inline_markup_but_keeps_link_text() -> None:
    (section,) = load("a.md", "See **the [docs](http://x)** and `kb ingest`.").sections

    assert section.text == "See the docs and kb ingest."


# --- plain text --------------------------------------------------------------------------------


def test_text_is_one_section_titled_by_its_short_first_line_with_newlines_normalised() -> None:
    source = "\ufeffOn-call notes\r\n\r\n\r\nRestart the worker.\r\nThen check.\r\n"
    document = load("notes.txt", source)

    assert document.title == "On-call notes"
    assert paths_and_texts(document) == [((), "On-call notes\n\nRestart the worker.\nThen check.")]


def test_text_with_a_long_first_line_is_titled_by_the_file_stem() -> None:
    assert load("journal.txt", "word " * 40).title == "journal"


# --- HTML --------------------------------------------------------------------------------------

PAGE = """<!DOCTYPE html><html><head><title>Support   Policy</title>
<style>.x { color: red }</style><script>var tracking = "SCRIPT-TEXT";</script></head>
<body>
<header>Intranet home</header>
<nav><a href="/">Navigation link</a></nav>
<h1>Support</h1>
<p>We   answer
   tickets <b>fast</b>.</p>
<h2>Hours</h2>
<ul><li>Weekdays</li><li>No weekends</li></ul>
<pre>line one
    indented line</pre>
<noscript>Enable JavaScript</noscript>
<aside>Related links</aside>
<footer>Copyright</footer>
<!-- a comment -->
</body></html>"""


def test_html_drops_boilerplate_and_builds_sections_from_headings() -> None:
    document = load("page.html", PAGE)

    assert document.title == "Support Policy"
    assert paths_and_texts(document) == [
        (("Support",), "We answer tickets fast."),
        (("Support", "Hours"), "- Weekdays\n- No weekends\n\nline one\n    indented line"),
    ]


@pytest.mark.parametrize(
    "boilerplate",
    [
        "SCRIPT-TEXT",
        "color",
        "Navigation",
        "Intranet",
        "JavaScript",
        "Related",
        "Copyright",
        "comment",
    ],
)
def test_html_boilerplate_text_never_reaches_a_section(boilerplate: str) -> None:
    text = "\n".join(section.text for section in load("page.html", PAGE).sections)
    assert boilerplate not in text


def test_html_title_falls_back_to_first_h1_then_the_stem() -> None:
    assert load("a.html", "<h2>Sub</h2><h1>Main  Topic</h1><p>x</p>").title == "Main Topic"
    assert load("faq.html", "<p>no headings</p>").title == "faq"


def test_html_keeps_an_article_header_with_its_heading() -> None:
    source = "<body><header>Site</header><article><header><h1>Post</h1></header><p>Body.</p></article></body>"

    assert paths_and_texts(load("post.html", source)) == [(("Post",), "Body.")]


def test_html_table_rows_become_lines_of_cells() -> None:
    source = "<table><tr><th>Key</th><th>Value</th></tr><tr><td>a</td><td> 1 </td></tr></table>"

    assert paths_and_texts(load("t.html", source)) == [((), "Key | Value\na | 1")]


def test_html_nested_thousands_deep_still_loads() -> None:
    source = "<div>" * 5000 + "deep text" + "</div>" * 5000

    assert paths_and_texts(load("deep.html", source)) == [((), "deep text")]


# --- PDF ---------------------------------------------------------------------------------------


def test_pdf_gives_one_section_per_page_numbered_from_one_and_the_metadata_title() -> None:
    document = load_document(MIXED / "manual.pdf")

    assert document.format == "pdf"
    assert document.title == "Backup Manual"
    assert [section.page for section in document.sections] == [1, 2]
    assert all(section.heading_path == () for section in document.sections)
    assert "every night at 02:00 UTC" in document.sections[0].text
    assert "forty minutes" in document.sections[1].text


def test_pdf_skips_empty_pages_but_keeps_real_page_numbers() -> None:
    data = build_pdf([["First page text."], [], ["Third page text."]])
    document = load("scan-mix.pdf", data)

    assert [(section.page, section.text) for section in document.sections] == [
        (1, "First page text."),
        (3, "Third page text."),
    ]
    assert document.title == "scan-mix"


def test_pdf_without_any_text_is_a_load_error() -> None:
    with pytest.raises(LoadError, match=r"PDF has no extractable text \(scanned\?\)"):
        load("scan.pdf", build_pdf([[], []]))


def test_corrupt_pdf_is_a_load_error_and_logs_no_pypdf_warnings(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    with pytest.raises(LoadError, match="corrupt or encrypted PDF"):
        load_document(MIXED / "broken.pdf")
    assert not [record for record in caplog.records if record.name.startswith("pypdf")]


def encrypted(data: bytes, user_password: str) -> bytes:
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(data)))
    writer.encrypt(user_password, owner_password="owner", algorithm="RC4-128")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def test_password_protected_pdf_is_a_load_error() -> None:
    with pytest.raises(LoadError, match="corrupt or encrypted PDF: encrypted"):
        load("secret.pdf", encrypted(build_pdf([["Secret plans."]]), user_password="hunter2"))


def test_pdf_encrypted_with_an_empty_user_password_is_readable() -> None:
    document = load("locked-copying.pdf", encrypted(build_pdf([["Open text."]]), user_password=""))

    assert [section.text for section in document.sections] == ["Open text."]


# --- failures and edge cases -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "data", "reason"),
    [
        ("image.txt", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary content in a text file"),
        ("nul.md", b"hello\x00world", "binary content in a text file"),
        ("control.txt", bytes(range(1, 9)) * 20 + b"some text", "binary content in a text file"),
        ("latin1.txt", "caf\u00e9 cr\u00e8me".encode("latin-1"), "not valid UTF-8 text"),
        ("page.html", b"<p>\xff\xfe\xfa</p>", "not valid UTF-8 text"),
    ],
)
def test_undecodable_or_binary_text_files_are_load_errors(name: str, data: bytes, reason: str) -> None:
    with pytest.raises(LoadError) as raised:
        load(name, data)
    assert raised.value.message == reason
    assert raised.value.code == "load_error"


def test_utf16_with_a_byte_order_mark_is_decoded() -> None:
    document = load("windows.txt", "Notes from Notepad\r\nsecond line".encode("utf-16"))

    assert paths_and_texts(document) == [((), "Notes from Notepad\nsecond line")]


@pytest.mark.parametrize("name", ["empty.md", "empty.txt", "empty.html", "empty.pdf"])
@pytest.mark.parametrize("data", [b"", b"  \n\t\n"])
def test_an_empty_file_has_no_sections_and_is_not_an_error(name: str, data: bytes) -> None:
    document = load(name, data)

    assert document.sections == ()
    assert document.title == "empty"


def test_data_given_by_the_caller_is_used_instead_of_reading_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "never-written.md"

    assert load_document(missing, b"# From bytes\n\nbody").title == "From bytes"


def test_a_missing_file_is_a_load_error(tmp_path: Path) -> None:
    with pytest.raises(LoadError, match="file not found"):
        load_document(tmp_path / "gone.txt")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root can read any file")
def test_an_unreadable_file_is_a_load_error(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("classified")
    secret.chmod(0)
    try:
        with pytest.raises(LoadError, match="permission denied"):
            load_document(secret)
    finally:
        secret.chmod(0o600)


def test_the_mixed_fixture_folder_loads_every_file_but_the_broken_pdf() -> None:
    loaded = {}
    for path in sorted(MIXED.iterdir()):
        try:
            loaded[path.name] = load_document(path)
        except LoadError:
            loaded[path.name] = None

    assert loaded.pop("broken.pdf") is None
    assert {name: doc.format for name, doc in loaded.items()} == {
        "guide.md": "markdown",
        "manual.pdf": "pdf",
        "notes.txt": "text",
        "page.html": "html",
    }
    guide = loaded["guide.md"]
    assert max(len(section.heading_path) for section in guide.sections) >= 3
    assert all(section.heading_path[0] == guide.title for section in guide.sections)
