"""The ``zenmon`` command: ``zenmon demo``, ``zenmon bench`` and ``zenmon soak``.

``zenmon demo [options]`` runs :func:`zenmon.tools.demo.main`; ``zenmon bench
[options]`` runs :func:`zenmon.tools.bench_local.main`; ``zenmon soak
[options]`` runs :func:`zenmon.tools.soak.main`. Each subcommand parses its own
options (``zenmon demo --help``). Also reachable as ``python -m zenmon``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

COMMANDS = {
    "demo": "the chat scenario: sessions nodes as OS processes, one is SIGKILLed, "
            "the guilds get a throttled DOWN stream (progress and summary)",
    "bench": "zenmon's figures next to a naive baseline, measured in the same run",
    "soak": "exactly-once under churn, threads and node kills across three node "
            "processes for N minutes (ledger, RSS and table samples, summary)",
}


def _parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="zenmon",
        description="zenmon: Erlang-style process monitors for Python services, at scale.",
        epilog="Run `zenmon COMMAND --help` for the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"zenmon {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, text in COMMANDS.items():
        sub.add_parser(name, help=text, add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``zenmon`` console script. -> exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "demo":
        from .tools import demo

        return demo.main(args[1:])
    if args and args[0] == "bench":
        from .tools import bench_local

        return bench_local.main(args[1:])
    if args and args[0] == "soak":
        from .tools import soak

        return soak.main(args[1:])
    parser = _parser()
    parser.parse_args(args)   # --help, --version, or an error for an unknown command
    parser.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())
