"""Domain model of AVVP Studio: taxonomy, label grids, clips, persistence, import/export.

This package never imports Qt (a test enforces it) so that it serves the CLI,
training code and GUI alike.
"""
