"""Screenshots of the main window on the demo project, taken offscreen (for the README).

Usage: QT_QPA_PLATFORM=offscreen python scripts/screenshots.py [--out docs/screenshots]
Uses a throw-away database and demo folder, never the user's own.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=str(REPO / "docs" / "screenshots"))
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    from PySide6.QtWidgets import QApplication

    from annotation.db import open_database
    from annotation.demo import build_demo
    from annotation.importer import import_llp
    from annotation.llp_csv import dense_grids, read_dense_csv
    from annotation.presence import heartbeat
    from ui.history_dialog import HistoryDialog
    from ui.main_window import MainWindow
    from ui.preferences import Preferences
    from ui.theme import apply_theme

    app = QApplication.instance() or QApplication([])
    work = Path(tempfile.mkdtemp(prefix="avvp-shots-"))
    demo = build_demo(work / "demo").out_dir
    for dark, name in ((True, "main_window_dark.png"), (False, "main_window_light.png")):
        apply_theme(app, dark=dark)
        db = str(work / f"{name}.sqlite")
        engine = open_database(db)
        import_llp(engine, demo)
        prefs = Preferences(work / "settings.ini")
        prefs.annotator = "demo"
        window = MainWindow(engine, prefs, db)
        window.resize(1600, 1000)
        window.show()
        clip_id = window.queue.visible_clip_ids()[0]
        window.queue.select_clip(clip_id)
        view = window.session.view
        # an annotator fixing the empty visual pseudo-label: what the demo clip really shows
        truth = dense_grids(read_dense_csv(demo / "demo_truth" / "visual.csv"), [view.clip.filename])[0]
        cells = [tuple(c) for c in np.argwhere(truth)]
        window.session.set_cells("visual", cells, 1)
        window.player.seek(3.4)
        # a second annotator (another window, simulated) has the clip open: "Also open by"
        heartbeat(engine, "screenshot-colleague", "maria", clip_id)
        window.team.poll().join()
        for _ in range(5):
            app.processEvents()
        window.grab().save(str(out / name))
        print(out / name)
        if dark:
            window.session.set_cells("audio", [(int(view.clip.weak[0]), 9)], 1)
            window.session.set_review("annotated")
            history = HistoryDialog(window.store, view.clip, window._restore, window)
            history.table.selectRow(2)
            history.show()
            for _ in range(5):
                app.processEvents()
            history.grab().save(str(out / "history_dialog.png"))
            print(out / "history_dialog.png")
            history.close()
        window.close()
        engine.dispose()
    apply_theme(app, dark=True)
    model_loop(app, work, build_demo(work / "demo200", clips=200).out_dir, out)
    return 0


def model_loop(app, work: Path, demo: Path, out: Path) -> None:
    """The training panel mid-run (a real training process on a 200-clip demo with videos: the 32-clip
    one is too small to learn from), then the run's predictions over the video and on the timelines."""
    import time

    from annotation.db import open_database
    from annotation.importer import import_llp
    from ui.main_window import MainWindow
    from ui.preferences import Preferences

    db = str(work / "loop.sqlite")
    engine = open_database(db)
    import_llp(engine, demo)
    prefs = Preferences(work / "loop.ini")
    prefs.annotator = "demo"
    window = MainWindow(engine, prefs, db)
    window.resize(1600, 1000)
    window.show()
    window.show_training()
    panel = window.training
    for split, box in panel.predict.items():
        box.setChecked(True)  # train too: the queue's clips get the overlay
    panel.name.setText("valor-demo")
    panel.epochs.setValue(30)
    epochs: list[dict] = []
    panel.runner.events.connect(lambda batch: epochs.extend(e for e in batch if e["event"] == "epoch"))
    finished: list[str] = []
    panel.runner.finished.connect(lambda status, *_: finished.append(status))
    panel.start_training()
    deadline = time.monotonic() + 600
    while len(epochs) < 12 and not finished and time.monotonic() < deadline:
        app.processEvents()
        time.sleep(0.01)
    panel._redraw()
    app.processEvents()
    window.grab().save(str(out / "training_panel.png"))
    print(out / "training_panel.png")
    while not finished and time.monotonic() < deadline:
        app.processEvents()
        time.sleep(0.01)
    if finished != ["finished"]:
        raise SystemExit(f"the demo training run ended {finished}: {panel.log_view.toPlainText()[-2000:]}")
    window.queue.raise_()
    clip_id = window.queue.visible_clip_ids()[0]
    window.queue.select_clip(clip_id)
    view = window.session.view
    segment = max(range(10), key=lambda s: int(view.layers["audio"]["prediction"][:, s].sum()
                                               + view.layers["visual"]["prediction"][:, s].sum()
                                               + view.current["audio"][:, s].sum()))
    window.player.seek(segment + 0.4)
    for _ in range(5):
        app.processEvents()
    window.grab().save(str(out / "model_overlay.png"))
    print(out / "model_overlay.png")
    window.close()
    engine.dispose()


if __name__ == "__main__":
    sys.exit(main())
