"""``python -m xent``: the xent command line (see :mod:`xent._cli`)."""

from __future__ import annotations

import sys


def main() -> int:
    """Entry point of the ``xent`` console script; returns the exit status."""
    from xent._cli import main as cli_main

    return cli_main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
