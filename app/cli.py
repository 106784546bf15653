"""Command-line front end: one subcommand module per operation.

Each `app.cmd_*` module exposes `register(subparsers)`, which adds its parser
and sets `func(args) -> int` as the default. Data errors are reported as one
clear line on stderr with exit status 2, never a traceback.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from annotation.errors import DataFileError

COMMAND_MODULES = ("gui", "cmd_import", "cmd_export", "cmd_eval", "cmd_stats", "cmd_demo")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="avvp-studio",
        description="AVVP Studio: review, edit, export and evaluate audio-visual video parsing labels.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"app.{name}").register(subparsers)
    return parser


def run_cli(argv: list[str]) -> int:
    parser = build_parser()
    if not argv or argv[0].startswith("--") and argv[0] not in ("--help", "-h"):
        argv = ["gui", *argv]  # no command: the desktop program
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help()
        return 1
    try:
        return int(args.func(args) or 0)
    except DataFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
