"""Turn source files (Markdown, plain text, HTML, PDF, Word, PowerPoint) into ``LoadedDocument``s.

Every failure caused by a file's content or access is a ``LoadError`` whose message is the human
reason, so the ingestion runner can report the file and move on to the next one.

Choices worth knowing:

* Title: Markdown uses front matter ``title:``, else the first H1; HTML uses ``<title>``, else the
  first ``<h1>``; PDF uses the metadata title; plain text uses its first non-empty line when that
  is at most 120 characters. Otherwise the file stem.
* Text before the first heading gets ``heading_path == ()``; the title is a separate field and is
  not repeated in every heading path.
* Headings with no body text below them produce no section of their own; they still appear in the
  heading paths of their subsections.
* HTML drops scripts, styles, navigation and page chrome (``header``/``footer``/``aside``; a
  ``header`` inside ``article``/``main`` is kept, it holds the article's heading). Markdown is
  rendered with markdown-it and read by the same HTML walker. List items and table rows become
  lines of one paragraph; code blocks keep their line breaks.
* PDF: one section per page with text (``page`` is the 1-based page number); an owner-password-only
  PDF (empty user password) is read, any other encryption is a ``LoadError``.
"""

from __future__ import annotations

import codecs
import io
import logging
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import MappingProxyType

from bs4 import BeautifulSoup
from bs4.element import NavigableString, PageElement, PreformattedString, Tag
from markdown_it import MarkdownIt
from pypdf import PdfReader

from app.errors import KBError
from ingest.documents import LoadedDocument, Section

__all__ = ["SUPPORTED_FORMATS", "LoadError", "detect_format", "load_document"]

SUPPORTED_FORMATS: Mapping[str, str] = MappingProxyType(
    {".md": "markdown", ".markdown": "markdown", ".txt": "text", ".text": "text"}
    | {".html": "html", ".htm": "html", ".pdf": "pdf", ".docx": "docx", ".pptx": "pptx"}
)

# pypdf logs a warning for every robustness fix it applies to a damaged file; during ingestion that
# is noise (a file either loads or becomes a LoadError), so only its errors are let through.
logging.getLogger("pypdf").setLevel(logging.ERROR)

_MAX_TEXT_TITLE = 120
_CONTROL_SHARE = 0.10  # more control characters than this and it is not prose
_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")
_BLANK_LINES = re.compile(r"\n(?:[ \t]*\n)+")
_SPACES = re.compile(r"\s+")
_FRONT_MATTER_END = re.compile(r"^(?:---|\.\.\.)[ \t]*$", re.MULTILINE)
_FRONT_MATTER_LINE = re.compile(r"[\w-]+[ \t]*:|[ \t#-]|$")
_FRONT_MATTER_TITLE = re.compile(r"^title:[ \t]*(.+?)[ \t]*$", re.MULTILINE)

_HTML_DROPPED = frozenset(
    "script style nav noscript template svg iframe object canvas head title aside header footer".split()
)
_HTML_HEADINGS = {f"h{level}": level for level in range(1, 7)}
_HTML_BLOCKS = frozenset(
    "p div section article main blockquote figure figcaption dl dt dd address details summary form"
    " fieldset hr body html center li".split()
)


class LoadError(KBError):
    """A file could not be turned into text; the message says why."""

    code = "load_error"


def detect_format(path: Path) -> str | None:
    """The format of ``path`` from its suffix (case-insensitive), or None when unsupported."""
    return SUPPORTED_FORMATS.get(path.suffix.lower())


def load_document(path: Path, data: bytes | None = None) -> LoadedDocument:
    """Parse ``path`` (or ``data``, its already-read bytes). Raises ``LoadError`` on any failure."""
    fmt = detect_format(path)
    if fmt is None:
        raise LoadError(f"unsupported file type: {path.suffix or '(no suffix)'}")
    if data is None:
        data = _read(path)
    if not data.strip():
        return LoadedDocument(title=path.stem, format=fmt, sections=())
    if fmt == "pdf":
        return _load_pdf(path, data)
    if fmt in ("docx", "pptx"):
        # Imported on first use: ingest.office needs LoadError from this module, and python-pptx
        # is slow to import for a run without Office files. Its loaders are documented there.
        from ingest.office import load_docx, load_pptx

        return load_docx(path, data) if fmt == "docx" else load_pptx(path, data)
    text = _decode(data)
    try:
        if fmt == "markdown":
            return _load_markdown(path, text)
        if fmt == "html":
            return _load_html(path, text)
        return _load_text(path, text)
    except LoadError:
        raise
    except Exception as exc:  # a parser bug on one odd file must not abort a whole ingestion run
        raise LoadError(f"cannot parse {fmt}: {type(exc).__name__}: {exc}") from exc


_READ_ERRORS = {
    PermissionError: "permission denied",
    FileNotFoundError: "file not found",
    IsADirectoryError: "is a directory",
}


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        reason = _READ_ERRORS.get(type(exc), f"cannot read file: {exc.strerror or exc}")
        raise LoadError(reason) from exc


def _decode(data: bytes) -> str:
    """UTF-8 (BOM optional; UTF-16 only with a BOM) with newlines normalised to ``\\n``."""
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        encoding = "utf-16"  # a BOM is unambiguous, and Windows tools still write these
    elif b"\x00" in data:
        raise LoadError("binary content in a text file")
    else:
        encoding = "utf-8-sig"
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise LoadError("not valid UTF-8 text") from exc
    if "\x00" in text or len(_CONTROL_CHARS.findall(text)) > _CONTROL_SHARE * len(text):
        raise LoadError("binary content in a text file")
    return text.replace("\r\n", "\n").replace("\r", "\n")


class _SectionBuilder:
    """Collects paragraphs under a heading stack: a heading of level n closes every level >= n."""

    def __init__(self) -> None:
        self._stack: list[tuple[int, str]] = []
        self._paragraphs: list[str] = []
        self._sections: list[Section] = []

    def heading(self, level: int, text: str) -> None:
        text = _collapse(text)
        if not text:
            return  # an empty heading (icon, anchor) must not reset the path
        self._flush()
        while self._stack and self._stack[-1][0] >= level:
            self._stack.pop()
        self._stack.append((level, text))

    def paragraph(self, text: str) -> None:
        text = text.strip("\n")
        if text.strip():
            self._paragraphs.append(text)

    def sections(self) -> tuple[Section, ...]:
        self._flush()
        return tuple(self._sections)

    def _flush(self) -> None:
        if self._paragraphs:
            path = tuple(text for _, text in self._stack)
            self._sections.append(Section(heading_path=path, text="\n\n".join(self._paragraphs)))
        self._paragraphs = []


def _load_text(path: Path, text: str) -> LoadedDocument:
    body = _BLANK_LINES.sub("\n\n", "\n".join(line.rstrip() for line in text.split("\n"))).strip()
    first_line = body.split("\n", 1)[0].strip()
    title = first_line if 0 < len(first_line) <= _MAX_TEXT_TITLE else path.stem
    sections = (Section(text=body),) if body else ()
    return LoadedDocument(title=title, format="text", sections=sections)


def _split_front_matter(text: str) -> tuple[str | None, str]:
    """Remove a leading YAML ``---`` block; return its ``title:`` (if any) and the rest."""
    if not re.match(r"---[ \t]*\n", text):
        return None, text
    end = _FRONT_MATTER_END.search(text, pos=text.index("\n") + 1)
    if end is None:
        return None, text  # an unclosed block is a thematic break, not front matter
    block = text[text.index("\n") + 1 : end.start()]
    if not all(_FRONT_MATTER_LINE.match(line) for line in block.split("\n")):
        return None, text  # a thematic break over prose, not a YAML block
    title_match = _FRONT_MATTER_TITLE.search(block)
    title = title_match.group(1).strip("'\"").strip() if title_match else None
    return title or None, text[end.end() :]


def _load_markdown(path: Path, text: str) -> LoadedDocument:
    # Rendering to HTML and reading that back gives Markdown exactly the HTML rules (headings,
    # lists, tables, code blocks, inline HTML) instead of a second, subtly different walker.
    front_title, body = _split_front_matter(text)
    html = MarkdownIt("commonmark").enable(["table", "strikethrough"]).render(body)
    rendered = _load_html(path, html)
    title = front_title or rendered.title
    return LoadedDocument(title=title, format="markdown", sections=rendered.sections)


def _load_html(path: Path, text: str) -> LoadedDocument:
    soup = BeautifulSoup(text, "html.parser")
    title = _collapse(soup.title.get_text(" ")) if soup.title else ""
    if not title and (h1 := soup.find("h1")):
        title = _collapse(h1.get_text(" "))
    for element in soup.find_all(_HTML_DROPPED):
        if element.decomposed:
            continue  # already gone with an ancestor
        if element.name == "header" and element.find_parent(("article", "main")):
            continue  # an article's own header holds its heading, not site boilerplate
        element.decompose()
    builder = _SectionBuilder()
    _HtmlWalker(builder).walk(soup)
    return LoadedDocument(title=title or path.stem, format="html", sections=builder.sections())


class _HtmlWalker:
    """Depth-first walk turning block elements into paragraphs and list items / rows into lines."""

    def __init__(self, builder: _SectionBuilder) -> None:
        self._builder = builder
        self._inline: list[str] = []
        self._lines: list[str] = []
        self._list_depth = 0

    def walk(self, root: Tag) -> None:
        # An explicit stack: deeply nested pages must not hit the recursion limit.
        stack: list[tuple[PageElement, bool]] = [(root, True)]
        while stack:
            node, entering = stack.pop()
            if isinstance(node, NavigableString):
                if not isinstance(node, PreformattedString):  # comments, doctypes
                    self._inline.append(_SPACES.sub(" ", str(node)))
            elif isinstance(node, Tag):
                if not entering:
                    self._leave(node.name)
                elif self._enter(node):
                    stack.append((node, False))
                    stack.extend((child, True) for child in reversed(node.contents))

    def _enter(self, tag: Tag) -> bool:
        """Handle an opening tag; True when its children should be walked."""
        name = tag.name
        if name in _HTML_HEADINGS:
            self._flush()
            self._builder.heading(_HTML_HEADINGS[name], tag.get_text(" "))
            return False
        if name == "br":
            self._inline.append("\n")
            return False
        if name == "pre":
            self._flush()
            lines = [line.rstrip() for line in tag.get_text().split("\n")]
            self._emit("\n".join(lines).strip("\n"))
            return False
        if name == "table":
            self._flush()
            self._emit("\n".join(_table_rows(tag)))
            return False
        if name in ("ul", "ol"):
            self._flush()
            self._list_depth += 1
        elif name in _HTML_BLOCKS:
            self._flush()
        return True

    def _leave(self, name: str) -> None:
        if name in ("ul", "ol"):
            self._flush()
            self._list_depth -= 1
            if self._list_depth == 0 and self._lines:
                self._builder.paragraph("\n".join(self._lines))
                self._lines = []
        elif name in _HTML_BLOCKS:
            self._flush()

    def _flush(self) -> None:
        lines = (_collapse(line) for line in "".join(self._inline).split("\n"))
        self._inline = []
        text = "\n".join(line for line in lines if line)
        if not text:
            return
        if self._list_depth:
            self._lines.append("  " * (self._list_depth - 1) + "- " + text.replace("\n", " "))
        else:
            self._builder.paragraph(text)

    def _emit(self, block: str) -> None:
        if self._list_depth:
            self._lines.extend(line for line in block.split("\n") if line.strip())
        else:
            self._builder.paragraph(block)


def _table_rows(table: Tag) -> Iterator[str]:
    for row in table.find_all("tr"):
        if row.find_parent("table") is not table:
            continue  # a nested table's rows are not this table's
        cells = row.find_all(("td", "th"), recursive=False)
        line = " | ".join(_collapse(cell.get_text(" ")) for cell in cells)
        if line.replace("|", "").strip():
            yield line


def _load_pdf(path: Path, data: bytes) -> LoadedDocument:
    # pypdf raises many exception types (and sometimes plain ValueError/KeyError) for damaged
    # files; all of them mean the same thing to the user. A PDF encrypted with an empty user
    # password (owner-password-only, common for "no copying" PDFs) opens without one.
    try:
        reader = PdfReader(io.BytesIO(data))
        locked = reader.is_encrypted and not reader.decrypt("")
        if not locked:
            metadata = reader.metadata
            title = _collapse(str(metadata.title or "")) if metadata else ""
            pages = [_clean_pdf_text(page.extract_text() or "") for page in reader.pages]
    except Exception as exc:
        raise LoadError(f"corrupt or encrypted PDF: {type(exc).__name__}: {exc}") from exc
    if locked:
        raise LoadError("corrupt or encrypted PDF: encrypted with a password")
    sections = [Section(text=text, page=number) for number, text in enumerate(pages, 1) if text]
    if not sections:
        raise LoadError("PDF has no extractable text (scanned?)")
    return LoadedDocument(title=title or path.stem, format="pdf", sections=tuple(sections))


def _clean_pdf_text(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
    lines = (_collapse(line) for line in text.split("\n"))
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


def _collapse(text: str) -> str:
    return _SPACES.sub(" ", text).strip()
