"""Peak memory of `import llp` and `eval` with a 200 MB dense CSV against the same with a small one.

The CSV readers stream: memory should hold the grids of the clips, not the rows. Both
runs import the same clips (the 7-clip test folder layout, real-LLP-shaped rows) into
a fresh SQLite file in a child process; the large run's dense audio file repeats
orphan rows (LLP has such rows) up to 200 MB. Figure: peak RSS of each child and the
growth; target: growth < 64 MB for a 200 MB file (before streaming: 8.5 GB).
"""
from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import REPO, save, verdict

sys.path.insert(0, str(REPO))
from tests.llp_fixtures import make_llp_dir  # noqa: E402

TARGET_MB = 64
SIZE = 200 * 2**20


def grow(path: Path, size: int) -> int:
    """Append orphan rows until `path` is `size` bytes; returns the rows added."""
    row = b"orphan00000_%d_%d\t0\t3\tDog\n"
    chunk = b"".join(row % (i, i + 10) for i in range(10000))
    rows = 0
    with open(path, "ab") as handle:
        while handle.tell() < size:
            handle.write(chunk)
            rows += 10000
    return rows


def peak_rss_mb(argv: list[str]) -> tuple[float, float]:
    """(peak RSS in MB, seconds) of `avvp-studio argv` in a fresh child process."""
    code = ("import resource, sys\nfrom app.main import main\nrc = main(sys.argv[1:])\n"
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\nsys.exit(rc)")
    began = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", code, *argv], cwd=REPO, capture_output=True, text=True)
    seconds = time.perf_counter() - began
    if result.returncode != 0:
        raise SystemExit(f"{argv[0]} failed: {result.stderr.strip()}")
    return int(result.stderr.strip().splitlines()[-1]) / 1024, seconds


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        small, large = make_llp_dir(root / "small"), make_llp_dir(root / "large")
        rows = grow(large / "AVVP_eval_audio.csv", SIZE)
        figures = {}
        for kind in ("import", "eval"):
            results = {}
            for name, folder in (("small", small), ("large", large)):
                if kind == "import":
                    argv = ["import", "llp", str(folder), "--db", str(root / f"{name}.sqlite")]
                else:
                    argv = ["eval", "--gt-audio", str(folder / "AVVP_eval_audio.csv"), "--gt-visual",
                            str(folder / "AVVP_eval_visual.csv"), "--pred-audio", str(folder / "AVVP_eval_audio.csv"),
                            "--pred-visual", str(folder / "AVVP_eval_visual.csv"), "--videos",
                            str(folder / "AVVP_test_pd.csv")]
                results[name] = peak_rss_mb(argv)
            growth = results["large"][0] - results["small"][0]
            figures[kind] = {"small_peak_mb": round(results["small"][0], 1), "large_peak_mb": round(results["large"][0], 1),
                             "growth_mb": round(growth, 1), "large_seconds": round(results["large"][1], 2),
                             "ok": growth < TARGET_MB}
            print(f"{kind}: peak RSS {results['small'][0]:.0f} MB with the small CSV, {results['large'][0]:.0f} MB "
                  f"with a {SIZE / 2**20:.0f} MB one ({rows:,} rows; {results['large'][1]:.1f} s): growth "
                  f"{growth:.0f} MB, target < {TARGET_MB} MB: {verdict(growth < TARGET_MB)}")
        figures["csv_mb"], figures["rows"] = SIZE / 2**20, rows
    save("csv_memory", figures)


if __name__ == "__main__":
    main()
