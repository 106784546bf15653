"""`avvp-studio` (no command) / `avvp-studio gui`: the desktop program."""
from __future__ import annotations

import argparse
import getpass
import os
import sys

from annotation.stats import dataset_stats
from app.settings import data_dir, default_demo_dir, resolve_database


def register(subparsers) -> None:
    parser = subparsers.add_parser("gui", help="open the annotation workstation (the default)")
    add_gui_arguments(parser)
    parser.set_defaults(func=run)


def add_gui_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", help="SQLAlchemy URL or SQLite file (default: $AVVP_STUDIO_DB or the per-user database)")
    parser.add_argument("--demo", action="store_true",
                        help="if the database is empty, create and import the demo project without asking")


def _has_display() -> bool:
    if os.environ.get("QT_QPA_PLATFORM"):
        return True
    if sys.platform in ("win32", "darwin"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def build_demo_task(engine, progress):
    """Build the demo project (once) and import it: the first-run path of the GUI and `make run`."""
    from annotation.demo import build_demo
    from annotation.importer import import_llp

    summary = build_demo(default_demo_dir(), progress=lambda done, total, message: progress("demo: " + message, done, total))
    return import_llp(engine, summary.out_dir, progress)


def run(args: argparse.Namespace) -> int:
    if not _has_display():
        print("error: no display found (DISPLAY/WAYLAND_DISPLAY unset). On a desktop run it there; "
              "headless, set QT_QPA_PLATFORM=offscreen (for screenshots: scripts/screenshots.py).", file=sys.stderr)
        return 2
    from PySide6.QtWidgets import QApplication, QInputDialog, QMessageBox

    from ui.database_dialog import open_or_choose
    from ui.main_window import MainWindow
    from ui.preferences import Preferences
    from ui.progress_dialog import TaskProgressDialog
    from ui.theme import apply_theme, dark_for
    from ui.workers import BackgroundTask

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("AVVP Studio")
    app.setOrganizationName("AVVP Studio")
    try:
        prefs = Preferences(data_dir() / "settings.ini")
    except OSError as exc:  # launched from a desktop icon there is no terminal: say it in a window too
        reason = (f"AVVP Studio cannot create its settings folder {data_dir()}:\n{exc.strerror or exc}\n\n"
                  "Set AVVP_STUDIO_HOME to a folder you can write to.")
        print(f"error: {reason}", file=sys.stderr)
        QMessageBox.critical(None, "Cannot start AVVP Studio", reason)
        return 2
    apply_theme(app, dark_for(prefs.theme))
    opened = open_or_choose(resolve_database(args.db))
    if opened is None:
        print("error: no database could be opened; nothing was started", file=sys.stderr)
        return 2
    engine, url = opened

    if not prefs.annotator:
        name, ok = QInputDialog.getText(None, "Welcome to AVVP Studio",
                                        "Your name (stored with every label you edit):", text=getpass.getuser())
        prefs.annotator = name if ok and name.strip() else getpass.getuser()

    from ui.avs_view import count_avs_clips

    segmentation = count_avs_clips(engine)[0]
    if sum(dataset_stats(engine)["clips"].values()) == 0 and not segmentation:
        wanted = args.demo or QMessageBox.question(
            None, "Empty database",
            "This database holds no clips yet. Create the demo project (32 synthetic clips with sound) and import it?",
        ) == QMessageBox.StandardButton.Yes
        if wanted:
            dialog = TaskProgressDialog(BackgroundTask(lambda p: build_demo_task(engine, p), "Demo project"))
            dialog.start()
            dialog.exec()

    window = MainWindow(engine, prefs, url)
    window.show()
    if segmentation and sum(dataset_stats(engine)["clips"].values()) == 0:
        window.statusBar().showMessage(f"{segmentation} audio-visual segmentation clips and no parsing clips in this "
                                       "database: Model > Segmentation masks…", 0)
    return app.exec()
