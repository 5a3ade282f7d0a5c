"""Every option of `train.py`, of every `tim` subcommand and of the app says what it does, and its default."""
import argparse

import pytest

from tim import app, cli, train_cli


def parsers(parser: argparse.ArgumentParser, name: str):
    """(command name, parser) for `parser` and each subcommand under it, nested ones too."""
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                yield from parsers(sub, f"{name} {sub_name}")


ALL = [*parsers(cli.build_parser(), "tim"), ("train.py", train_cli.build_parser()), ("app", app.build_parser())]


@pytest.mark.parametrize("name, parser", ALL, ids=[name for name, _ in ALL])
def test_every_option_has_a_help_text_and_shows_its_default(name, parser):
    options = [a for a in parser._actions if not isinstance(a, (argparse._HelpAction, argparse._SubParsersAction))]
    missing = [a.option_strings[0] if a.option_strings else a.dest for a in options if not (a.help or "").strip()]
    assert not missing, f"{name}: no help for {missing}"
    text = parser.format_help()
    for action in options:
        switch = action.nargs == 0  # --fp32, --share: the default is only "not given"
        shown = (not switch and action.default not in (None, [], argparse.SUPPRESS)) or "(default" in (action.help or "")
        expanded = parser._get_formatter()._expand_help(action) if action.help else ""
        if shown:  # the value it takes when not given is on the page
            assert "default" in expanded, f"{name} {action.option_strings}"
        if switch:  # never "--fp32 keep full precision (default: True)"
            assert "(default: True)" not in expanded and "(default: False)" not in expanded, (name, expanded)
    assert text


def test_train_groups_its_options_as_the_hugging_face_example_scripts_do():
    groups = {g.title: [a.option_strings[0] for a in g._group_actions] for g in train_cli.build_parser()._action_groups}
    assert {"data", "model", "optimisation", "run folder", "Hub"} <= set(groups)
    assert "--epochs" in groups["optimisation"] and "--data" in groups["data"] and "--model" in groups["model"]
    assert "--push-to-hub" in groups["Hub"] and "--output-dir" in groups["run folder"]


def test_train_help_shows_the_default_used_when_neither_flag_nor_config_sets_it(capsys):
    with pytest.raises(SystemExit):
        train_cli.main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "passes over the training split (default: 20)" in text
    assert "learning rate of the new classifier head (default: 0.001)" in text
