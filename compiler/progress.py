"""A one-line progress bar on stderr for long work (compiling, simulating many inputs or trials).

It draws only when stderr is a terminal (never into pipes, files or captured test output), not
with ``--quiet``, and not for work that ends within ``delay`` seconds. Work reports through a
plain callback ``progress(done, total, note="")``, so the runtime can report without importing
the compiler; ``Progress.part`` maps one step of a larger job (a trial, a pass) onto the bar.
On close, normal or not, the bar erases its line, so an error still prints as one clean line.
"""
from __future__ import annotations

import os
import sys
import time
from typing import Callable, TextIO

ProgressCallback = Callable[..., None]  # (done: float, total: float, note: str = "") -> None

_WIDTH = 24


def terminal(stream: TextIO) -> bool:
    """Whether ``stream`` is an interactive terminal that understands ``\\r`` and erase-line."""
    try:
        return stream.isatty() and os.environ.get("TERM", "") != "dumb"
    except (AttributeError, ValueError):  # a closed or replaced stream
        return False


class Progress:
    """``with Progress("compiling", enabled=...) as bar: work(progress=bar)``."""

    def __init__(self, label: str, enabled: bool | None = None, stream: TextIO | None = None,
                 delay: float = 0.4, interval: float = 0.1):
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = terminal(self.stream) if enabled is None else enabled
        self.delay, self.interval = delay, interval
        self.start = time.monotonic()
        self.fraction, self.note = 0.0, ""
        self._drawn_at = 0.0
        self._shown = False

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __call__(self, done: float, total: float, note: str = "") -> None:
        """Record that ``done`` of ``total`` units are finished (``note``: what is running)."""
        self.fraction = min(max(done / total, 0.0), 1.0) if total > 0 else 0.0
        changed = bool(note) and note != self.note
        if note:
            self.note = note
        self._draw(force=changed)  # a new stage shows at once: it may be a long one

    def part(self, index: int, count: int, note: str = "") -> ProgressCallback:
        """A callback for step ``index`` of ``count`` equal steps: it fills that step's share."""
        return part(self, index, count, note)

    def _draw(self, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        elapsed = now - self.start
        if elapsed < self.delay or (not force and now - self._drawn_at < self.interval):
            return
        self._drawn_at = now
        filled = int(round(self.fraction * _WIDTH))
        full, empty = _glyphs(self.stream)
        bar = full * filled + empty * (_WIDTH - filled)
        eta = ""
        if 0.02 < self.fraction < 1.0:
            eta = f", {_clock(elapsed * (1 - self.fraction) / self.fraction)} left"
        line = f"{self.label} {bar} {self.fraction:4.0%} {_clock(elapsed)}{eta}  {self.note}"
        try:
            columns = os.get_terminal_size(self.stream.fileno()).columns
        except (OSError, ValueError, AttributeError):
            columns = 0
        self.stream.write("\r\x1b[K" + line[:(columns if columns >= 20 else 80) - 1])
        self.stream.flush()
        self._shown = True

    def close(self) -> None:
        """Erase the bar (if it was drawn), leaving the cursor at the start of a clean line."""
        if self._shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._shown = False
        self.enabled = False


def part(progress: ProgressCallback | None, index: int, count: int, note: str = "") -> ProgressCallback | None:
    """A callback for step ``index`` of ``count`` equal steps of the work ``progress`` follows
    (None when nobody follows it): the step's own ``(done, total)`` fill its share of the bar."""
    if progress is None:
        return None

    def report(done: float, total: float, inner: str = "") -> None:
        share = min(max(done / total, 0.0), 1.0) if total > 0 else 0.0
        progress(index + share, count, ": ".join(filter(None, (note, inner))))
    return report


def _glyphs(stream: TextIO) -> tuple[str, str]:
    """Block characters where the terminal's encoding has them, else ASCII."""
    try:
        "█·".encode(getattr(stream, "encoding", None) or "ascii")
        return "█", "·"
    except (UnicodeEncodeError, LookupError):
        return "#", "-"


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 60}:{seconds % 60:02d}" if seconds < 3600 else f"{seconds // 3600}h{seconds // 60 % 60:02d}"
