"""Progress display: a bar on a terminal, plain lines otherwise, nothing with --quiet."""

from __future__ import annotations

import sys
from typing import Protocol, TextIO

__all__ = ["PlainProgress", "Progress", "QuietProgress", "RichProgress", "progress_for"]


class Progress(Protocol):
    def start(self, files: int) -> None: ...
    def file_done(self, source: str, outcome: str) -> None: ...
    def chunks_done(self, count: int) -> None: ...
    def close(self) -> None: ...


class QuietProgress:
    def start(self, files: int) -> None:
        pass

    def file_done(self, source: str, outcome: str) -> None:
        pass

    def chunks_done(self, count: int) -> None:
        pass

    def close(self) -> None:
        pass


class PlainProgress:
    """One line per file that changes something; for logs and pipes."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._total = 0
        self._done = 0
        self._chunks = 0

    def start(self, files: int) -> None:
        self._total = files

    def file_done(self, source: str, outcome: str) -> None:
        self._done += 1
        if outcome != "unchanged":
            print(f"[{self._done}/{self._total}] {outcome}: {source}", file=self._stream, flush=True)

    def chunks_done(self, count: int) -> None:
        self._chunks += count

    def close(self) -> None:
        pass


class RichProgress:
    """Two bars: files planned/loaded and chunks embedded.

    The bars are redrawn by a thread of their own, in Python, holding the GIL the model's thread
    needs between its operations; ingestion lasts minutes, so a few redraws a second are enough.
    """

    def __init__(self, stream: TextIO) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
        from rich.progress import Progress as Bars

        self._bars = Bars(
            TextColumn("{task.description:>8}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=Console(file=stream),
            transient=False,
            refresh_per_second=2,
        )
        self._files = self._bars.add_task("files", total=None)
        self._chunks = self._bars.add_task("chunks", total=None)
        self._chunk_total = 0

    def start(self, files: int) -> None:
        self._bars.update(self._files, total=files)
        self._bars.start()

    def file_done(self, source: str, outcome: str) -> None:
        self._bars.advance(self._files)

    def chunks_done(self, count: int) -> None:
        self._chunk_total += count
        self._bars.update(self._chunks, completed=self._chunk_total, total=self._chunk_total)

    def close(self) -> None:
        self._bars.stop()


def progress_for(*, quiet: bool, stream: TextIO | None = None) -> Progress:
    stream = stream or sys.stderr
    if quiet:
        return QuietProgress()
    if stream.isatty():
        return RichProgress(stream)
    return PlainProgress(stream)
