"""`make bench`: run every benchmarks/bench_*.py in its own process; figures land in bench-results/."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    failures = []
    for script in sorted(HERE.glob("bench_*.py")):
        print(f"\n== {script.stem} ==", flush=True)
        started = time.perf_counter()
        code = subprocess.call([sys.executable, str(script)], cwd=HERE)
        print(f"({script.stem}: {time.perf_counter() - started:.1f} s, exit {code})", flush=True)
        if code != 0:
            failures.append(script.stem)
    if failures:
        print(f"\nbenchmarks that failed to run: {', '.join(failures)}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
