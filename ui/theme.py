"""Colours and style: one place for the look, dark or light following the system."""
from __future__ import annotations

from PySide6.QtGui import QColor, QGuiApplication, QPalette
from PySide6.QtWidgets import QApplication

from annotation.taxonomy import COLOURS, NUM_CLASSES

# Semantic colours used by several widgets (timelines, queue, player overlays).
ACCENT = "#3d8bfd"
PLAYHEAD = "#ff5a36"
ADDED = "#2fbf71"  # present now, absent in the reference layer
REMOVED = "#e5484d"  # absent now, present in the reference layer


def class_colour(index: int) -> QColor:
    return QColor(COLOURS[index % NUM_CLASSES])


def is_dark(app: QGuiApplication | None = None) -> bool:
    """Follow the system: the window colour of the active palette decides."""
    app = app or QGuiApplication.instance()
    if app is None:
        return False
    hints = app.styleHints()
    scheme = getattr(hints, "colorScheme", None)
    if scheme is not None:
        from PySide6.QtCore import Qt

        value = scheme()
        if value == Qt.ColorScheme.Dark:
            return True
        if value == Qt.ColorScheme.Light:
            return False
    return app.palette().color(QPalette.ColorRole.Window).lightness() < 128


def grid_background(dark: bool) -> QColor:
    return QColor("#23272e") if dark else QColor("#f4f5f7")


def grid_lines(dark: bool) -> QColor:
    return QColor("#3a404a") if dark else QColor("#d5d8de")


def text_colour(dark: bool) -> QColor:
    return QColor("#e6e8eb") if dark else QColor("#1f2328")


def muted_text(dark: bool) -> QColor:
    return QColor("#9aa1ab") if dark else QColor("#667080")


def dark_for(preference: str | None) -> bool | None:
    """The theme setting ("system", "dark", "light") as apply_theme's `dark` (None: follow the system)."""
    return {"dark": True, "light": False}.get(preference or "system")


def apply_theme(app: QApplication, dark: bool | None = None) -> bool:
    """Fusion style with a palette matching the system scheme; returns whether it is dark."""
    app.setStyle("Fusion")
    dark = is_dark(app) if dark is None else dark
    palette = QPalette()
    if dark:
        roles = {
            QPalette.ColorRole.Window: "#1b1e23", QPalette.ColorRole.WindowText: "#e6e8eb",
            QPalette.ColorRole.Base: "#15171b", QPalette.ColorRole.AlternateBase: "#20242a",
            QPalette.ColorRole.Text: "#e6e8eb", QPalette.ColorRole.Button: "#262a31",
            QPalette.ColorRole.ButtonText: "#e6e8eb", QPalette.ColorRole.Highlight: ACCENT,
            QPalette.ColorRole.HighlightedText: "#ffffff", QPalette.ColorRole.ToolTipBase: "#262a31",
            QPalette.ColorRole.ToolTipText: "#e6e8eb", QPalette.ColorRole.PlaceholderText: "#7d8590",
            QPalette.ColorRole.Link: ACCENT,
        }
    else:
        roles = {
            QPalette.ColorRole.Window: "#f6f7f9", QPalette.ColorRole.WindowText: "#1f2328",
            QPalette.ColorRole.Base: "#ffffff", QPalette.ColorRole.AlternateBase: "#f1f3f6",
            QPalette.ColorRole.Text: "#1f2328", QPalette.ColorRole.Button: "#eceef2",
            QPalette.ColorRole.ButtonText: "#1f2328", QPalette.ColorRole.Highlight: ACCENT,
            QPalette.ColorRole.HighlightedText: "#ffffff", QPalette.ColorRole.ToolTipBase: "#ffffff",
            QPalette.ColorRole.ToolTipText: "#1f2328", QPalette.ColorRole.PlaceholderText: "#8c959f",
            QPalette.ColorRole.Link: ACCENT,
        }
    for role, colour in roles.items():
        palette.setColor(role, QColor(colour))
    app.setPalette(palette)
    app.setProperty("avvp_dark", dark)
    return dark


def current_is_dark() -> bool:
    app = QApplication.instance()
    value = app.property("avvp_dark") if app is not None else None
    return bool(value) if value is not None else is_dark()
