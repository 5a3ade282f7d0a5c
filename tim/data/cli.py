"""`tim data inspect SOURCE` and `tim data prepare SOURCE`."""
from __future__ import annotations

import argparse

from tim.data import DataConfig, DataError, prepare_data


def add_data_arguments(p: argparse.ArgumentParser, source: bool = True) -> None:
    """The DataConfig flags, shared by `tim data`, `tim train` and `tim evaluate`."""
    d = DataConfig()
    if source:
        p.add_argument("source", help="image folder, Kaggle Best Artworks folder, parquet files, or Hub dataset id")
    p.add_argument("--kind", choices=["imagefolder", "best-artworks", "hub"], help="source kind (default: detect)")
    p.add_argument("--label-column", default=d.label_column, help="artist column of a Hub/parquet dataset")
    p.add_argument("--drop-label", dest="drop_labels", action="append",
                   help=f"artist label to drop (repeatable; default {list(d.drop_labels)})")
    p.add_argument("--image-size", type=int, default=d.image_size)
    p.add_argument("--resize-mode", choices=["pad", "stretch"], default=d.resize_mode,
                   help="pad: letterbox to a square, aspect kept (default); stretch: squash")
    p.add_argument("--pad-color", type=int, nargs=3, default=d.pad_color, metavar=("R", "G", "B"))
    p.add_argument("--min-images", type=int, default=d.min_images, help="keep artists with at least this many images")
    p.add_argument("--artists", nargs="+", help="keep only these artists")
    p.add_argument("--fractions", type=float, nargs=3, default=d.fractions, metavar=("TRAIN", "VAL", "TEST"))
    p.add_argument("--split-seed", dest="seed", type=int, default=d.seed)
    p.add_argument("--duplicate-distance", type=int, default=d.duplicate_distance,
                   help="max differing perceptual-hash bits for two images to count as one work (-1: off)")
    p.add_argument("--cache-dir", help="where prepared images are kept (default ~/.cache/tim/prepared)")
    p.add_argument("--num-proc", type=int, help="processes for preprocessing (default: all cores)")


def data_config_from_args(args: argparse.Namespace, source: str | None = None) -> DataConfig:
    fields = DataConfig.__dataclass_fields__
    values = {k: getattr(args, k) for k in fields if getattr(args, k, None) is not None}
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


def inspect(args) -> int:
    cfg = data_config_from_args(args)
    try:
        data = prepare_data(cfg)
    except DataError as e:
        print(f"error: {e}")
        return 1
    print(f"Source: {cfg.source}  ({sum(data.source_counts.values())} images, {len(data.source_counts)} artists)")
    print(f"Preprocessing: {cfg.resize_mode}, {cfg.image_size}px\n")
    kept, dropped = data.filter_report.kept, data.filter_report.dropped
    print(f"{'artist':32} {'images':>7} {'usable':>7}  filter (min {cfg.min_images})")
    for artist, n in sorted(data.source_counts.items(), key=lambda kv: -kv[1]):
        usable = kept.get(artist, dropped.get(artist, 0))
        print(f"{artist:32} {n:7d} {usable:7d}  {'keep' if artist in kept else 'drop'}")
    print(f"\nKept {len(kept)} artists, {sum(kept.values())} images; dropped {len(dropped)} artists.")
    rep = data.split_report
    print(f"Near-duplicates: {rep.duplicate_groups} groups ({rep.duplicate_images} images) kept within one split.")
    print("Split: " + ", ".join(f"{k} {v}" for k, v in rep.sizes.items()) + f" (seed {cfg.seed})")
    if data.bad_files:
        print(f"\n{len(data.bad_files)} bad file(s), skipped:")
        for bad in data.bad_files:
            print(f"  {bad.path}: {bad.reason}")
    else:
        print("\nNo bad files.")
    return 0


def prepare(args) -> int:
    cfg = data_config_from_args(args)
    data = prepare_data(cfg)
    print(f"Prepared {sum(data.split_report.sizes.values())} images of {len(data.artists)} artists "
          f"({len(data.bad_files)} bad files skipped).")
    return 0
