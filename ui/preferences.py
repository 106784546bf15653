"""User preferences in an INI file (QSettings): annotator, key bindings, default filters, theme."""
from __future__ import annotations

import json
from pathlib import Path

from PySide6.QtCore import QByteArray, QSettings

from annotation.queue import QueueFilter
from ui.keymap import action_shortcuts, class_keys


class Preferences:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.qs = QSettings(str(self.path), QSettings.Format.IniFormat)

    def _get(self, key: str, default: str = "") -> str:
        value = self.qs.value(key, default)
        return default if value is None else str(value)

    @property
    def annotator(self) -> str:
        return self._get("annotator")

    @annotator.setter
    def annotator(self, name: str) -> None:
        self.qs.setValue("annotator", name.strip())
        self.qs.sync()

    @property
    def theme(self) -> str:  # system | dark | light
        return self._get("theme", "system")

    @theme.setter
    def theme(self, value: str) -> None:
        self.qs.setValue("theme", value)
        self.qs.sync()

    def key_overrides(self) -> dict[str, str]:
        self.qs.beginGroup("keys")
        try:
            return {k.replace("_colon_", ":"): str(self.qs.value(k)) for k in self.qs.childKeys()}
        finally:
            self.qs.endGroup()

    def set_key_overrides(self, overrides: dict[str, str]) -> None:
        self.qs.remove("keys")
        self.qs.beginGroup("keys")
        for name, key in overrides.items():
            self.qs.setValue(name.replace(":", "_colon_"), key)
        self.qs.endGroup()
        self.qs.sync()

    def shortcuts(self) -> dict[str, str]:
        return action_shortcuts(self.key_overrides())

    def class_keys(self) -> list[str]:
        return class_keys(self.key_overrides())

    def default_filter(self) -> dict[str, str]:
        return {
            "split": self._get("filter/split", "train"),
            "status": self._get("filter/status", "pending"),
            "empty_visual": self._get("filter/empty_visual", "true"),
        }

    def queue_filter(self) -> QueueFilter:
        """The queue the window opens on (settings: default review queue)."""
        saved = self.default_filter()
        split = None if saved["split"] == "all" else saved["split"]
        statuses = None if saved["status"] == "any" else frozenset({saved["status"]})
        empty = {"true": True, "false": False}.get(saved["empty_visual"])
        try:
            return QueueFilter(split=split, statuses=statuses, empty_visual=empty)
        except ValueError:  # a hand-edited settings file: fall back to the MUG step
            return QueueFilter()

    def set_default_filter(self, split: str, status: str, empty_visual: bool | None) -> None:
        self.qs.setValue("filter/split", split)
        self.qs.setValue("filter/status", status)
        self.qs.setValue("filter/empty_visual", "any" if empty_visual is None else str(empty_visual).lower())
        self.qs.sync()

    def workspace(self) -> dict:
        """What the window looked like when it was closed (see MainWindow.save_workspace); {} at first."""
        value = self._get("workspace/state_json", "")
        try:
            data = json.loads(value) if value else {}
        except json.JSONDecodeError:  # a hand-edited file: start from the defaults
            return {}
        for key in ("geometry", "dock_state", "media_splitter", "top_splitter"):
            blob = self.qs.value(f"workspace/{key}")
            if isinstance(blob, QByteArray):
                data[key] = blob
        return data

    def set_workspace(self, data: dict) -> None:
        self.qs.setValue("workspace/state_json", json.dumps({k: v for k, v in data.items()
                                                            if not isinstance(v, QByteArray)}))
        for key, value in data.items():
            if isinstance(value, QByteArray):
                self.qs.setValue(f"workspace/{key}", value)
        self.qs.sync()

    def recent_value(self, key: str, default: str = "") -> str:
        return self._get(f"recent/{key}", default)

    def set_recent_value(self, key: str, value: str) -> None:
        self.qs.setValue(f"recent/{key}", value)
        self.qs.sync()
