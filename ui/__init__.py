"""PySide6 + pyqtgraph widgets. Only this package (and app/) may import Qt."""
