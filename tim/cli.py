"""The `tim` command. Each concern module adds its own subcommands with `add_cli(subparsers)`."""
from __future__ import annotations

import argparse
import importlib
import sys

# modules that define add_cli(subparsers); each subcommand sets args.func
COMMAND_MODULES = [
    "tim.data.cli",
    "tim.hub",
    "tim.train_cli",
    "tim.evaluation", "tim.compare", "tim.modelinfo",
    "tim.predict",
    "tim.export",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tim", description="Recognise the artist of a painting.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_cli(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
