"""Word (``.docx``) and PowerPoint (``.pptx``) files as ``LoadedDocument``s.

python-docx and python-pptx open the package (zip, content types, relationships, styles); the text
is read from the parts' XML so that nothing the reader sees is lost to a wrapper the libraries do
not model (tracked insertions, content controls, fields, hyperlinks).

Choices worth knowing:

* Word: paragraphs styled ``Title`` and ``Heading 1``..``Heading 9`` (or a style based on one, or an
  explicit outline level) are headings and build the heading path; ``Title`` sits above
  ``Heading 1``. Numbered and bulleted paragraphs become ``- `` lines of one paragraph, indented by
  list level. Table rows become lines of `` | ``-joined cells, one paragraph per table, the way the
  HTML loader renders tables. Tracked deletions, the table of contents, text boxes, headers,
  footers, footnotes and comments are left out. ``page`` is None: a .docx has no pages until a word
  processor lays it out.
* PowerPoint: one section per slide with text, ``page`` is the 1-based slide number (hidden slides
  included) and the slide title is the heading. Every shape's text is read in the slide's reading
  order (the shape order, which is what screen readers follow), including grouped shapes, tables
  (rows as `` | `` lines) and chart titles; slide-number, date and footer placeholders are chrome
  and dropped. Body placeholders hold bullets, so their paragraphs become ``- `` lines. Speaker
  notes become a section of their own under the slide's heading path plus ``Speaker notes``.
* Title: the first ``Title``-styled paragraph (Word) or the first slide's title (PowerPoint), else
  the file's core properties title, else the file stem. The visible title comes first because core
  properties are often left over from a template.
* Failures: an encrypted file, an old binary .doc/.ppt under the new suffix, a file that is not a
  zip, a truncated zip, a zip without the document part and anything a library raises become a
  ``LoadError`` with the reason.
"""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple, Protocol, TypeVar

import docx
import pptx
from docx.document import Document as DocxDocument
from docx.enum.style import WD_STYLE_TYPE
from docx.oxml.ns import qn
from docx.styles.style import ParagraphStyle
from pptx.enum.shapes import PP_PLACEHOLDER
from pptx.shapes.autoshape import Shape
from pptx.shapes.base import BaseShape
from pptx.shapes.graphfrm import GraphicFrame
from pptx.shapes.group import GroupShape
from pptx.slide import Slide
from pptx.text.text import TextFrame

from ingest.documents import LoadedDocument, Section
from ingest.loaders import LoadError

__all__ = ["load_docx", "load_pptx"]

# Declared (central directory) sizes bound what the libraries read into memory, so a zip bomb is
# refused before anything is inflated; real documents stay far below this.
_MAX_UNPACKED_BYTES = 512 * 1024 * 1024

_OLE2_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
# Office stores a password-protected .docx/.pptx as an OLE2 file holding this stream.
_ENCRYPTED_STREAM = "EncryptedPackage".encode("utf-16-le")
_SPACES = re.compile(r"\s+")
_PACKAGE_KINDS = (
    ("wordprocessingml", "a Word document"),
    ("presentationml", "a PowerPoint presentation"),
    ("spreadsheetml", "an Excel workbook"),
    ("ms-word", "a Word document"),
    ("ms-powerpoint", "a PowerPoint presentation"),
    ("ms-excel", "an Excel workbook"),
)

_MC_FALLBACK = "{http://schemas.openxmlformats.org/markup-compatibility/2006}Fallback"
_W_T, _W_TAB, _W_BR, _W_CR = qn("w:t"), qn("w:tab"), qn("w:br"), qn("w:cr")
_W_NO_BREAK_HYPHEN = qn("w:noBreakHyphen")
_W_P, _W_TBL, _W_TR, _W_TC = qn("w:p"), qn("w:tbl"), qn("w:tr"), qn("w:tc")
_W_SDT, _W_SDT_CONTENT, _W_CUSTOM_XML = qn("w:sdt"), qn("w:sdtContent"), qn("w:customXml")
_W_VAL = qn("w:val")
_W_P_PR, _W_P_STYLE, _W_OUTLINE = qn("w:pPr"), qn("w:pStyle"), qn("w:outlineLvl")
_W_NUM_PR, _W_NUM_ID, _W_ILVL = qn("w:numPr"), qn("w:numId"), qn("w:ilvl")
_W_SDT_PR, _W_DOC_PART_OBJ, _W_DOC_PART_GALLERY = qn("w:sdtPr"), qn("w:docPartObj"), qn("w:docPartGallery")
_W_V_MERGE = qn("w:vMerge")
_W_TC_PR, _W_TR_PR, _W_GRID_SPAN, _W_GRID_BEFORE = (
    qn("w:tcPr"),
    qn("w:trPr"),
    qn("w:gridSpan"),
    qn("w:gridBefore"),
)
_BODY_TEXT_OUTLINE = 9  # outline level 9 is Word's "body text", not a heading
# Subtrees whose text is not part of the paragraph as read: deleted or moved-away revisions, text
# boxes anchored in the paragraph, and the fallback copy of content given in two renderings.
_W_SKIPPED = frozenset({qn("w:del"), qn("w:moveFrom"), qn("w:txbxContent"), _MC_FALLBACK})
_WORD_HEADING = re.compile(r"heading ([1-9])")
_WORD_TOC_STYLE = re.compile(r"toc (?:[1-9]|heading)")
_TITLE_LEVEL = 0

_BULLET_PLACEHOLDERS = frozenset(
    {PP_PLACEHOLDER.BODY, PP_PLACEHOLDER.OBJECT, PP_PLACEHOLDER.VERTICAL_BODY, PP_PLACEHOLDER.VERTICAL_OBJECT}
)
_CHROME_PLACEHOLDERS = frozenset(
    {PP_PLACEHOLDER.DATE, PP_PLACEHOLDER.FOOTER, PP_PLACEHOLDER.HEADER, PP_PLACEHOLDER.SLIDE_NUMBER}
)
_NOTES_HEADING = "Speaker notes"

_Opened = TypeVar("_Opened")


class _Xml(Protocol):
    """The part of an lxml element this module reads (lxml ships no type information)."""

    @property
    def tag(self) -> str: ...

    @property
    def text(self) -> str | None: ...

    def get(self, key: str) -> str | None: ...

    def find(self, path: str) -> _Xml | None: ...

    def __iter__(self) -> Iterator[_Xml]: ...


def load_docx(path: Path, data: bytes) -> LoadedDocument:
    """Parse a Word document. Raises ``LoadError`` when the file is not a readable .docx."""
    document = _open(data, docx.Document, "Word document", ".docx", ".doc")
    try:
        title, sections = _WordReader(document).read()
        core_title = _collapse(document.core_properties.title or "")
    except Exception as exc:  # a library or reader failure on one odd file must not abort a run
        raise LoadError(f"corrupt Word document: {type(exc).__name__}: {exc}") from exc
    return LoadedDocument(title=title or core_title or path.stem, format="docx", sections=sections)


def load_pptx(path: Path, data: bytes) -> LoadedDocument:
    """Parse a PowerPoint presentation. Raises ``LoadError`` when the file is not a readable .pptx."""
    presentation = _open(data, pptx.Presentation, "PowerPoint file", ".pptx", ".ppt")
    try:
        sections: list[Section] = []
        first_title = ""
        for number, slide in enumerate(presentation.slides, 1):
            title, slide_sections = _read_slide(slide, number)
            if number == 1:
                first_title = title
            sections.extend(slide_sections)
        core_title = _collapse(presentation.core_properties.title or "")
    except Exception as exc:  # a library or reader failure on one odd file must not abort a run
        raise LoadError(f"corrupt PowerPoint file: {type(exc).__name__}: {exc}") from exc
    title = first_title or core_title or path.stem
    return LoadedDocument(title=title, format="pptx", sections=tuple(sections))


# --- the package -------------------------------------------------------------------------------


def _open(
    data: bytes, opener: Callable[[io.BytesIO], _Opened], kind: str, suffix: str, legacy: str
) -> _Opened:
    """Open ``data`` with ``opener`` after the checks that give a damaged file a precise reason."""
    if data.startswith(_OLE2_MAGIC):
        if _ENCRYPTED_STREAM in data:
            raise LoadError(f"encrypted {kind}: protected with a password")
        raise LoadError(f"not a {suffix} file: the old binary {legacy} format; save it as {suffix}")
    if not zipfile.is_zipfile(io.BytesIO(data)):
        if data.startswith(b"PK\x03\x04"):
            raise LoadError(f"corrupt {kind}: truncated or damaged zip archive")
        raise LoadError(f"corrupt {kind}: not a zip archive")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            unpacked = sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise LoadError(f"corrupt {kind}: damaged zip archive: {exc}") from exc
    if unpacked > _MAX_UNPACKED_BYTES:
        raise LoadError(f"{kind} too large: {unpacked} bytes unpacked, the limit is {_MAX_UNPACKED_BYTES}")
    try:
        return opener(io.BytesIO(data))
    except KeyError as exc:  # the libraries raise KeyError for a part or relationship not found
        missing = exc.args[0] if exc.args else ""
        raise LoadError(f"corrupt {kind}: a required part is missing ({missing})") from exc
    except ValueError as exc:  # "... is not a Word file, content type is ..."
        content_type = str(exc).rpartition("content type is ")[2].strip("'")
        if content_type != str(exc):
            held = next((name for key, name in _PACKAGE_KINDS if key in content_type), "another package")
            raise LoadError(f"not a {suffix} file: it holds {held} ({content_type})") from exc
        raise LoadError(f"corrupt {kind}: {exc}") from exc
    except Exception as exc:
        raise LoadError(f"corrupt {kind}: {type(exc).__name__}: {exc}") from exc


# --- Word --------------------------------------------------------------------------------------


class _StyleTraits(NamedTuple):
    """What a paragraph style means for reading: heading level, list item, table of contents."""

    heading: int | None
    list_level: int | None
    toc: bool


class _WordReader:
    """Walks a document body into sections: headings open a path, lists and tables are blocks."""

    def __init__(self, document: DocxDocument) -> None:
        self._document = document
        self._styles = {
            style.style_id: style
            for style in document.styles
            if isinstance(style, ParagraphStyle) and style.type == WD_STYLE_TYPE.PARAGRAPH
        }
        default = document.styles.default(WD_STYLE_TYPE.PARAGRAPH)
        self._default = default if isinstance(default, ParagraphStyle) else None
        self._traits: dict[str | None, _StyleTraits] = {}
        self._title = ""
        self._stack: list[tuple[int, str]] = []
        self._paragraphs: list[str] = []
        self._list: list[str] = []
        self._sections: list[Section] = []

    def read(self) -> tuple[str, tuple[Section, ...]]:
        body: _Xml = self._document.element.body
        for block in _children(body, (_W_P, _W_TBL)):
            if block.tag == _W_TBL:
                if rows := "\n".join(_word_table_rows(block)):
                    self._end_list()
                    self._paragraphs.append(rows)
            else:
                self._paragraph(block)
        self._flush()
        return self._title, tuple(self._sections)

    def _paragraph(self, p: _Xml) -> None:
        properties = p.find(_W_P_PR)
        traits = self._style_traits(_val(properties, _W_P_STYLE))
        if traits.toc:
            return
        level = _outline_level(properties)
        if level is None:
            level = traits.heading
        text = _word_text(p)
        if level is not None:
            self._heading(level, _collapse(text))
            return
        list_level = _list_level(properties, traits)
        if list_level is None:
            if body := _clean_lines(text):  # an empty spacer paragraph does not end a list
                self._end_list()
                self._paragraphs.append(body)
        elif line := _collapse(text):
            self._list.append("  " * list_level + "- " + line)

    def _heading(self, level: int, text: str) -> None:
        if not text:
            return  # an empty heading (a spacer line in a heading style) must not reset the path
        if level == _TITLE_LEVEL and not self._title:
            self._title = text
        self._flush()
        while self._stack and self._stack[-1][0] >= level:
            self._stack.pop()
        self._stack.append((level, text))

    def _end_list(self) -> None:
        if self._list:
            self._paragraphs.append("\n".join(self._list))
            self._list = []

    def _flush(self) -> None:
        self._end_list()
        if self._paragraphs:
            path = tuple(text for _, text in self._stack)
            self._sections.append(Section(heading_path=path, text="\n\n".join(self._paragraphs)))
        self._paragraphs = []

    def _style_traits(self, style_id: str | None) -> _StyleTraits:
        if style_id not in self._traits:
            self._traits[style_id] = self._resolve(self._styles.get(style_id or "", self._default))
        return self._traits[style_id]

    def _resolve(self, style: ParagraphStyle | None) -> _StyleTraits:
        """Walk the ``basedOn`` chain: the nearest style that says what it is decides."""
        heading: int | None = None
        list_level: int | None = None
        toc = False
        seen: set[str] = set()
        while style is not None and style.style_id not in seen:
            seen.add(style.style_id)
            name = (style.name or "").lower()
            properties = style.element.find(_W_P_PR)
            toc = toc or bool(_WORD_TOC_STYLE.fullmatch(name))
            if heading is None and name == "title":
                heading = _TITLE_LEVEL
            elif heading is None and (match := _WORD_HEADING.fullmatch(name)):
                heading = int(match.group(1))
            elif heading is None:
                heading = _outline_level(properties)
            numbering = _numbering(properties)
            if list_level is None and numbering is not None and _val(numbering, _W_NUM_ID) != "0":
                digits = name.rpartition(" ")[2]
                list_level = int(digits) - 1 if digits.isdigit() else 0
            base = style.base_style
            style = base if isinstance(base, ParagraphStyle) else None
        return _StyleTraits(heading, list_level, toc)


def _val(properties: _Xml | None, tag: str) -> str | None:
    element = properties.find(tag) if properties is not None else None
    return element.get(_W_VAL) if element is not None else None


def _outline_level(properties: _Xml | None) -> int | None:
    value = _val(properties, _W_OUTLINE)
    if value is None or not value.isdigit() or int(value) >= _BODY_TEXT_OUTLINE:
        return None
    return int(value) + 1


def _numbering(properties: _Xml | None) -> _Xml | None:
    return properties.find(_W_NUM_PR) if properties is not None else None


def _list_level(properties: _Xml | None, traits: _StyleTraits) -> int | None:
    """The paragraph's list level (0 = outermost), or None when it is not a list item."""
    numbering = _numbering(properties)
    if numbering is None:
        return traits.list_level
    if _val(numbering, _W_NUM_ID) == "0":
        return None  # numId 0 removes the numbering the paragraph's style would give it
    level = _val(numbering, _W_ILVL)
    return int(level) if level is not None and level.isdigit() else (traits.list_level or 0)


def _children(element: _Xml, tags: tuple[str, ...]) -> Iterator[_Xml]:
    """Children with one of ``tags``, looking through content controls and custom XML wrappers."""
    for child in element:
        if child.tag in tags:
            yield child
        elif child.tag == _W_SDT:
            if _is_table_of_contents(child):
                continue  # a generated list of the headings, which are read where they stand
            content = child.find(_W_SDT_CONTENT)
            if content is not None:
                yield from _children(content, tags)
        elif child.tag == _W_CUSTOM_XML:
            yield from _children(child, tags)


def _is_table_of_contents(sdt: _Xml) -> bool:
    properties = sdt.find(_W_SDT_PR)
    part = properties.find(_W_DOC_PART_OBJ) if properties is not None else None
    gallery = _val(part, _W_DOC_PART_GALLERY) or ""
    return gallery.lower() == "table of contents"


def _word_text(p: _Xml) -> str:
    """The paragraph's text as displayed: runs, hyperlinks, insertions, field results, breaks."""
    parts: list[str] = []
    stack = list(p)
    stack.reverse()
    while stack:
        node = stack.pop()
        tag = node.tag
        if tag == _W_T:
            parts.append(node.text or "")
        elif tag == _W_TAB:
            parts.append("\t")
        elif tag in (_W_BR, _W_CR):
            parts.append("\n")
        elif tag == _W_NO_BREAK_HYPHEN:
            parts.append("-")
        elif tag not in _W_SKIPPED and tag != _W_P_PR:
            children = list(node)
            children.reverse()
            stack.extend(children)
    return "".join(parts)


def _word_table_rows(table: _Xml) -> Iterator[str]:
    """One line per row; a horizontally merged cell is one cell, a vertically merged one repeats
    its text in every row it spans so each line stands on its own."""
    above: dict[int, str] = {}  # grid column -> text of the cell above, for vertical merges
    for row in _children(table, (_W_TR,)):
        column = _int_val(row.find(_W_TR_PR), _W_GRID_BEFORE, 0)
        current: dict[int, str] = {}
        for cell in _children(row, (_W_TC,)):
            properties = cell.find(_W_TC_PR)
            merge = properties.find(_W_V_MERGE) if properties is not None else None
            continued = merge is not None and merge.get(_W_VAL) != "restart"
            current[column] = above.get(column, "") if continued else _word_cell_text(cell)
            column += max(1, _int_val(properties, _W_GRID_SPAN, 1))
        above = current
        line = " | ".join(current.values())
        if line.replace("|", "").strip():
            yield line


def _int_val(properties: _Xml | None, tag: str, default: int) -> int:
    value = _val(properties, tag)
    return int(value) if value is not None and value.isdigit() else default


def _word_cell_text(cell: _Xml) -> str:
    texts: list[str] = []
    for block in _children(cell, (_W_P, _W_TBL)):
        if block.tag == _W_TBL:
            texts.append("; ".join(_word_table_rows(block)))
        else:
            texts.append(_word_text(block))
    return _collapse(" ".join(texts))


# --- PowerPoint --------------------------------------------------------------------------------


def _read_slide(slide: Slide, number: int) -> tuple[str, list[Section]]:
    """The slide's title and its sections: the slide's text, then its speaker notes."""
    title_shape = slide.shapes.title
    title = _collapse(title_shape.text_frame.text) if title_shape is not None else ""
    path = (title,) if title else ()
    blocks = [
        block
        for shape in slide.shapes
        if title_shape is None or shape.shape_id != title_shape.shape_id
        for block in _shape_blocks(shape)
    ]
    sections = [Section(heading_path=path, text="\n\n".join(blocks), page=number)] if blocks else []
    if notes := _notes_blocks(slide):
        sections.append(Section(heading_path=(*path, _NOTES_HEADING), text="\n\n".join(notes), page=number))
    return title, sections


def _notes_blocks(slide: Slide) -> list[str]:
    if not slide.has_notes_slide:  # asking for the notes slide would create an empty one
        return []
    frame = slide.notes_slide.notes_text_frame
    return list(_frame_blocks(frame, bullets=False)) if frame is not None else []


def _shape_blocks(shape: BaseShape) -> Iterator[str]:
    """The paragraphs of one shape: its text frame, table rows, chart title, group members."""
    if isinstance(shape, GroupShape):
        for member in shape.shapes:
            yield from _shape_blocks(member)
        return
    bullets = False
    if shape.is_placeholder:
        kind = shape.placeholder_format.type
        if kind in _CHROME_PLACEHOLDERS:
            return
        bullets = kind in _BULLET_PLACEHOLDERS
    if isinstance(shape, GraphicFrame):
        if shape.has_table:
            rows = _slide_table_rows(shape)
            if rows:
                yield "\n".join(rows)
        elif shape.has_chart and shape.chart.has_title:
            yield from _frame_blocks(shape.chart.chart_title.text_frame, bullets=False)
        return
    if isinstance(shape, Shape):  # autoshapes, text boxes and text placeholders
        yield from _frame_blocks(shape.text_frame, bullets=bullets)


def _frame_blocks(frame: TextFrame, *, bullets: bool) -> Iterator[str]:
    """Paragraphs of a text frame; bullets (or any indented paragraph) make one list of lines."""
    paragraphs = [(paragraph.level, _collapse(paragraph.text)) for paragraph in frame.paragraphs]
    paragraphs = [(level, text) for level, text in paragraphs if text]
    if bullets or any(level for level, _ in paragraphs):
        if paragraphs:
            yield "\n".join("  " * level + "- " + text for level, text in paragraphs)
        return
    yield from (text for _, text in paragraphs)


def _slide_table_rows(frame: GraphicFrame) -> list[str]:
    rows: list[str] = []
    for row in frame.table.rows:
        # The parts of a merged cell other than its origin repeat nothing of their own.
        line = " | ".join(_collapse(cell.text) for cell in row.cells if not cell.is_spanned)
        if line.replace("|", "").strip():
            rows.append(line)
    return rows


# --- text --------------------------------------------------------------------------------------


def _clean_lines(text: str) -> str:
    lines = (_collapse(line) for line in text.split("\n"))
    return "\n".join(line for line in lines if line)


def _collapse(text: str) -> str:
    return _SPACES.sub(" ", text).strip()
