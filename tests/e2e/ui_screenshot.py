"""The README's screenshot: the full-page UI answering a question about this project's own docs.

    HF_HUB_OFFLINE=1 .venv/bin/python -m tests.e2e.ui_screenshot [OUT.png] [--question TEXT]

Like ``scripts/demo``: ``docs/`` ingested with the real ``Ingestor`` (into a throwaway store),
served by the real app with the offline extractive answerer, asked through the page in headless
Chromium. Writes ``docs/images/ui.png`` by default.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from playwright.sync_api import sync_playwright

from app.config import load_settings
from app.embedding import SentenceTransformerEmbedder
from app.http import create_app
from app.store import open_store
from ingest.runner import Ingestor
from tests.e2e.browser import launch_chromium
from tests.e2e.servers import live_server

__all__ = ["main", "screenshot"]

REPO = Path(__file__).resolve().parents[2]
QUESTION = "What happens when a run is interrupted?"


def screenshot(out: Path, question: str = QUESTION, *, dark: bool = False) -> None:
    with tempfile.TemporaryDirectory() as data_dir:
        settings = load_settings(
            environ={"KB_DATA_DIR": data_dir}, overrides={"generation": {"provider": "extractive"}}
        )
        embedder = SentenceTransformerEmbedder(settings.embedding)
        store = open_store(settings)
        try:
            Ingestor(store, embedder, chunking=settings.chunking, ingest=settings.ingest).ingest_paths(
                [REPO / "docs"]
            )
        finally:
            store.close()
        with live_server(create_app(settings, embedder=embedder)) as server, sync_playwright() as driver:
            browser = launch_chromium(driver)
            page = browser.new_page(
                viewport={"width": 960, "height": 600}, color_scheme="dark" if dark else "light"
            )
            page.goto(server.base_url + "/")
            page.locator("kb-ask textarea").fill(question)
            page.locator("kb-ask textarea").press("Enter")
            page.locator("kb-ask .tools").wait_for(state="visible", timeout=15_000)
            page.locator("kb-ask textarea").blur()
            out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=out, full_page=True)
            browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", type=Path, default=REPO / "docs" / "images" / "ui.png")
    parser.add_argument("--question", default=QUESTION)
    parser.add_argument("--dark", action="store_true")
    args = parser.parse_args()
    screenshot(args.out, args.question, dark=args.dark)
    print(args.out)


if __name__ == "__main__":
    main()
