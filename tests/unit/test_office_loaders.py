"""Word and PowerPoint files become titled sections, or fail with a LoadError that says why.

Every file is built in the test with python-docx / python-pptx (raw XML only for what those
libraries cannot write: tracked changes and content controls).
"""

from __future__ import annotations

import io
import struct
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from docx import Document
from docx.document import Document as DocxDocument
from docx.enum.style import WD_STYLE_TYPE
from docx.oxml import parse_xml
from docx.oxml.ns import nsdecls
from docx.oxml.xmlchemy import BaseOxmlElement
from docx.table import Table as DocxTable
from pptx import Presentation
from pptx.enum.shapes import PP_PLACEHOLDER
from pptx.presentation import Presentation as PptxPresentation
from pptx.slide import Slide
from pptx.table import Table as PptxTable
from pptx.util import Inches

from ingest.documents import LoadedDocument
from ingest.loaders import LoadError, load_document

pytestmark = pytest.mark.unit

# Slide layouts of python-pptx's default template.
TITLE_SLIDE, TITLE_AND_CONTENT, TITLE_ONLY, BLANK = 0, 1, 5, 6


def docx_bytes(build: Callable[[DocxDocument], object], *, core_title: str = "") -> bytes:
    document = Document()
    build(document)
    document.core_properties.title = core_title
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def pptx_bytes(build: Callable[[PptxPresentation], object], *, core_title: str = "") -> bytes:
    presentation = Presentation()
    build(presentation)
    presentation.core_properties.title = core_title
    out = io.BytesIO()
    presentation.save(out)
    return out.getvalue()


def fill(table: DocxTable | PptxTable, rows: list[tuple[str, ...]]) -> None:
    for row, cells in enumerate(rows):
        for column, text in enumerate(cells):
            table.cell(row, column).text = text


def load(name: str, data: bytes) -> LoadedDocument:
    return load_document(Path(name), data)


def paths_and_texts(document: LoadedDocument) -> list[tuple[tuple[str, ...], str]]:
    return [(section.heading_path, section.text) for section in document.sections]


# --- Word --------------------------------------------------------------------------------------


def handbook(document: DocxDocument) -> None:
    document.add_paragraph("Onboarding Handbook", style="Title")
    document.add_paragraph("Welcome to the team.")
    document.add_heading("Accounts", level=1)
    document.add_paragraph("Every new hire gets a laptop on day one.")
    document.add_heading("Email", level=2)
    document.add_paragraph("IT creates the mailbox.")
    document.add_heading("Shared drives", level=3)
    document.add_paragraph("Ask your manager for access.")
    document.add_heading("Hardware", level=1)
    document.add_paragraph("Laptops are replaced every three years.")


def test_docx_title_and_heading_styles_build_nested_paths_and_a_new_heading_1_closes_the_rest() -> None:
    document = load("handbook.docx", docx_bytes(handbook))

    assert document.format == "docx"
    assert document.title == "Onboarding Handbook"
    assert paths_and_texts(document) == [
        (("Onboarding Handbook",), "Welcome to the team."),
        (("Onboarding Handbook", "Accounts"), "Every new hire gets a laptop on day one."),
        (("Onboarding Handbook", "Accounts", "Email"), "IT creates the mailbox."),
        (("Onboarding Handbook", "Accounts", "Email", "Shared drives"), "Ask your manager for access."),
        (("Onboarding Handbook", "Hardware"), "Laptops are replaced every three years."),
    ]
    assert all(section.page is None for section in document.sections)


def test_docx_a_heading_without_body_text_has_no_section_but_stays_in_the_path() -> None:
    def build(document: DocxDocument) -> None:
        document.add_heading("Guide", level=1)
        document.add_heading("Install", level=2)
        document.add_paragraph("Run the installer.")
        document.add_heading("Empty at the end", level=2)

    assert paths_and_texts(load("guide.docx", docx_bytes(build))) == [
        (("Guide", "Install"), "Run the installer.")
    ]


def test_docx_a_style_based_on_a_heading_is_a_heading_of_that_level() -> None:
    def build(document: DocxDocument) -> None:
        procedure = document.styles.add_style("Procedure", WD_STYLE_TYPE.PARAGRAPH)
        procedure.base_style = document.styles["Heading 2"]
        document.add_heading("Operations", level=1)
        document.add_paragraph("Restarting the worker", style="Procedure")
        document.add_paragraph("Drain the queue first.")

    assert paths_and_texts(load("ops.docx", docx_bytes(build))) == [
        (("Operations", "Restarting the worker"), "Drain the queue first.")
    ]


def test_docx_paragraphs_are_separate_and_a_line_break_keeps_its_line() -> None:
    def build(document: DocxDocument) -> None:
        document.add_paragraph("First   paragraph.")
        second = document.add_paragraph("Address line one")
        second.add_run().add_break()
        second.add_run("Address line two")

    (section,) = load("notes.docx", docx_bytes(build)).sections

    assert section.text == "First paragraph.\n\nAddress line one\nAddress line two"


def test_docx_list_items_become_indented_lines_of_one_paragraph() -> None:
    def build(document: DocxDocument) -> None:
        document.add_paragraph("Before you start:")
        document.add_paragraph("Install Python", style="List Bullet")
        document.add_paragraph("3.11 or newer", style="List Bullet 2")
        document.add_paragraph("")  # a spacer line inside the list
        document.add_paragraph("Create a virtualenv", style="List Number")
        document.add_paragraph("Then run the tests.")

    (section,) = load("setup.docx", docx_bytes(build)).sections

    assert section.text == (
        "Before you start:\n\n- Install Python\n  - 3.11 or newer\n- Create a virtualenv\n\nThen run the tests."
    )


def test_docx_table_rows_become_lines_of_cells_in_a_paragraph_of_their_own() -> None:
    def build(document: DocxDocument) -> None:
        document.add_heading("Owners", level=1)
        document.add_paragraph("Who to ask.")
        table = document.add_table(rows=3, cols=2)
        fill(table, [("Service", "Owner"), ("VPN", "Network team"), ("Wiki", "")])
        document.add_paragraph("Escalate after a day.")

    assert paths_and_texts(load("owners.docx", docx_bytes(build))) == [
        (("Owners",), "Who to ask.\n\nService | Owner\nVPN | Network team\nWiki | \n\nEscalate after a day.")
    ]


def test_docx_merged_cells_are_read_once_across_and_repeated_down() -> None:
    def build(document: DocxDocument) -> None:
        table = document.add_table(rows=3, cols=3)
        table.cell(0, 0).merge(table.cell(0, 2)).text = "Release plan"
        table.cell(1, 0).merge(table.cell(2, 0)).text = "Q3"
        table.cell(1, 1).text, table.cell(1, 2).text = "Search", "done"
        table.cell(2, 1).text, table.cell(2, 2).text = "Billing", "late"

    (section,) = load("plan.docx", docx_bytes(build)).sections

    assert section.text == "Release plan\nQ3 | Search | done\nQ3 | Billing | late"


def test_docx_a_nested_table_is_read_inside_its_cell() -> None:
    def build(document: DocxDocument) -> None:
        outer = document.add_table(rows=1, cols=2).rows[0].cells
        outer[0].text = "Limits"
        inner = outer[1].add_table(rows=2, cols=2)
        inner.cell(0, 0).text, inner.cell(0, 1).text = "CPU", "2"
        inner.cell(1, 0).text, inner.cell(1, 1).text = "RAM", "4 GB"

    (section,) = load("limits.docx", docx_bytes(build)).sections

    assert section.text == "Limits | CPU | 2; RAM | 4 GB"


def w(xml: str) -> BaseOxmlElement:
    """A WordprocessingML element for what python-docx has no API for; the namespace is added."""
    head, close, rest = xml.partition(">")
    return parse_xml(f"{head} {nsdecls('w')}{close}{rest}")


def test_docx_reads_text_as_displayed_with_tracked_changes_applied() -> None:
    def build(document: DocxDocument) -> None:
        paragraph = document.add_paragraph("Backups run ")._p
        paragraph.append(w('<w:del w:id="1" w:author="A"><w:r><w:delText>weekly</w:delText></w:r></w:del>'))
        paragraph.append(w('<w:ins w:id="2" w:author="A"><w:r><w:t>nightly</w:t></w:r></w:ins>'))
        paragraph.append(w('<w:moveFrom w:id="3" w:author="A"><w:r><w:t> at noon</w:t></w:r></w:moveFrom>'))
        paragraph.append(
            w(
                '<w:hyperlink w:anchor="x"><w:r><w:t xml:space="preserve"> (see runbook)</w:t></w:r></w:hyperlink>'
            )
        )

    (section,) = load("backup.docx", docx_bytes(build)).sections

    assert section.text == "Backups run nightly (see runbook)"


def test_docx_reads_content_controls_but_skips_a_table_of_contents() -> None:
    def build(document: DocxDocument) -> None:
        anchor = document.add_paragraph("Body after the controls.")
        anchor._p.addprevious(
            w(
                "<w:sdt><w:sdtPr><w:docPartObj><w:docPartGallery w:val='Table of Contents'/>"
                "</w:docPartObj></w:sdtPr><w:sdtContent><w:p><w:r><w:t>Accounts ..... 3</w:t></w:r></w:p>"
                "</w:sdtContent></w:sdt>"
            )
        )
        anchor._p.addprevious(
            w(
                "<w:sdt><w:sdtPr><w:alias w:val='Owner'/></w:sdtPr><w:sdtContent>"
                "<w:p><w:r><w:t>Owner: the platform team.</w:t></w:r></w:p></w:sdtContent></w:sdt>"
            )
        )

    (section,) = load("controls.docx", docx_bytes(build)).sections

    assert section.text == "Owner: the platform team.\n\nBody after the controls."


def test_docx_title_falls_back_to_the_core_properties_then_the_stem() -> None:
    def body(document: DocxDocument) -> None:
        document.add_heading("Chapter one", level=1)
        document.add_paragraph("Text.")

    assert load("a.docx", docx_bytes(body, core_title="Travel Policy")).title == "Travel Policy"
    assert load("travel-policy.docx", docx_bytes(body)).title == "travel-policy"


def test_docx_without_text_has_no_sections_and_is_not_an_error() -> None:
    document = load("blank.docx", docx_bytes(lambda document: document.add_paragraph("   ")))

    assert document.sections == ()
    assert document.title == "blank"


# --- PowerPoint --------------------------------------------------------------------------------


def add_slide(presentation: PptxPresentation, layout: int, title: str | None = None) -> Slide:
    slide = presentation.slides.add_slide(presentation.slide_layouts[layout])
    if title is not None:
        slide.shapes.title.text = title
    return slide


def review_deck(presentation: PptxPresentation) -> None:
    first = add_slide(presentation, TITLE_AND_CONTENT, "Quarterly review")
    body = first.placeholders[1].text_frame
    body.text = "Revenue grew"
    detail = body.add_paragraph()
    detail.text, detail.level = "in every region", 1
    body.add_paragraph().text = "Churn fell"
    first.notes_slide.notes_text_frame.text = "Thank the sales team.\nMention the new office."

    second = add_slide(presentation, TITLE_ONLY, "Costs")
    table = second.shapes.add_table(3, 2, Inches(1), Inches(2), Inches(6), Inches(1.5)).table
    fill(table, [("Item", "Cost"), ("Servers", "40k"), ("Licences", "12k")])
    group = second.shapes.add_group_shape()
    group.shapes.add_textbox(Inches(1), Inches(5), Inches(3), Inches(1)).text_frame.text = "Budget approved"
    inner = group.shapes.add_group_shape()
    inner.shapes.add_textbox(Inches(5), Inches(5), Inches(3), Inches(1)).text_frame.text = "by the board"


def test_pptx_gives_one_section_per_slide_numbered_and_headed_by_the_slide_title() -> None:
    document = load("review.pptx", pptx_bytes(review_deck))

    assert document.format == "pptx"
    assert document.title == "Quarterly review"
    assert [(s.page, s.heading_path, s.text) for s in document.sections] == [
        (1, ("Quarterly review",), "- Revenue grew\n  - in every region\n- Churn fell"),
        (1, ("Quarterly review", "Speaker notes"), "Thank the sales team.\n\nMention the new office."),
        (2, ("Costs",), "Item | Cost\nServers | 40k\nLicences | 12k\n\nBudget approved\n\nby the board"),
    ]


def test_pptx_a_slide_without_text_has_no_section_and_the_next_keeps_its_number() -> None:
    def build(presentation: PptxPresentation) -> None:
        add_slide(presentation, TITLE_ONLY, "Agenda")
        add_slide(presentation, BLANK)
        untitled = add_slide(presentation, BLANK)
        untitled.shapes.add_textbox(Inches(1), Inches(1), Inches(4), Inches(1)).text_frame.text = "Questions?"

    document = load("agenda.pptx", pptx_bytes(build))

    assert [(s.page, s.heading_path, s.text) for s in document.sections] == [(3, (), "Questions?")]
    assert document.title == "Agenda"


def test_pptx_footer_date_and_slide_number_placeholders_are_dropped() -> None:
    def build(presentation: PptxPresentation) -> None:
        slide = add_slide(presentation, TITLE_AND_CONTENT, "Roadmap")
        slide.placeholders[1].text_frame.text = "Ship search in May"
        for placeholder in presentation.slide_layouts[TITLE_AND_CONTENT].placeholders:
            kind = placeholder.placeholder_format.type
            if kind in (PP_PLACEHOLDER.FOOTER, PP_PLACEHOLDER.DATE, PP_PLACEHOLDER.SLIDE_NUMBER):
                slide.shapes.clone_placeholder(placeholder)
        for shape in slide.placeholders:
            if shape.placeholder_format.type == PP_PLACEHOLDER.FOOTER:
                shape.text_frame.text = "Confidential"
            elif shape.placeholder_format.type == PP_PLACEHOLDER.DATE:
                shape.text_frame.text = "2024-05-01"

    assert paths_and_texts(load("roadmap.pptx", pptx_bytes(build))) == [
        (("Roadmap",), "- Ship search in May")
    ]


def test_pptx_a_merged_table_cell_is_read_once() -> None:
    def build(presentation: PptxPresentation) -> None:
        slide = add_slide(presentation, TITLE_ONLY, "Plan")
        table = slide.shapes.add_table(2, 3, Inches(1), Inches(2), Inches(6), Inches(1)).table
        table.cell(0, 0).merge(table.cell(0, 2))
        fill(table, [("Release plan",), ("Q3", "Search", "done")])

    assert paths_and_texts(load("plan.pptx", pptx_bytes(build))) == [
        (("Plan",), "Release plan\nQ3 | Search | done")
    ]


def test_pptx_title_falls_back_to_the_core_properties_then_the_stem() -> None:
    def build(presentation: PptxPresentation) -> None:
        slide = add_slide(presentation, BLANK)
        slide.shapes.add_textbox(Inches(1), Inches(1), Inches(4), Inches(1)).text_frame.text = "Hello"

    assert load("a.pptx", pptx_bytes(build, core_title="Kick-off")).title == "Kick-off"
    assert load("kick-off.pptx", pptx_bytes(build)).title == "kick-off"


# --- corrupt files -----------------------------------------------------------------------------

KINDS = {".docx": "Word document", ".pptx": "PowerPoint file"}


def valid(suffix: str) -> bytes:
    if suffix == ".docx":
        return docx_bytes(handbook)
    return pptx_bytes(review_deck)


def without(data: bytes, part: str) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            if info.filename != part:
                target.writestr(info, source.read(info))
    return out.getvalue()


MAIN_PART = {".docx": "word/document.xml", ".pptx": "ppt/presentation.xml"}


@pytest.mark.parametrize("suffix", [".docx", ".pptx"])
def test_a_file_that_is_not_a_zip_is_a_load_error(suffix: str) -> None:
    with pytest.raises(LoadError) as raised:
        load("renamed" + suffix, b"Just some text saved with the wrong name.\n")
    assert raised.value.message == f"corrupt {KINDS[suffix]}: not a zip archive"
    assert raised.value.code == "load_error"


@pytest.mark.parametrize("suffix", [".docx", ".pptx"])
def test_a_truncated_file_is_a_load_error(suffix: str) -> None:
    data = valid(suffix)

    with pytest.raises(LoadError) as raised:
        load("cut" + suffix, data[: len(data) // 2])
    assert raised.value.message == f"corrupt {KINDS[suffix]}: truncated or damaged zip archive"


@pytest.mark.parametrize("suffix", [".docx", ".pptx"])
def test_a_zip_without_the_document_part_is_a_load_error(suffix: str) -> None:
    with pytest.raises(LoadError, match=rf"^corrupt {KINDS[suffix]}: a required part is missing \("):
        load("hollow" + suffix, without(valid(suffix), MAIN_PART[suffix]))


@pytest.mark.parametrize("suffix", [".docx", ".pptx"])
def test_an_empty_zip_is_a_load_error(suffix: str) -> None:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("readme.txt", "not an Office file")

    with pytest.raises(LoadError, match=rf"^corrupt {KINDS[suffix]}: a required part is missing"):
        load("archive" + suffix, out.getvalue())


def test_a_presentation_saved_as_docx_and_a_document_saved_as_pptx_are_load_errors() -> None:
    with pytest.raises(LoadError, match=r"^not a \.docx file: it holds a PowerPoint presentation \(app"):
        load("slides.docx", valid(".pptx"))
    with pytest.raises(LoadError, match=r"^not a \.pptx file: it holds a Word document \(app"):
        load("report.pptx", valid(".docx"))


def test_a_damaged_part_inside_an_intact_zip_is_a_load_error() -> None:
    data = bytearray(valid(".docx"))
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as archive:
        info = archive.getinfo("word/document.xml")
    # The part's compressed bytes follow its local header (30 bytes + name + extra field).
    name_length, extra_length = struct.unpack("<HH", data[info.header_offset + 26 : info.header_offset + 30])
    start = info.header_offset + 30 + name_length + extra_length
    data[start + 10 : start + 20] = bytes(10)

    with pytest.raises(LoadError, match=r"^corrupt Word document: "):
        load("bitrot.docx", bytes(data))


OLE2 = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"


@pytest.mark.parametrize(("suffix", "legacy"), [(".docx", ".doc"), (".pptx", ".ppt")])
def test_a_password_protected_file_and_an_old_binary_file_are_told_apart(suffix: str, legacy: str) -> None:
    encrypted = OLE2 + bytes(500) + "EncryptedPackage".encode("utf-16-le") + bytes(100)
    old_binary = OLE2 + bytes(500) + "WordDocument".encode("utf-16-le") + bytes(100)

    with pytest.raises(LoadError) as raised:
        load("secret" + suffix, encrypted)
    assert raised.value.message == f"encrypted {KINDS[suffix]}: protected with a password"
    with pytest.raises(LoadError) as raised:
        load("old" + suffix, old_binary)
    assert raised.value.message == f"not a {suffix} file: the old binary {legacy} format; save it as {suffix}"


def test_a_zip_declaring_an_enormous_unpacked_size_is_refused_before_it_is_inflated() -> None:
    data = bytearray(valid(".docx"))
    central = data.index(b"PK\x01\x02")  # the first central directory entry
    data[central + 24 : central + 28] = struct.pack("<I", 0xF0000000)  # its uncompressed size

    with pytest.raises(LoadError, match=r"^Word document too large: \d+ bytes unpacked, the limit is \d+$"):
        load("bomb.docx", bytes(data))


@pytest.mark.parametrize("name", ["empty.docx", "empty.pptx"])
def test_an_empty_office_file_has_no_sections_like_any_empty_file(name: str) -> None:
    document = load(name, b"")

    assert document.sections == ()
    assert document.title == "empty"
