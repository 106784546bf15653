"""Command-line front end: one subcommand module per operation.

Each `app.cmd_*` module exposes `register(subparsers)`, which adds its parser
and sets `func(args) -> int` as the default. Data errors are reported as one
clear line on stderr with exit status 2, never a traceback.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from sqlalchemy.exc import SQLAlchemyError

from annotation.db import DatabaseError
from annotation.errors import DataFileError
from annotation.files import FolderBusyError
from app.errors import UsageError

COMMAND_MODULES = (
    "gui",
    "cmd_import",
    "cmd_export",
    "cmd_eval",
    "cmd_stats",
    "cmd_agreement",
    "cmd_runs",
    "cmd_demo",
    "cmd_prior",
    "cmd_train",
    "cmd_predict",
    "cmd_avs",
    "cmd_pseudo",
    "cmd_ear",
    "cmd_features",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="avvp-studio",
        description="AVVP Studio: review, edit, export and evaluate audio-visual video parsing labels. "
        "Without a command it opens the window.",
        epilog="Database: --db URL or file, else $AVVP_STUDIO_DB, else <user data dir>/avvp-studio/studio.sqlite "
        "($AVVP_STUDIO_HOME moves that folder).",
    )
    parser.add_argument("--version", action="version", version=f"avvp-studio {_version()}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"app.{name}").register(subparsers)
    parser.set_defaults(_commands=frozenset(subparsers.choices))
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("avvp-studio")
    except PackageNotFoundError:
        return "unknown"


def _route(argv: list[str], commands: frozenset[str] | set[str]) -> list[str]:
    """The argument list with its command first: `--db URL COMMAND ...` means `COMMAND ... --db URL`
    (the database option reads like a global one; at the end it reaches nested subcommands such
    as `import llp`), and no command at all means the window."""
    lead = 1 if argv and argv[0].startswith("--db=") else 2 if argv and argv[0] == "--db" else 0
    if lead and len(argv) > lead and argv[lead] in commands:
        return [*argv[lead:], *argv[:lead]]
    if not argv or argv[0].startswith("--") and argv[0] not in ("--help", "-h", "--version"):
        return ["gui", *argv]  # no command: the desktop program
    return argv


def run_cli(argv: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(_route(argv, parser.get_default("_commands")))
    if not hasattr(args, "func"):
        parser.print_help()
        return 1
    try:
        return int(args.func(args) or 0)
    except (DataFileError, DatabaseError, UsageError, FolderBusyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except SQLAlchemyError as exc:  # e.g. a database locked by another writer for longer than the timeout
        reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        print(f"error: database: {reason}; nothing was changed by this command", file=sys.stderr)
        return 2
    except OSError as exc:  # an unwritable output folder, a vanished input file
        print(f"error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
