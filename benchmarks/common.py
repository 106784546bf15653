"""Shared bits of the benchmarks: where the real LLP files are, timing, result files."""
from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[1]
SHARED_LLP = REPO.parent / "shared" / "llp"
RESULTS = REPO / "bench-results"
sys.path.insert(0, str(REPO))


def require_llp() -> Path:
    if not (SHARED_LLP / "AVVP_train.csv").exists():
        print(f"skipped: the real LLP files are not at {SHARED_LLP}")
        raise SystemExit(0)
    return SHARED_LLP


def timed(fn: Callable[[], object], repeat: int = 1) -> tuple[float, object]:
    """Median wall time of `repeat` runs, and the last result."""
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def save(name: str, figures: dict) -> None:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(figures, indent=2))


def verdict(ok: bool) -> str:
    return "meets target" if ok else "MISSES target"
