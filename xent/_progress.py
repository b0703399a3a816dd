"""The progress bar of ``xent parity`` and ``xent bench`` (no dependencies)."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """One line redrawn in place on a terminal; elsewhere (a log, CI) a line per
    10% of the work.

    Called as ``progress(done, total, label)`` (``xent parity``'s callback), or
    ``step(label)`` after each of ``total`` items and ``show(label)`` while one
    runs (``xent bench``); ``close()`` ends the line.
    """

    WIDTH = 30

    def __init__(self, total: int = 0, enabled: bool = True, stream: TextIO | None = None) -> None:
        self.stream = sys.stderr if stream is None else stream
        self.total, self.done, self.enabled = total, 0, enabled
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.last_decile = -1
        self.start = time.monotonic()
        self.open = False

    def __call__(self, done: int, total: int, label: str) -> None:
        self.done, self.total = done, total
        self.show(label)

    def step(self, label: str = "") -> None:
        self.done += 1
        self.show(label)

    def show(self, label: str) -> None:
        if not self.enabled:
            return
        frac = self.done / self.total if self.total else 1.0
        bar = "#" * int(frac * self.WIDTH)
        line = f"[{bar:<{self.WIDTH}}] {self.done}/{self.total} {time.monotonic() - self.start:5.1f}s {label}"
        if self.tty:
            self.stream.write("\r" + line[:110].ljust(110))
            self.open = True
            if self.done == self.total:
                self.close()
        elif int(frac * 10) > self.last_decile:
            self.last_decile = int(frac * 10)
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        """End the redrawn line (on a terminal), once."""
        if self.open:
            self.stream.write("\n")
            self.stream.flush()
            self.open = False
