"""The ingest progress bar: documents done, docs/s, failures and ETA (tqdm, on stderr).

The bar moves as documents come out of the ingest pipeline, one tick per pipeline batch (the slow stage), so it
advances steadily instead of in steps of a whole ``_bulk`` request; the index's acknowledgements and the failures
show beside it. The rate and ETA are a moving average of the intervals between ticks, starting after the first one:
the time before it (model warm-up, the first batch) is not throughput, and counting it made the first ETA absurd.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

from tqdm import tqdm


class Progress:
    def __init__(self, total: int | None, *, initial: int = 0, enabled: bool = True, desc: str = "ingest",
                 stream: TextIO | None = None, clock: Callable[[], float] = time.time) -> None:
        self.failures = 0
        self.indexed = 0
        self._ticked = False
        self._bar: tqdm | None = None
        if enabled:
            # without a total (stdin) a resumed count would only inflate this run's
            self._bar = tqdm(total=total, initial=initial if total is not None else 0, desc=desc, unit="docs",
                             dynamic_ncols=True, file=stream or sys.stderr, mininterval=0.5, miniters=1,
                             smoothing=0.1)
            self._bar._time = clock
            self._bar.start_t = self._bar.last_print_t = clock()
            self._show_counts()

    def _show_counts(self) -> None:
        if self._bar is not None:
            self._bar.set_postfix(indexed=self.indexed, failures=self.failures, refresh=False)

    def prepared(self, count: int) -> None:
        """``count`` documents are through the pipeline (or failed before reaching the index): the bar moves."""
        if self._bar is None or not count:
            return
        if not self._ticked:
            # the first tick: counted, not shown (a rate now could only include the warm-up); the rate starts here
            self._ticked = True
            self._bar.n += count
            self._bar.last_print_n = self._bar.n
            self._bar.last_print_t = self._bar._time()
            return
        self._bar.update(count)

    def acknowledged(self, ok: int = 0, failed: int = 0) -> None:
        """The index took ``ok`` documents and refused ``failed`` (already counted by :meth:`prepared`)."""
        self.indexed += ok
        self.failures += failed
        self._show_counts()

    def failed_early(self, count: int = 1) -> None:
        """``count`` documents failed before the index (parse or pipeline): counted and shown as failures."""
        self.failures += count
        self._show_counts()
        self.prepared(count)

    def close(self, complete: bool = True) -> None:
        if self._bar is not None:
            if complete and self._bar.total is not None and self._bar.n < self._bar.total:
                # the total was an upper bound (blank lines, a CSV header): end the bar where we are
                self._bar.total = self._bar.n
                self._bar.refresh()
            self._bar.close()
            self._bar = None
