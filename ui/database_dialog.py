"""Opening the label store from the window: a database that cannot be opened is explained in a
dialog that offers another one (an existing file, or a new one), never a silent exit.

Launched from a desktop icon there is no terminal to read an error in; so the start-up path and
File > Open database both go through `open_or_choose`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from PySide6.QtWidgets import QFileDialog, QMessageBox, QWidget
from sqlalchemy import Engine

from annotation.db import DatabaseError, open_database

Ask = Callable[[str, str], str | None]  # (database, reason) -> "open" | "new" | None (give up)
Pick = Callable[[str], str | None]  # "open" | "new" -> a file path, or None


def ask_in_dialog(parent: QWidget | None) -> Ask:
    def ask(database: str, reason: str) -> str | None:
        box = QMessageBox(QMessageBox.Icon.Critical, "Cannot open the database",
                          f"AVVP Studio cannot open its label database:\n\n{reason}\n\n"
                          "Choose another database, or create a new one.", parent=parent)
        box.setDetailedText(database)
        open_button = box.addButton("Open another…", QMessageBox.ButtonRole.AcceptRole)
        new_button = box.addButton("Create a new one…", QMessageBox.ButtonRole.ActionRole)
        box.addButton("Quit" if parent is None else "Cancel", QMessageBox.ButtonRole.RejectRole)
        box.exec()
        return {open_button: "open", new_button: "new"}.get(box.clickedButton())
    return ask


def pick_in_dialog(parent: QWidget | None) -> Pick:
    def pick(kind: str) -> str | None:
        if kind == "open":
            path, _ = QFileDialog.getOpenFileName(parent, "Open database", str(Path.home()),
                                                  "SQLite databases (*.sqlite *.db);;All files (*)")
        else:
            path, _ = QFileDialog.getSaveFileName(parent, "New database", str(Path.home() / "studio.sqlite"),
                                                  "SQLite databases (*.sqlite *.db)")
        return path or None
    return pick


def open_or_choose(database: str, parent: QWidget | None = None, ask: Ask | None = None,
                   pick: Pick | None = None) -> tuple[Engine, str] | None:
    """(engine, database) of `database`, or of the one the user picks after being told why it
    failed; None when the user gives up."""
    ask, pick = ask or ask_in_dialog(parent), pick or pick_in_dialog(parent)
    while True:
        try:
            return open_database(database), database
        except DatabaseError as exc:
            choice = ask(database, str(exc))
            if choice is None:
                return None
            database = pick(choice) or database
