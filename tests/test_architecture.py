"""House rules of the design card that code review alone would let slip."""
from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
QT_MODULES = ("PySide6", "PyQt5", "PyQt6", "PySide2", "shiboken6", "pyqtgraph", "qtpy")
CORE_PACKAGES = ("annotation", "inference")


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_core_packages_never_import_qt_statically():
    offenders = [
        f"{path.relative_to(REPO)} imports {name}"
        for package in CORE_PACKAGES
        for path in (REPO / package).rglob("*.py")
        for name in _imports(path)
        if name in QT_MODULES
    ]
    assert offenders == []


def test_core_packages_never_import_qt_at_runtime():
    """Import every module of annotation/ and inference/ in a fresh interpreter; no Qt may load."""
    modules = [
        info.name
        for package in CORE_PACKAGES
        for info in pkgutil.walk_packages([str(REPO / package)], prefix=f"{package}.")
        if ".migrations" not in info.name
    ]
    assert len(modules) >= 8
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {QT_MODULES!r}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.strip() == "[]"


def test_dependencies_point_one_way():
    """annotation never imports inference/ui/app; inference never imports ui/app; ui never imports app."""
    forbidden = {"annotation": {"inference", "ui", "app"}, "inference": {"ui", "app"}, "ui": {"app"}}
    offenders = [
        f"{path.relative_to(REPO)} imports {name}"
        for package, banned in forbidden.items()
        for path in (REPO / package).rglob("*.py")
        for name in _imports(path)
        if name in banned
    ]
    assert offenders == []


def test_installed_pyside_keeps_none_alive():
    """PySide6 6.12.0 leaks references to None on every void call and aborts the app after
    minutes of use (pinned out in pyproject.toml); this guards the pin."""
    code = (
        "import sys\nfrom PySide6.QtCore import QRectF, QObject, Signal\n"
        "class O(QObject):\n    s = Signal(bool)\n"
        "o = O(); o.s.connect(lambda v: None); r = QRectF()\n"
        "n, t = sys.getrefcount(None), sys.getrefcount(True)\n"
        "for _ in range(2000):\n    r.setWidth(1.0); o.s.emit(True)\n"
        "print(n - sys.getrefcount(None), t - sys.getrefcount(True))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    lost_none, lost_true = map(int, out.stdout.split())
    assert lost_none < 100 and lost_true < 100, out.stdout
