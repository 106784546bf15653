"""Full LLP import into SQLite vs merely reading the same files; export of all clips.

The real LLP CSVs (../shared/llp) are linked into a temporary folder, and a visual
and an audio pseudo-label .npy is generated for each of the 11,849 clips.
Targets: import <= 3x the read-only floor and < 10 s; export time reported.
"""
from __future__ import annotations

import csv
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from common import require_llp, save, timed, verdict

from annotation.db import open_database
from annotation.exporter import export_labels
from annotation.importer import DENSE_FILES, PSEUDO_DIRS, WEAK_FILES, import_llp
from annotation.llp_csv import read_weak_csv


def build_dataset(llp: Path, root: Path) -> int:
    for name in list(WEAK_FILES.values()) + list(DENSE_FILES.values()):
        os.symlink(llp / name, root / name)
    rng = np.random.default_rng(0)
    clips = [row for name in WEAK_FILES.values() for row in read_weak_csv(llp / name)]
    for sub in PSEUDO_DIRS.values():
        (root / sub).mkdir(parents=True)
        for row in clips:
            pseudo = np.zeros((10, 25), dtype=np.int64)
            pseudo[:, list(row.labels)] = rng.random((10, len(row.labels))) < 0.6
            np.save(root / sub / f"{row.filename[:11]}.npy", pseudo)
    return len(clips)


def read_floor(root: Path) -> int:
    """What any importer must do at least: parse the CSVs and load every .npy."""
    count = 0
    for name in list(WEAK_FILES.values()) + list(DENSE_FILES.values()):
        with open(root / name, newline="") as handle:
            count += sum(1 for _ in csv.reader(handle, delimiter="\t"))
    for sub in PSEUDO_DIRS.values():
        for entry in os.scandir(root / sub):
            count += int(np.load(entry.path).sum() >= 0)
    return count


def write_floor(folder: Path, count: int) -> None:
    """The file-system floor of an export: create `count` files of the same size."""
    folder.mkdir()
    payload = bytes(128 + 10 * 25 * 8)
    for i in range(count):
        with open(folder / f"{i}.npy", "wb") as handle:
            handle.write(payload)


def main() -> None:
    llp = require_llp()
    work = Path(tempfile.mkdtemp(prefix="avvp-bench-"))
    try:
        data = work / "data"
        data.mkdir()
        clips = build_dataset(llp, data)
        floor, _ = timed(lambda: read_floor(data), repeat=3)

        def fresh_import():
            db = work / f"import-{len(list(work.glob('*.sqlite')))}.sqlite"
            engine = open_database(str(db))
            report = import_llp(engine, data)
            return engine, report

        import_time, (engine, report) = timed(fresh_import, repeat=3)
        reimport_time, _ = timed(lambda: import_llp(engine, data), repeat=1)
        export_time, export_report = timed(lambda: export_labels(engine, work / "export", source="best"), repeat=1)
        create_floor, _ = timed(lambda: write_floor(work / "floor", sum(export_report.exported.values())), repeat=1)
        ratio = import_time / floor
        figures = {
            "clips": clips,
            "pseudo_files": sum(report.pseudo_files.values()),
            "read_floor_s": round(floor, 3),
            "import_s": round(import_time, 3),
            "import_over_floor": round(ratio, 2),
            "reimport_unchanged_s": round(reimport_time, 3),
            "export_all_s": round(export_time, 3),
            "export_npy_files": sum(export_report.exported.values()),
            "create_files_floor_s": round(create_floor, 3),
        }
        print(f"import of {clips} clips + {figures['pseudo_files']} pseudo-label files into SQLite: "
              f"{import_time:.2f} s; read-only floor {floor:.2f} s; ratio {ratio:.2f}x "
              f"(target <= 3x and < 10 s: {verdict(ratio <= 3 and import_time < 10)})")
        print(f"re-import of the same folder (no change): {reimport_time:.2f} s")
        print(f"export of all clips (best labels: 2 dense CSVs, status.csv, {figures['export_npy_files']} .npy): "
              f"{export_time:.2f} s; creating as many 2 kB files with raw writes takes {create_floor:.2f} s "
              f"(ratio {export_time / create_floor:.2f}x)")
        save("import_export", figures)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
