"""The ingest progress bar: documents done, docs/s, failures and ETA (tqdm, on stderr)."""

from __future__ import annotations

import sys
from typing import TextIO

from tqdm import tqdm


class Progress:
    def __init__(self, total: int | None, *, initial: int = 0, enabled: bool = True,
                 desc: str = "ingest", stream: TextIO | None = None) -> None:
        self.failures = 0
        self._bar: tqdm | None = None
        if enabled:
            self._bar = tqdm(total=total, initial=initial, desc=desc, unit="docs", dynamic_ncols=True,
                             file=stream or sys.stderr, mininterval=0.5, smoothing=0.1)
            self._bar.set_postfix(failures=0, refresh=False)

    def advance(self, ok: int = 0, failed: int = 0) -> None:
        if failed:
            self.failures += failed
        if self._bar is None:
            return
        if failed:
            self._bar.set_postfix(failures=self.failures, refresh=False)
        if ok or failed:
            self._bar.update(ok + failed)

    def close(self, complete: bool = True) -> None:
        if self._bar is not None:
            if complete and self._bar.total is not None and self._bar.n < self._bar.total:
                # the total was an upper bound (blank lines, a CSV header): end the bar where we are
                self._bar.total = self._bar.n
                self._bar.refresh()
            self._bar.close()
            self._bar = None
