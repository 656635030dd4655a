"""A one-line text progress bar on stderr for long commands (bench, parity)."""

from __future__ import annotations

import shutil
import sys
import time


class Progress:
    """A one-line text progress bar on stderr; silent when disabled (not a TTY, or --quiet)."""

    def __init__(self, total, enabled=None, stream=None):
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.total, self.done, self.t0 = max(total, 1), 0, time.perf_counter()
        self.width = max(40, shutil.get_terminal_size((100, 20)).columns - 1)

    def update(self, text=""):
        if not self.enabled:
            return
        frac = self.done / self.total
        elapsed = time.perf_counter() - self.t0
        eta = f" eta {elapsed / frac * (1 - frac):4.0f}s" if self.done else ""
        bar = "#" * int(24 * frac) + "." * (24 - int(24 * frac))
        line = f"\r[{bar}] {self.done}/{self.total} {elapsed:4.0f}s{eta}  {text}"
        self.stream.write(line[: self.width + 1].ljust(self.width + 1))
        self.stream.flush()

    def advance(self, text=""):
        self.done += 1
        self.update(text)

    def close(self):
        if self.enabled:
            self.stream.write("\r" + " " * self.width + "\r")
            self.stream.flush()
