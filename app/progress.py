"""Progress lines on stderr for long CLI operations (a single updating line on a terminal)."""
from __future__ import annotations

import sys
import time


class StderrProgress:
    def __init__(self, stream=None):
        self.stream = stream or sys.stderr
        self.started = time.monotonic()
        self.tty = self.stream.isatty()

    def __call__(self, stage: str, done: int, total: int) -> None:
        elapsed = time.monotonic() - self.started
        line = f"[{elapsed:6.1f}s] {stage}: {done}/{total}"
        if self.tty:
            self.stream.write("\r\x1b[K" + line)
            if done >= total:
                self.stream.write("\n")
        else:
            self.stream.write(line + "\n")
        self.stream.flush()
