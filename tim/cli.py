"""The `tim` command. Each concern module adds its own subcommands with `add_cli(subparsers)`.

Only the module of the command being run is imported, so `tim --help` and `tim data ...` don't pay
for torch, gradio and the Hub client they don't use.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from tim.errors import run_command
from tim.helpformat import use_everywhere

# command -> (module defining add_cli(subparsers), one-line help for `tim --help`)
COMMANDS = {
    "data": ("tim.data.cli", "inspect and prepare painting datasets"),
    "train": ("tim.train_cli", "fine-tune a timm model (same flags as train.py)"),
    "evaluate": ("tim.evaluation", "test-split metrics with intervals, confusion matrix and curves"),
    "calibrate": ("tim.calibrate", "fit calibrated confidence and the unknown-artist decision into a checkpoint"),
    "compare": ("tim.compare", "several evaluated models on the same test split, with paired tests"),
    "models": ("tim.modelinfo", "parameters, size, GFLOPs and structure of timm architectures"),
    "predict": ("tim.predict", "predict the artist of image files and folders into a CSV"),
    "ensemble": ("tim.ensemble", "join checkpoints trained on the same artists into one checkpoint"),
    "average": ("tim.average", "average the weights of checkpoints fine-tuned from one another"),
    "export": ("tim.export", "copy a checkpoint in half precision, checked against the original"),
    "push": ("tim.hub", "upload a checkpoint and its model card to the Hugging Face Hub"),
    "card": ("tim.hub", "write or refresh a checkpoint's model card (README.md) without pushing"),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser with `command`'s module loaded (all of them when `command` is None)."""
    parser = argparse.ArgumentParser(prog="tim", description="Recognise the artist of a painting.")
    sub = parser.add_subparsers(dest="command", required=True)
    modules = [COMMANDS[command][0]] if command in COMMANDS else dict.fromkeys(m for m, _ in COMMANDS.values())
    if command is not None and command not in COMMANDS:
        modules = []  # `tim --help` or a typo: list the commands without importing them
    for name in modules:
        importlib.import_module(name).add_cli(sub)
    for name, (_, help_text) in COMMANDS.items():
        if name not in sub.choices:
            sub.add_parser(name, help=help_text)
    return use_everywhere(parser)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = next((a for a in argv if not a.startswith("-")), "")
    args = build_parser(command).parse_args(argv)
    try:
        return run_command(args.func, args)  # a user error: one line on stderr, exit status 1
    finally:
        end_process_group()


def end_process_group() -> None:
    """Close the process group that `accelerate launch` opened (predict, evaluate, calibrate under several processes).

    A process that exits with it open can abort in gloo's teardown ("terminate called without an active
    exception", pytorch/pytorch#190489) and fail the whole launch after its work is done.
    """
    if "torch.distributed" not in sys.modules:  # `tim data`, `tim --help`: torch was never imported
        return
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
