"""Write tiny, valid PDFs by hand (no PDF library needed), for fixtures and tests.

``python tests/data/make_pdf.py`` regenerates ``tests/data/mixed/manual.pdf`` and ``broken.pdf``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

__all__ = ["build_pdf"]

MANUAL_PAGES = (
    (
        "Backup Manual",
        "The backup agent copies the database to object storage every night at 02:00 UTC.",
        "Each snapshot is encrypted with the team key before it leaves the host.",
        "Snapshots are kept for 35 days; monthly snapshots are kept for one year.",
    ),
    (
        "Restoring a snapshot",
        "Run kb-restore with the snapshot id to restore into a fresh database.",
        "A full restore of the production database takes about forty minutes.",
        "Always verify the row counts against the backup report after a restore.",
    ),
)


def _escape(line: str) -> str:
    return line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def build_pdf(pages: Sequence[Sequence[str]], title: str | None = None) -> bytes:
    """A PDF with one page per entry, each line drawn in Helvetica; no lines: a blank page."""
    objects: list[bytes] = [b"", b""]  # catalog and page tree are filled in once page ids are known
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    page_ids: list[int] = []
    for lines in pages:
        drawn = " T* ".join(f"({_escape(line)}) Tj" for line in lines)
        stream = f"BT /F1 11 Tf 14 TL 72 720 Td {drawn} ET".encode("latin-1") if lines else b""
        objects.append(b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream))
        content_id = len(objects)
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
            b"/Resources << /Font << /F1 3 0 R >> >> /Contents %d 0 R >>" % content_id
        )
        page_ids.append(len(objects))
    objects[0] = b"<< /Type /Catalog /Pages 2 0 R >>"
    kids = b" ".join(b"%d 0 R" % page_id for page_id in page_ids)
    objects[1] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kids, len(page_ids))
    info_ref = b""
    if title is not None:
        objects.append(b"<< /Title (%s) >>" % _escape(title).encode("latin-1"))
        info_ref = b" /Info %d 0 R" % len(objects)

    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref_at = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R%s >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        info_ref,
        xref_at,
    )
    return bytes(out)


def main() -> None:
    folder = Path(__file__).parent / "mixed"
    manual = build_pdf(MANUAL_PAGES, title="Backup Manual")
    (folder / "manual.pdf").write_bytes(manual)
    # A download cut off mid-file, with its tail overwritten by junk: no xref, no objects.
    (folder / "broken.pdf").write_bytes(manual[:9] + b"\x8f\x02junk\xff" * 40)


if __name__ == "__main__":
    main()
