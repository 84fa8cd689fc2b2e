"""Headless Chromium for the UI tests, and axe-core to audit what it renders.

Playwright's own browser download does not work on these machines, so Playwright drives Debian's
``chromium`` (``scripts/setup --dev`` installs it). axe-core comes from the npm registry on first
use (``npm pack``), cached in pytest's cache folder, never committed.
"""

from __future__ import annotations

import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from playwright.sync_api import Browser, Page, Playwright

__all__ = [
    "AXE_VERSION",
    "CHROMIUM",
    "CHROMIUM_ARGS",
    "axe_script",
    "launch_chromium",
    "run_axe",
]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
AXE_VERSION = "4.14.1"


def launch_chromium(playwright: Playwright) -> Browser:
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, timeout=30_000)


def axe_script(cache: Path) -> str | None:
    """The source of ``axe.min.js`` (pinned version), fetched into ``cache`` once; None when npm
    or the registry is not available."""
    target = cache / f"axe-core-{AXE_VERSION}.min.js"
    if target.is_file():
        return target.read_text(encoding="utf-8")
    npm = shutil.which("npm")
    if npm is None:
        return None
    with tempfile.TemporaryDirectory() as scratch:
        try:
            subprocess.run(
                [npm, "pack", f"axe-core@{AXE_VERSION}", "--pack-destination", scratch, "--silent"],
                check=True,
                capture_output=True,
                timeout=120,
            )
        except (subprocess.SubprocessError, OSError):
            return None
        (tarball,) = Path(scratch).glob("axe-core-*.tgz")
        with tarfile.open(tarball) as archive:
            member = archive.extractfile("package/axe.min.js")
            if member is None:
                return None
            source = member.read().decode("utf-8")
    cache.mkdir(parents=True, exist_ok=True)
    target.write_text(source, encoding="utf-8")
    return source


def run_axe(page: Page, source: str) -> dict[str, Any]:
    """axe-core's audit of the page as rendered now, open shadow roots included: its violations,
    and how many checks it made on nodes inside a shadow root (zero would mean it saw nothing
    of the widget)."""
    page.evaluate(source)  # evaluated, not a <script> tag: the page's CSP admits no inline script
    audit: dict[str, Any] = page.evaluate(
        """async () => {
            const result = await axe.run(document, {resultTypes: ["violations", "passes"]});
            const inShadow = rule => rule.nodes.filter(n => Array.isArray(n.target[0])).length;
            return {
                violations: result.violations.map(v => ({
                    id: v.id, impact: v.impact, help: v.help,
                    nodes: v.nodes.map(n => ({target: n.target, summary: n.failureSummary})),
                })),
                shadow_checks: result.passes.reduce((sum, rule) => sum + inShadow(rule), 0),
            };
        }"""
    )
    return audit
