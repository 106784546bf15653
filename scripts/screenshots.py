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
    parser.add_argument("--only", choices=("avs_masks", "pseudo_sources"), help="take only this screenshot (set)")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.only is not None:
        from PySide6.QtWidgets import QApplication

        shot = {"avs_masks": avs_masks, "pseudo_sources": pseudo_sources}[args.only]
        shot(QApplication.instance() or QApplication([]), Path(tempfile.mkdtemp(prefix="avvp-shots-")), out)
        return 0

    from PySide6.QtWidgets import QApplication

    from annotation.db import open_database
    from annotation.demo import build_demo
    from annotation.importer import import_llp
    from annotation.llp_csv import dense_grids, read_dense_csv
    from annotation.presence import heartbeat
    from ui.history_dialog import HistoryDialog
    from ui.theme import apply_theme

    app = QApplication.instance() or QApplication([])
    work = Path(tempfile.mkdtemp(prefix="avvp-shots-"))
    demo = build_demo(work / "demo").out_dir
    for dark, name in ((True, "main_window_dark.png"), (False, "main_window_light.png")):
        apply_theme(app, dark=dark)
        db = str(work / f"{name}.sqlite")
        engine = open_database(db)
        import_llp(engine, demo)
        window = open_window(engine, db, work / "settings.ini")
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
    avs_masks(app, work, out)
    pseudo_sources(app, work, out)
    return 0


def open_window(engine, db: str, settings: Path):
    """The main window on `engine` as annotator "demo", at the README's size, shown."""
    from ui.main_window import MainWindow
    from ui.preferences import Preferences

    prefs = Preferences(settings)
    prefs.annotator = "demo"
    window = MainWindow(engine, prefs, db)
    window.resize(1600, 1000)
    window.show()
    return window


def model_loop(app, work: Path, demo: Path, out: Path) -> None:
    """The training panel mid-run (a real training process on a 200-clip demo with videos: the 32-clip
    one is too small to learn from), then the run's predictions over the video and on the timelines."""
    import time

    from annotation.db import open_database
    from annotation.importer import import_llp

    db = str(work / "loop.sqlite")
    engine = open_database(db)
    import_llp(engine, demo)
    window = open_window(engine, db, work / "loop.ini")
    window.show_training()
    panel = window.training
    for box in panel.predict.values():
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


def avs_masks(app, work: Path, out: Path) -> None:
    """The segmentation window (Model > Segmentation masks…) on the synthetic S4 demo with the masks of a real
    tiny AVS-Mamba run (`avs train --config tiny --db … --predict test`, about a minute on a CPU), clips
    ordered worst IoU first and three frames decided. SYNTHETIC data."""
    from annotation.avs_demo import build_avs_demo
    from annotation.avs_store import decide, import_avsbench
    from annotation.db import open_database
    from app.cli import run_cli
    from ui.avs_view import AVSWindow
    from ui.theme import apply_theme

    apply_theme(app, dark=True)
    root = work / "avsdemo"
    build_avs_demo(root, "s4", clips=120, size=224, seed=4)
    db = str(work / "avs.sqlite")
    engine = open_database(db)
    import_avsbench(engine, root, "s4")
    code = run_cli(["avs", "train", "--data", str(root), "--subset", "s4", "--model", "avs_mamba", "--config", "tiny",
                    "--image-size", "64", "--lr", "1e-3", "--batch-size", "4", "--epochs", "8", "--device", "cpu",
                    "--out", str(work / "avs-run"), "--db", db, "--name", "avs_mamba-tiny", "--predict", "test"])
    if code != 0:
        raise SystemExit(f"avs train failed ({code})")
    window = AVSWindow(engine, "demo", sound=False, db_label=db)
    window.resize(1500, 900)
    window.show()
    window.split_combo.setCurrentIndex(window.split_combo.findData("test"))
    window.order_combo.setCurrentIndex(window.order_combo.findData("worst"))
    while window.scoring():
        app.processEvents()
    app.processEvents()
    window.advance_check.setChecked(False)
    window.select_row(0)
    clip = window.record.id
    for frame, status in ((0, "accepted"), (1, "rejected")):
        window.set_frame(frame)
        window.decide(status)
    decide(engine, clip, 2, "accepted", "prediction:avs_mamba-tiny", 0, "maria")  # a colleague's decision
    window.open_clip(clip, frame=1)
    for _ in range(5):
        app.processEvents()
    window.grab().save(str(out / "avs_masks.png"))
    print(out / "avs_masks.png")
    window.close()
    engine.dispose()


def pseudo_sources(app, work: Path, out: Path) -> None:
    """A zero-shot pseudo-label set ("zero-shot", `pseudo-label --thresholds val` on the 32-clip demo's features)
    chosen in the timelines' Pseudo layer picker on a clip where it differs from the labels in a few cells;
    then Model > Generate pseudo-labels… after a real run of the command from the dialog, with its summary."""
    import time

    from annotation.db import open_database
    from annotation.demo import build_demo
    from annotation.importer import import_llp
    from app.cli import run_cli
    from ui.theme import apply_theme

    apply_theme(app, dark=True)
    demo = build_demo(work / "demo").out_dir  # the one main() built, when it did
    db = str(work / "pseudo.sqlite")
    engine = open_database(db)
    import_llp(engine, demo)
    code = run_cli(["pseudo-label", "--data", str(demo), "--method", "zero-shot", "--thresholds", "val",
                    "--name", "zero-shot", "--db", db])
    if code != 0:
        raise SystemExit(f"pseudo-label failed ({code})")
    window = open_window(engine, db, work / "pseudo.ini")
    window.team.timer.stop()
    best: tuple[int, str] | None = None
    for clip_id in window.queue.visible_clip_ids():  # a clip with video where the set differs in a few cells
        window.queue.select_clip(clip_id)
        view = window.session.view
        sets = {t: window.store.track(clip_id, t, "pseudo:zero-shot") for t in ("audio", "visual")}
        if view.clip.video_path is None or not all(s.exists and s.grid.any() for s in sets.values()):
            continue
        diff = [int((sets[t].grid != view.current[t]).sum()) for t in sets]
        if all(diff) and (best is None or abs(sum(diff) - 8) < best[0]):
            best = (abs(sum(diff) - 8), clip_id)
    if best is None:
        raise SystemExit("no demo clip with video has zero-shot labels that differ from its labels")
    window.queue.select_clip(best[1])
    combo = window.timelines.pseudo_combo
    combo.setCurrentIndex(combo.findData("pseudo:zero-shot"))  # the reviewer picks the set in the Pseudo layer box
    view = window.session.view
    segment = max(range(10), key=lambda s: sum(int(view.layers[t]["pseudo"][:, s].sum()) for t in ("audio", "visual")))
    window.player.seek(segment + 0.4)
    for _ in range(5):
        app.processEvents()
    if window.player.displayed_frame() is None:
        raise SystemExit("the player shows no frame of the demo clip")
    window.grab().save(str(out / "pseudo_sources.png"))
    print(out / "pseudo_sources.png")

    dialog = window.show_pseudo_dialog()
    dialog.name.setText("zs-auto")  # automatic thresholds: val's on the demo (no real encoders' features)
    finished: list[str] = []
    dialog.runner.finished.connect(lambda status, *_: finished.append(status))
    if not dialog.start():
        raise SystemExit(f"the dialog refused: {dialog.summary.text()}")
    deadline = time.monotonic() + 300
    while not finished and time.monotonic() < deadline:
        app.processEvents()
        time.sleep(0.01)
    if finished != ["finished"]:
        raise SystemExit(f"the dialog's run ended {finished}: {dialog.log_view.toPlainText()[-2000:]}")
    dialog.adjustSize()
    for _ in range(5):
        app.processEvents()
    dialog.grab().save(str(out / "pseudo_dialog.png"))
    print(out / "pseudo_dialog.png")
    dialog.reject()
    window.close()
    engine.dispose()


if __name__ == "__main__":
    sys.exit(main())
