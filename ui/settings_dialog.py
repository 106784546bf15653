"""Settings: annotator name, theme, default queue filter, key bindings (with clash detection)."""
from __future__ import annotations

from PySide6.QtGui import QKeySequence
from PySide6.QtWidgets import (
    QComboBox, QDialog, QDialogButtonBox, QFormLayout, QHeaderView, QKeySequenceEdit, QLabel, QLineEdit,
    QTableWidget, QTableWidgetItem, QTabWidget, QVBoxLayout, QWidget,
)

from annotation.taxonomy import DISPLAY_NAMES
from ui.keymap import ACTIONS, action_shortcuts, class_keys, conflicts
from ui.preferences import Preferences


def default_bindings() -> dict[str, str]:
    return action_shortcuts() | {f"class:{i}": k for i, k in enumerate(class_keys())}


class SettingsDialog(QDialog):
    def __init__(self, prefs: Preferences, parent: QWidget | None = None):
        super().__init__(parent)
        self.prefs = prefs
        self.setWindowTitle("Settings")
        self.resize(560, 600)
        tabs = QTabWidget()

        general = QWidget()
        form = QFormLayout(general)
        self.annotator = QLineEdit(prefs.annotator)
        self.annotator.setPlaceholderText("Your name, stored with every edit")
        self.theme = QComboBox()
        for value, label in (("system", "Follow the system"), ("dark", "Dark"), ("light", "Light")):
            self.theme.addItem(label, value)
        self.theme.setCurrentIndex(max(0, self.theme.findData(prefs.theme)))
        defaults = prefs.default_filter()
        self.split = QComboBox()
        for split in ("train", "val", "test", "all"):
            self.split.addItem(split, split)
        self.split.setCurrentIndex(max(0, self.split.findData(defaults["split"])))
        self.status = QComboBox()
        for status in ("pending", "annotated", "out_of_taxonomy", "skipped", "any"):
            self.status.addItem(status.replace("_", " "), status)
        self.status.setCurrentIndex(max(0, self.status.findData(defaults["status"])))
        self.empty = QComboBox()
        for value, label in (("true", "only empty visual pseudo-labels"), ("false", "only non-empty"), ("any", "any")):
            self.empty.addItem(label, value)
        self.empty.setCurrentIndex(max(0, self.empty.findData(defaults["empty_visual"])))
        form.addRow("Annotator", self.annotator)
        form.addRow("Theme", self.theme)
        form.addRow(QLabel("<b>Default review queue</b>"))
        form.addRow("Split", self.split)
        form.addRow("Status", self.status)
        form.addRow("Visual pseudo-label", self.empty)
        tabs.addTab(general, "General")

        keys = QWidget()
        layout = QVBoxLayout(keys)
        shortcuts, per_class = prefs.shortcuts(), prefs.class_keys()
        self.rows: list[tuple[str, QKeySequenceEdit]] = []
        self.table = QTableWidget(len(ACTIONS) + len(per_class), 2)
        self.table.setHorizontalHeaderLabels(["Action", "Key"])
        self.table.verticalHeader().hide()
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        entries = [(name, ACTIONS[name][0], shortcuts[name]) for name in ACTIONS]
        entries += [(f"class:{i}", f"Class: {DISPLAY_NAMES[i]}", key) for i, key in enumerate(per_class)]
        for row, (name, label, key) in enumerate(entries):
            self.table.setItem(row, 0, QTableWidgetItem(label))
            editor = QKeySequenceEdit(QKeySequence(key))
            editor.setMaximumSequenceLength(1)
            editor.keySequenceChanged.connect(self._check)
            self.table.setCellWidget(row, 1, editor)
            self.rows.append((name, editor))
        self.clash = QLabel("")
        self.clash.setWordWrap(True)
        layout.addWidget(self.table)
        layout.addWidget(self.clash)
        tabs.addTab(keys, "Key bindings")

        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
            | QDialogButtonBox.StandardButton.RestoreDefaults
        )
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        self.buttons.button(QDialogButtonBox.StandardButton.RestoreDefaults).clicked.connect(self._restore)
        outer = QVBoxLayout(self)
        outer.addWidget(tabs)
        outer.addWidget(self.buttons)

    def bindings(self) -> dict[str, str]:
        return {name: editor.keySequence().toString() for name, editor in self.rows}

    def _problems(self) -> list[str]:
        values = self.bindings()
        actions = {k: v for k, v in values.items() if not k.startswith("class:")}
        classes = [values[f"class:{i}"] for i in range(len(values) - len(actions))]
        return conflicts(actions, classes)

    def _check(self) -> None:
        problems = self._problems()
        self.clash.setText("<span style='color:#e5484d'>" + "<br>".join(problems) + "</span>" if problems else "")
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setEnabled(not problems)

    def _restore(self) -> None:
        defaults = default_bindings()
        for name, editor in self.rows:
            editor.setKeySequence(QKeySequence(defaults[name]))

    def accept(self) -> None:
        if self._problems():
            return
        self.prefs.annotator = self.annotator.text()
        self.prefs.theme = self.theme.currentData()
        empty = {"true": True, "false": False}.get(self.empty.currentData())
        self.prefs.set_default_filter(self.split.currentData(), self.status.currentData(), empty)
        defaults = default_bindings()
        self.prefs.set_key_overrides({k: v for k, v in self.bindings().items() if v != defaults[k]})
        super().accept()
