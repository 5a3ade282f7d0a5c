"""The help layout of every Tim command: each option's help ends with its default, as argparse's
ArgumentDefaultsHelpFormatter writes it, except where there is none to show (None),
a switch (its default is only the opposite of the switch), or the help already says it."""
from __future__ import annotations

import argparse


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or action.nargs == 0 or action.default in (None, [], argparse.SUPPRESS):
            return text
        return super()._get_help_string(action)


def use_everywhere(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """`parser` and all its subcommands' parsers (nested ones too) with HelpFormatter."""
    parser.formatter_class = HelpFormatter
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                use_everywhere(sub)
    return parser
