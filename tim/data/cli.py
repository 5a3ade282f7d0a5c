"""`tim data inspect SOURCE` and `tim data prepare SOURCE`."""
from __future__ import annotations

import argparse
import sys

from tim.data import DataConfig, DataError, filter_artists, prepare_data, prepare_source, split_dataset

MAX_GROUPS_SHOWN = 20  # near-duplicate groups listed by `inspect`; the count is always complete


def add_data_arguments(p: argparse.ArgumentParser, source: bool = True) -> None:
    """The DataConfig flags, shared by `tim data`, `tim train` and `tim evaluate`."""
    d = DataConfig()
    if source:
        p.add_argument("source", help="image folder, Kaggle Best Artworks folder, parquet files, or Hub dataset id")
    p.add_argument("--kind", choices=["imagefolder", "best-artworks", "hub"], help="source kind (default: detect)")
    p.add_argument("--label-column", default=d.label_column, help="artist column of a Hub/parquet dataset")
    p.add_argument("--drop-label", dest="drop_labels", action="append",
                   help=f"artist label to drop (repeatable; default {list(d.drop_labels)})")
    p.add_argument("--image-size", type=int, default=d.image_size, help="side of the square the model sees, in pixels")
    p.add_argument("--resize-mode", choices=["pad", "stretch"], default=d.resize_mode,
                   help="pad: letterbox to a square, aspect kept (default); stretch: squash")
    p.add_argument("--pad-color", type=int, nargs=3, default=d.pad_color, metavar=("R", "G", "B"),
                   help="colour of the letterbox bars (--resize-mode pad)")
    p.add_argument("--min-images", type=int, default=d.min_images, help="keep artists with at least this many images")
    p.add_argument("--artists", nargs="+", help="keep only these artists")
    p.add_argument("--fractions", type=float, nargs=3, default=d.fractions, metavar=("TRAIN", "VAL", "TEST"),
                   help="shares of the training, validation and test splits (per artist)")
    p.add_argument("--split-seed", dest="split_seed", type=int, default=d.seed, help="seed of the split")
    p.add_argument("--duplicate-distance", type=int, default=d.duplicate_distance,
                   help="max differing perceptual-hash bits for two images to count as one work (-1: off)")
    p.add_argument("--cache-dir", help="where prepared images are kept (default ~/.cache/tim/prepared)")
    p.add_argument("--num-proc", type=int, help="processes for preprocessing (default: all cores)")


def data_settings_from_args(args: argparse.Namespace) -> dict:
    """The DataConfig fields given on the command line (`--split-seed` is the split's `seed`)."""
    fields = DataConfig.__dataclass_fields__
    values = {k: getattr(args, k) for k in fields if k != "seed" and getattr(args, k, None) is not None}
    if getattr(args, "split_seed", None) is not None:
        values["seed"] = args.split_seed
    return values


def data_config_from_args(args: argparse.Namespace, source: str | None = None) -> DataConfig:
    values = data_settings_from_args(args)
    if source is not None:
        values["source"] = source
    return DataConfig.from_dict(values)


def add_cli(sub) -> None:
    data = sub.add_parser("data", help="inspect and prepare painting datasets")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    for name, func, help_text in (
        ("inspect", inspect, "per-artist counts, filter, duplicates and bad files"),
        ("prepare", prepare, "build the preprocessed cache"),
    ):
        p = data_sub.add_parser(name, help=help_text)
        add_data_arguments(p)
        p.set_defaults(func=func)


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 1


def inspect(args) -> int:
    """Show what Tim would train on; exit 0 only when the data makes a usable training set."""
    cfg = data_config_from_args(args)
    try:
        source = prepare_source(cfg)
    except (DataError, FileNotFoundError) as e:
        return _fail(str(e))
    counts, usable = source.source_counts, source.usable_counts
    print(f"Source: {cfg.source}  ({sum(counts.values())} images, {len(counts)} artists)")
    print(f"Preprocessing: {cfg.resize_mode}, {cfg.image_size}px, cache {source.cache}\n")
    try:
        kept, report = filter_artists(source.images, cfg.min_images, cfg.artists)
        _, split_report = split_dataset(kept, cfg.fractions, cfg.seed, cfg.duplicate_distance)
    except DataError as e:
        report, error = None, e
    else:
        error = None
    print(f"{'artist':32} {'images':>7} {'usable':>7}  filter (min {cfg.min_images})")
    for artist, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        if report is not None:
            keep = artist in report.kept
        else:  # the filter refused the data as a whole; say which artists pass on their own
            keep = usable[artist] >= max(cfg.min_images, 1) and (not cfg.artists or artist in cfg.artists)
        verdict = "keep" if keep else "drop"
        print(f"{artist:32} {n:7d} {usable[artist]:7d}  {verdict}")
    _print_bad_files(source.bad_files)
    if error is not None:
        return _fail(str(error))
    print(f"\nKept {len(report.kept)} artists, {sum(report.kept.values())} images; "
          f"dropped {len(report.dropped)} artists ({sum(report.dropped.values())} images).")
    print(f"Near-duplicates: {split_report.duplicate_groups} groups ({split_report.duplicate_images} images), "
          "each kept within one split.")
    for group in split_report.duplicates[:MAX_GROUPS_SHOWN]:
        print("  " + "  =  ".join(group))
    if split_report.duplicate_groups > MAX_GROUPS_SHOWN:
        print(f"  ... and {split_report.duplicate_groups - MAX_GROUPS_SHOWN} more groups")
    print("Split: " + ", ".join(f"{k} {v}" for k, v in split_report.sizes.items()) + f" (seed {cfg.seed})")
    return 0


def _print_bad_files(bad_files) -> None:
    if not bad_files:
        print("\nNo bad files.")
        return
    print(f"\n{len(bad_files)} bad file(s), skipped:")
    for bad in bad_files:
        print(f"  {bad.path}: {bad.reason}")


def prepare(args) -> int:
    cfg = data_config_from_args(args)
    try:
        data = prepare_data(cfg)
    except (DataError, FileNotFoundError) as e:
        return _fail(str(e))
    _print_bad_files(data.bad_files)
    print(f"\nPrepared {sum(data.split_report.sizes.values())} images of {len(data.artists)} artists "
          f"({len(data.bad_files)} bad files skipped) in {data.cache}")
    print("Split: " + ", ".join(f"{k} {v}" for k, v in data.split_report.sizes.items()) + f" (seed {cfg.seed})")
    return 0
