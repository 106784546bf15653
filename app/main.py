"""`avvp-studio` console script."""
from __future__ import annotations

import sys

from app.cli import run_cli


def main(argv: list[str] | None = None) -> int:
    return run_cli(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())
