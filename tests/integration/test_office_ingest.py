"""Word and PowerPoint files through a real ingestion run: real model, real embedded Qdrant."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from docx import Document
from pptx import Presentation
from pptx.util import Inches

from app.retrieval import Retriever
from app.settings import Settings
from app.store import QdrantStore
from ingest.runner import Ingestor

pytestmark = pytest.mark.integration


def write_handbook(path: Path) -> None:
    document = Document()
    document.add_paragraph("Support Handbook", style="Title")
    document.add_heading("Escalation", level=1)
    document.add_paragraph("Tickets that wait longer than a day are escalated to the owning team.")
    document.add_heading("Owners", level=2)
    document.add_paragraph("Each service has one owning team.")
    table = document.add_table(rows=3, cols=2)
    for row, cells in enumerate(
        [("Service", "Owning team"), ("VPN", "Network team"), ("Payroll", "Finance")]
    ):
        for column, text in enumerate(cells):
            table.cell(row, column).text = text
    document.save(path)


def write_deck(path: Path) -> None:
    presentation = Presentation()
    first = presentation.slides.add_slide(presentation.slide_layouts[1])
    first.shapes.title.text = "Hardware refresh"
    first.placeholders[1].text_frame.text = "Laptops are replaced every three years."
    first.notes_slide.notes_text_frame.text = "Mention the leasing contract."
    second = presentation.slides.add_slide(presentation.slide_layouts[5])
    second.shapes.title.text = "Refresh budget"
    table = second.shapes.add_table(2, 2, Inches(1), Inches(2), Inches(6), Inches(1)).table
    for row, cells in enumerate([("Item", "Budget"), ("Monitors", "eighteen thousand euros")]):
        for column, text in enumerate(cells):
            table.cell(row, column).text = text
    presentation.save(path)


@pytest.fixture
def office_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "office"
    folder.mkdir()
    write_handbook(folder / "handbook.docx")
    write_deck(folder / "refresh.pptx")
    buffer = io.BytesIO()
    Document().save(buffer)
    (folder / "cut.docx").write_bytes(buffer.getvalue()[:2000])  # a truncated download
    return folder


async def test_docx_and_pptx_are_ingested_and_a_table_cell_is_found_by_retrieval(
    office_folder: Path, store: QdrantStore, embedder, settings: Settings
) -> None:
    ingestor = Ingestor(store, embedder, chunking=settings.chunking, ingest=settings.ingest)

    report = ingestor.ingest_paths([office_folder])

    # The corrupt file is reported (and makes `kb ingest` exit 1); the others are ingested.
    assert [(failed.path, failed.reason) for failed in report.failed] == [
        ("office/cut.docx", "corrupt Word document: truncated or damaged zip archive")
    ]
    assert report.new == 2
    points, _ = store.client.scroll(store.collection, limit=100, with_payload=True)
    chunks = {
        (p.payload["source"], p.payload["page"], tuple(p.payload["heading_path"])): p.payload["text"]
        for p in points
    }
    assert chunks[("office/handbook.docx", None, ("Support Handbook", "Escalation", "Owners"))] == (
        "Each service has one owning team.\n\nService | Owning team\nVPN | Network team\nPayroll | Finance"
    )
    assert {(source, page) for source, page, _ in chunks if source.endswith(".pptx")} == {
        ("office/refresh.pptx", 1),
        ("office/refresh.pptx", 2),
    }
    assert ("office/refresh.pptx", 1, ("Hardware refresh", "Speaker notes")) in chunks

    retriever = Retriever(store, embedder, settings.retrieval)
    try:
        result = await retriever.retrieve("How much is the budget for monitors?")
    finally:
        retriever.close()

    assert result.status == "ok"
    best = result.candidates[0].record
    assert (best.source, best.page, best.heading_path) == (
        "office/refresh.pptx",
        2,
        ("Hardware refresh", "Refresh budget"),
    )
    assert "Monitors | eighteen thousand euros" in best.text
