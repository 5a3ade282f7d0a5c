"""`train.py` / `tim train`: a YAML config from configs/, overridden by command-line flags."""
from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from tim.data.cli import add_data_arguments, data_settings_from_args
from tim.errors import ConfigError, run_command
from tim.training import TrainConfig, train

# flag -> (TrainConfig field, type); every flag defaults to None = "keep the config's value"
FLAGS = {
    "--model": ("model", str),
    "--pretrained": ("pretrained", str),
    "--output-dir": ("output_dir", str),
    "--epochs": ("epochs", int),
    "--batch-size": ("batch_size", int),
    "--gradient-accumulation-steps": ("gradient_accumulation_steps", int),
    "--optimizer": ("optimizer", str),
    "--weight-decay": ("weight_decay", float),
    "--scheduler": ("scheduler", str),
    "--warmup-epochs": ("warmup_epochs", float),
    "--label-smoothing": ("label_smoothing", float),
    "--class-weights": ("class_weights", str),
    "--augment": ("augment", str),
    "--early-stopping-patience": ("early_stopping_patience", int),
    "--early-stopping-metric": ("early_stopping_metric", str),
    "--seed": ("seed", int),
    "--num-workers": ("num_workers", int),
    "--mixed-precision": ("mixed_precision", str),
    "--report-to": ("report_to", str),
    "--max-steps-per-epoch": ("max_steps_per_epoch", int),
    "--hub-model-id": ("hub_model_id", str),
    "--unknown": ("unknown", str),
    "--distill-weight": ("distill_weight", float),
    "--distill-temperature": ("distill_temperature", float),
}
FLAG_HELP = {"--unknown": {"metavar": "DIR", "help": "paintings of other artists (one folder per artist) for the "
                                                   "unknown-artist decision fitted at the end (see tim calibrate)"}}
TIER_FLAGS = {"--lr-early": "early", "--lr-intermediate": "intermediate", "--lr-final": "final",
              "--early-fraction": "early_fraction"}
SWITCHES = {"--freeze-backbone": "freeze_backbone", "--push-to-hub": "push_to_hub", "--hub-private": "hub_private"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML file from configs/ (flags override it)")
    p.add_argument("--data", dest="source", help="the data source (image folder, Kaggle folder, parquet, Hub id)")
    p.add_argument("--resume", action="store_true", help="continue the run in --output-dir from its last saved epoch")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the run already in --output-dir (its best/, last/, state/ and log.csv are deleted)")
    for flag, (_, typ) in FLAGS.items():
        p.add_argument(flag, type=typ, default=None, **FLAG_HELP.get(flag, {}))
    for flag in TIER_FLAGS:
        p.add_argument(flag, type=float, default=None)
    for flag in SWITCHES:
        p.add_argument(flag, action="store_true", default=None)
    p.add_argument("--teacher", dest="teachers", action="append", default=None, metavar="CHECKPOINT",
                   help="distil from this trained checkpoint (repeat for an ensemble; see tim/distill.py)")
    p.add_argument("--no-channels-last", dest="channels_last", action="store_false", default=None)
    p.add_argument("--no-evaluate", dest="evaluate_test", action="store_false", default=None,
                   help="skip the test-split evaluation of the best checkpoint at the end")
    p.add_argument("--no-calibrate", dest="calibrate", action="store_false", default=None,
                   help="skip fitting calibration and the unknown-artist decision on validation at the end")
    data = p.add_argument_group("data")
    add_data_arguments(data, source=False)
    for action in data._group_actions:  # data flags override the config only when given
        action.default = None


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    base = read_config_file(args.config) if args.config else {}
    for flag, (name, _) in FLAGS.items():
        if getattr(args, name, None) is not None:
            base[name] = getattr(args, name)
    for flag, name in SWITCHES.items():
        if getattr(args, name, None):
            base[name] = True
    for name in ("channels_last", "evaluate_test", "calibrate", "teachers"):
        if getattr(args, name) is not None:
            base[name] = getattr(args, name)
    tiers = dict(base.get("tiers") or {})
    for flag, name in TIER_FLAGS.items():
        value = getattr(args, flag.lstrip("-").replace("-", "_"))
        if value is not None:
            tiers[name] = value
    base["tiers"] = tiers
    base["data"] = {**(base.get("data") or {}), **data_settings_from_args(args)}
    try:
        cfg = TrainConfig.from_dict(base)
    except TypeError as e:  # a config value of the wrong shape, e.g. `data: 3`
        raise ConfigError(f"{args.config or 'the flags'}: {e}") from None
    cfg.validate()
    return cfg


def read_config_file(path: str) -> dict:
    """The settings in a YAML config file; ConfigError naming the file when it is missing or not a mapping."""
    try:
        base = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"--config {path}: no such file; the configs/ folder has examples.") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"--config {path}: not valid YAML ({e}).") from None
    if base is not None and not isinstance(base, dict):
        raise ConfigError(f"--config {path}: expected settings (key: value lines), found {type(base).__name__}.")
    return base or {}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="train.py", description="Fine-tune a timm model to recognise painters.")
    add_arguments(p)
    return p


def run(args: argparse.Namespace) -> int:
    train(config_from_args(args), resume=args.resume, overwrite=args.overwrite)
    return 0


def main(argv: list[str] | None = None) -> int:
    """train.py: exit 0 after a finished run, 1 with one `error:` line for a user error (tim.errors)."""
    return run_command(run, build_parser().parse_args(argv))


def add_cli(sub) -> None:
    p = sub.add_parser("train", help="fine-tune a timm model (same flags as train.py)")
    add_arguments(p)
    p.set_defaults(func=run)
