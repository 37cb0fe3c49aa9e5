"""Progress for long work: a tqdm bar on a terminal; elsewhere (a log, a pipe) one plain line
every few seconds (``TWIN_PROGRESS_SECONDS``, default 5), and nothing at all for work that ends
sooner."""

from __future__ import annotations

import os
import sys
import time
from typing import TextIO

from tqdm import tqdm


class Progress:
    """Counts work done out of ``total`` (None: unknown) and shows it on ``file`` (stderr)."""

    def __init__(self, total: int | None, desc: str, unit: str, enabled: bool = True,
                 every_s: float | None = None, file: TextIO | None = None) -> None:
        self.total, self.desc, self.unit = total, desc, unit
        self.every_s = every_s if every_s is not None else float(os.environ.get("TWIN_PROGRESS_SECONDS", "5"))
        self.file = file or sys.stderr
        self.enabled, self.done = enabled, 0
        self._bar = None
        if enabled and _is_terminal(self.file):
            self._bar = tqdm(total=total, desc=desc, unit=unit, file=self.file)
        self._start = self._last = time.monotonic()

    def update(self, n: int) -> None:
        """``n`` more units done."""
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
        elif self.enabled and time.monotonic() - self._last >= self.every_s:
            self._last = time.monotonic()
            self.file.write(self._line() + "\n")
            self.file.flush()

    def _line(self) -> str:
        elapsed = max(time.monotonic() - self._start, 1e-9)
        rate = self.done / elapsed
        line = f"{self.desc}: {self.done:,}" + (f"/{self.total:,}" if self.total else "") + f" {self.unit}s"
        line += f", {rate:,.0f}/s, {elapsed:.0f} s"
        if self.total and rate > 0:
            line += f", about {(self.total - self.done) / rate:.0f} s left"
        return line

    def close(self) -> None:
        """End the bar."""
        if self._bar is not None:
            self._bar.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def _is_terminal(file: TextIO) -> bool:
    try:
        return file.isatty()
    except (AttributeError, ValueError):
        return False


class Clock:
    """Wall time of consecutive stages of a job, in seconds (``seconds``: stage -> time)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, stage: str) -> None:
        """End ``stage`` now (the next one starts)."""
        now = time.perf_counter()
        self.seconds[stage] = round(now - self._last, 3)
        self._last = now
