"""The ingest progress bar (issue 10, item 9): no absurd ETA on its first tick, steady updates.

A fake clock drives tqdm (no real waiting, nothing asserted on timing): the first documents come out of the pipeline
83 s after the start (model warm-up), then a batch of 32 every second, while the index acknowledges 200 at a time."""

from __future__ import annotations

import io
import re

import pytest

from neuralpipe.ingest.progress import Progress

pytestmark = pytest.mark.unit


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _frames(stream: io.StringIO) -> list[str]:
    return [f for f in stream.getvalue().split("\r") if "docs" in f]


def _eta_seconds(frame: str) -> int:
    eta = re.search(r"<([\d:]+|\?)", frame).group(1)
    parts = [int(p) for p in eta.split(":")]
    return sum(p * 60 ** i for i, p in enumerate(reversed(parts)))


def _run(total: int = 2000) -> tuple[Progress, list[str]]:
    clock, stream = Clock(), io.StringIO()
    progress = Progress(total, stream=stream, clock=clock)
    clock.now += 83  # warm-up: the first batch takes as long as loading the model
    done = 0
    while done < 1000:
        progress.prepared(32)
        done += 32
        if done % 192 == 0:
            progress.acknowledged(ok=192)
        clock.now += 1
    return progress, _frames(stream)


def test_the_first_tick_shows_no_absurd_eta() -> None:
    _, frames = _run()
    shown = [f for f in frames if not f.startswith("ingest:   0%|          | 0/2000")]
    # 32 docs/s with under 2,000 left: about a minute, never the 46 hours the warm-up made it
    assert shown and all(_eta_seconds(f) <= 120 for f in shown), shown[:3]
    assert "s/docs" not in "".join(shown)


def test_the_bar_moves_per_pipeline_batch_not_per_bulk() -> None:
    progress, frames = _run()
    counts = [int(re.search(r"(\d+)/2000", f).group(1)) for f in frames]
    assert counts[:2] == [0, 64]  # the first batch is shown with the second: its rate would be the warm-up's
    steps = {b - a for a, b in zip(counts[1:], counts[2:])}
    assert steps == {32}, sorted(steps)  # every batch, although the index acknowledges 192 at a time
    progress.close()


def test_acknowledgements_and_failures_are_shown_beside_the_bar() -> None:
    clock, stream = Clock(), io.StringIO()
    progress = Progress(10, stream=stream, clock=clock)
    progress.prepared(5)
    clock.now += 1
    progress.failed_early()
    progress.acknowledged(ok=4, failed=1)
    progress.close()
    last = _frames(stream)[-1]
    assert "6/6" in last and "indexed=4" in last and "failures=2" in last
