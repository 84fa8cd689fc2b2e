"""The offline answerer under concurrent requests: answers are computed one at a time, so that
their CPU work does not take the interpreter from the retrievals of the requests behind them."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence

import numpy as np
import pytest

from app.generation.base import TextDelta
from tests.unit.test_extractive import ConceptEmbedder, prompt, provider

pytestmark = pytest.mark.unit


class SlowConcepts(ConceptEmbedder):
    """The concept embedder, slow enough for two answers to overlap if they may; it records
    how many of its calls ran at once."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self.running = 0
        self.most_at_once = 0

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        with self._lock:
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
        try:
            time.sleep(0.2)
            return super().embed(texts)
        finally:
            with self._lock:
                self.running -= 1


async def _answer(answerer, question: str) -> str:  # type: ignore[no-untyped-def]
    return "".join(
        [part.text async for part in answerer.stream(prompt(question)) if isinstance(part, TextDelta)]
    )


def test_concurrent_answers_are_computed_one_at_a_time_and_each_is_its_own() -> None:
    embedder = SlowConcepts()
    answerer = provider(embedder=embedder)
    questions = [
        "How do I reset my password?",
        "When must expense claims be submitted?",
        "Does the VPN need 2FA?",
    ]

    async def main() -> list[str]:
        return await asyncio.gather(*(_answer(answerer, q) for q in questions))

    together = asyncio.run(main())

    assert embedder.most_at_once == 1
    assert together == [provider(embedder=ConceptEmbedder()).answer(prompt(q)) for q in questions]


def test_an_answer_whose_client_left_while_waiting_its_turn_frees_the_turn() -> None:
    embedder = SlowConcepts()
    answerer = provider(embedder=embedder)

    async def main() -> str:
        first = asyncio.create_task(_answer(answerer, "How do I reset my password?"))
        await asyncio.sleep(0.05)
        gone = asyncio.create_task(_answer(answerer, "Does the VPN need 2FA?"))
        await asyncio.sleep(0.05)
        gone.cancel()  # its client disconnected while the first answer was being computed
        await first
        return await asyncio.wait_for(_answer(answerer, "When must expense claims be submitted?"), 5.0)

    assert "30 days" in asyncio.run(main())


def test_an_answer_whose_client_left_mid_answer_keeps_the_turn_until_its_work_ends() -> None:
    # Its thread cannot be stopped: were the turn handed on when the request was cancelled, every
    # abandoned answer would go on computing beside the next ones (a burst of clients hanging
    # up left the model busy with answers nobody would read, ahead of the next request).
    embedder = SlowConcepts()
    answerer = provider(embedder=embedder)

    async def main() -> str:
        gone = asyncio.create_task(_answer(answerer, "How do I reset my password?"))
        await asyncio.sleep(0.05)  # its answer is being computed
        gone.cancel()
        with pytest.raises(asyncio.CancelledError):
            await gone
        return await asyncio.wait_for(_answer(answerer, "When must expense claims be submitted?"), 5.0)

    assert "30 days" in asyncio.run(main())
    assert embedder.most_at_once == 1


def test_a_failure_of_an_abandoned_answer_is_retrieved_and_the_turn_still_handed_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class FailingOnce(SlowConcepts):
        def __init__(self) -> None:
            super().__init__()
            self.failed = False

        def embed(self, texts: Sequence[str]) -> np.ndarray:
            if not self.failed:
                self.failed = True
                time.sleep(0.1)
                raise RuntimeError("model fault")
            return super().embed(texts)

    answerer = provider(embedder=FailingOnce())

    async def main() -> str:
        gone = asyncio.create_task(_answer(answerer, "How do I reset my password?"))
        await asyncio.sleep(0.03)
        gone.cancel()
        answer = await asyncio.wait_for(_answer(answerer, "When must expense claims be submitted?"), 5.0)
        del gone
        return answer

    assert "30 days" in asyncio.run(main())
    assert "never retrieved" not in caplog.text
