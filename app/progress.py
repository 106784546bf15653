"""Progress lines on stderr for long CLI operations (a single updating line on a terminal), and the
argparse type of a whole number with a floor."""
from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable


class StderrProgress:
    """`unit` (e.g. "clips") adds the rate and the time left, for operations long enough to want them."""

    def __init__(self, stream=None, unit: str | None = None):
        self.stream = stream or sys.stderr
        self.started = time.monotonic()
        self.tty = self.stream.isatty()
        self.unit = unit

    def __call__(self, stage: str, done: int, total: int) -> None:
        elapsed = time.monotonic() - self.started
        line = f"[{elapsed:6.1f}s] {stage}: {done}/{total}"
        rate = done / elapsed if done and elapsed > 0 else 0.0
        if self.unit and rate > 0 and done < total:
            line += f", {rate:.2f} {self.unit}/s, about {(total - done) / rate:.0f} s left"
        if self.tty:
            self.stream.write("\r\x1b[K" + line)
            if done >= total:
                self.stream.write("\n")
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


def int_at_least(floor: int, why: str = "") -> Callable[[str], int]:
    """An argparse type: a whole number >= `floor`; `why` explains the floor in the message."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < floor:
            raise argparse.ArgumentTypeError(f"expected a number >= {floor}{why}, got {value}")
        return value

    return parse
