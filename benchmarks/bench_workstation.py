"""The workstation as an annotator feels it (offscreen main window).

Database: the real LLP CSVs (11,849 clips, when ../shared is there) plus the
32-clip demo project with real videos, in one SQLite file. Measured:
- selecting a clip in the queue until its first frame, waveform/spectrogram and
  grids are drawn (select + processEvents), median over the demo clips;
  target < 150 ms; baseline in the same run: opening the same video with
  OpenCV and decoding its first frame (the unavoidable part);
- edit-to-committed latency: `ClipSession.set_cells` returns after the SQLite
  commit (edit history row included), median of 300 edits; target < 20 ms;
  baseline: a bare UPDATE + COMMIT of one row on the same database.
"""
from __future__ import annotations

import os
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import cv2
import numpy as np

from common import SHARED_LLP, save, verdict

from PySide6.QtWidgets import QApplication

from annotation.db import open_database
from annotation.demo import build_demo
from annotation.importer import import_llp
from ui.main_window import MainWindow
from ui.preferences import Preferences


def first_frame_floor(path: str) -> float:
    start = time.perf_counter()
    capture = cv2.VideoCapture(path)
    ok, _ = capture.read()
    capture.release()
    assert ok
    return time.perf_counter() - start


def main() -> None:
    app = QApplication.instance() or QApplication([])
    work = Path(tempfile.mkdtemp(prefix="avvp-bench-ws-"))
    demo = build_demo(work / "demo").out_dir
    db = work / "studio.sqlite"
    engine = open_database(str(db))
    if (SHARED_LLP / "AVVP_train.csv").exists():
        import_llp(engine, SHARED_LLP)
    import_llp(engine, demo)
    prefs = Preferences(work / "settings.ini")
    prefs.annotator = "bench"
    window = MainWindow(engine, prefs, str(db))
    window.resize(1600, 1000)
    window.show()
    app.processEvents()

    clips = [c for c in window.store.clips("all") if c.video_path]
    select_ms, floor_ms = [], []
    for clip in clips * 2:  # second pass: decoded audio cached, as when going back and forth
        start = time.perf_counter()
        window.queue.select_clip(clip.id) or window.show_clip(clip.id)
        app.processEvents()
        select_ms.append((time.perf_counter() - start) * 1000)
        floor_ms.append(first_frame_floor(clip.video_path) * 1000)
    first_pass = select_ms[: len(clips)]

    rng = np.random.default_rng(0)
    window.show_clip(clips[0].id)
    edit_ms, commit_ms = [], []
    for _ in range(300):
        cls, seg = int(rng.integers(25)), int(rng.integers(10))
        track = "audio" if rng.random() < 0.5 else "visual"
        value = 1 - int(window.session.current(track)[cls, seg])
        start = time.perf_counter()
        window.session.set_cells(track, [(cls, seg)], value)
        edit_ms.append((time.perf_counter() - start) * 1000)
        commit_ms.append(window.session.last_commit_ms)
    raw = sqlite3.connect(str(db))
    raw.execute("PRAGMA journal_mode=WAL")
    raw.execute("PRAGMA synchronous=NORMAL")
    bare = []
    for i in range(300):
        start = time.perf_counter()
        raw.execute("UPDATE reviews SET note=? WHERE clip_id=?", (str(i), clips[0].id))
        raw.commit()
        bare.append((time.perf_counter() - start) * 1000)
    raw.close()

    figures = {
        "clips_in_database": len(window.store.clips("all")),
        "select_to_drawn_median_ms": round(statistics.median(select_ms), 1),
        "select_to_drawn_first_visit_median_ms": round(statistics.median(first_pass), 1),
        "select_to_drawn_max_ms": round(max(select_ms), 1),
        "first_frame_floor_median_ms": round(statistics.median(floor_ms), 1),
        "edit_to_committed_median_ms": round(statistics.median(edit_ms), 2),
        "edit_to_committed_p95_ms": round(float(np.percentile(edit_ms, 95)), 2),
        "store_commit_median_ms": round(statistics.median(commit_ms), 2),
        "bare_sqlite_commit_median_ms": round(statistics.median(bare), 3),
    }
    print(f"database: {figures['clips_in_database']} clips")
    print(f"select clip -> first frame, audio view and grids drawn: median {figures['select_to_drawn_median_ms']} ms "
          f"(first visits {figures['select_to_drawn_first_visit_median_ms']} ms, max {figures['select_to_drawn_max_ms']} ms; "
          f"OpenCV open + first frame alone {figures['first_frame_floor_median_ms']} ms) "
          f"(target < 150 ms: {verdict(figures['select_to_drawn_median_ms'] < 150)})")
    print(f"edit -> committed: median {figures['edit_to_committed_median_ms']} ms, p95 {figures['edit_to_committed_p95_ms']} ms "
          f"(store commit {figures['store_commit_median_ms']} ms; bare SQLite UPDATE+COMMIT "
          f"{figures['bare_sqlite_commit_median_ms']} ms) (target < 20 ms: "
          f"{verdict(figures['edit_to_committed_median_ms'] < 20)})")
    save("workstation", figures)
    window.close()


if __name__ == "__main__":
    main()
