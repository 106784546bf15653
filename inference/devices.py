"""Device names the trainer and predictor accept; torch-free, so the CLI checks them before importing torch."""
from __future__ import annotations

import re

DEVICE_NAMES = "auto, cpu, cuda or cuda:N"
_DEVICE_RE = re.compile(r"auto|cpu|cuda(?::[0-9]+)?")


def check_device_name(name: object) -> str:
    """`name` if it is one of DEVICE_NAMES, else a ValueError saying what is accepted."""
    if not isinstance(name, str) or _DEVICE_RE.fullmatch(name) is None:
        raise ValueError(f"device {name!r}; expected {DEVICE_NAMES}")
    return name
