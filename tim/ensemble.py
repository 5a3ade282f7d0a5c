"""`tim ensemble MEMBER MEMBER ... --out FOLDER`: checkpoints trained on the same artists, as one checkpoint.

The ensemble answers with the mean of its members' probabilities (tim.models.Ensemble). It is one
checkpoint to everything in Tim: one folder, one calibration, one unknown-artist decision, one
not-a-painting decision, one model card, one entry in the app. Its layout is in tim.checkpoint:
a root config.json for the whole and one folder per member inside it, each a checkpoint in timm's
layout, so each member still loads with plain timm (`timm.create_model("local-dir:FOLDER/member-1")`).

Members must have the same artists in the same order, the same preprocessing and normalisation, and
the same data recipe (tim.data: the same split), or the mean of their answers means nothing; the
command refuses anything else with one line naming the member and the difference. Each member keeps
its own training recipe; its own calibration, unknown-artist and not-a-painting decisions are dropped
(they describe that member alone): run `tim calibrate` on the ensemble.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path

from tim.atomic import replace_folder
from tim.card import write_card
from tim.checkpoint import (
    COMBINE,
    CONFIG_NAME,
    MAX_MEMBERS,
    WEIGHTS_NAME,
    CheckpointError,
    ensemble_members,
    hub_layout,
    is_ensemble,
    read_config,
    save_checkpoint,
    shorten,
)
from tim.hub import resolve
from tim.models import Ensemble
from tim.validate import validate_checkpoint

# a member's own decisions and copy record: they describe it alone, not the ensemble
MEMBER_ONLY = ("calibration", "unknown", "painting", "export")
# where a member's data lies on the machine it was trained on is not part of the recipe (the split is)
LOCATION_KEYS = ("source", "cache_dir")


class EnsembleError(CheckpointError):
    """Checkpoints that cannot be joined, or an --out that would be lost; the message names both and the difference."""


def member_name(i: int) -> str:
    return f"member-{i + 1}"


def architecture_name(architectures: list[str]) -> str:
    """The root config's `architecture`: readable, and no timm name (timm alone loads the members, not the whole)."""
    if len(set(architectures)) == 1:
        return f"ensemble of {len(architectures)} {architectures[0]}"
    return "ensemble of " + " + ".join(architectures)


def source_name(ref: str) -> str:
    """How the ensemble's config names a member's origin: a Hub repo as given, a run's folder by its last two
    parts (`photo_a/best`, not a private absolute path and not just `best`)."""
    return "/".join(Path(ref).parts[-2:]) if Path(ref).exists() else ref


def recipe(config: dict) -> dict:
    """The data recipe that decides the artists and the split (tim.data without where the files are)."""
    data = config.get("tim", {}).get("data") or {}
    return {k: v for k, v in data.items() if k not in LOCATION_KEYS}


def _difference(a, b) -> str:
    """Where two values first differ, for a one-line message."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b), key=str):
            if a.get(key, "missing") != b.get(key, "missing"):
                return f"{key}: {shorten(a.get(key, 'missing'))} vs {shorten(b.get(key, 'missing'))}"
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return f"{len(a)} vs {len(b)} entries"
        i = next(i for i, (x, y) in enumerate(zip(a, b)) if x != y)
        return f"position {i}: {shorten(a[i])} vs {shorten(b[i])}"
    return f"{shorten(a)} vs {shorten(b)}"


COMPARED = {  # what members must share: field -> how it reads in the message
    "label_names": lambda c: c["label_names"],
    "tim.preprocessing": lambda c: c["tim"]["preprocessing"],
    "normalisation (pretrained_cfg mean/std)": lambda c: [c.get("pretrained_cfg", {}).get(k) for k in ("mean", "std")],
    "tim.data (data recipe)": recipe,
    "tim.split_sizes": lambda c: c["tim"].get("split_sizes"),
}


def check_compatible(folders: list[Path], configs: list[dict], what: str = "ensemble members") -> None:
    """EnsembleError at the first field in which a member differs from the first member (`what` they are, for
    the message)."""
    first, base = folders[0], configs[0]
    for folder, config in zip(folders[1:], configs[1:]):
        for field, read in COMPARED.items():
            if read(config) != read(base):
                raise EnsembleError(f"{folder} and {first}: {field} differ ({_difference(read(config), read(base))}); "
                                    f"{what} must be trained on the same artists in the same order, with the same "
                                    "preprocessing and data recipe.")


def member_config(config: dict) -> dict:
    """A member's config inside an ensemble: its own training recipe and metrics kept, its decisions dropped."""
    config = json.loads(json.dumps(config))
    for key in MEMBER_ONLY:
        config["tim"].pop(key, None)
    return hub_layout(config)


def root_config(configs: list[dict], sources: list[str]) -> dict:
    """The ensemble's config.json: the members' shared labels, preprocessing and data recipe, and tim.ensemble."""
    base = configs[0]
    tim_block = {key: base["tim"][key] for key in ("preprocessing", "data", "split_sizes") if key in base["tim"]}
    tim_block["ensemble"] = {"members": [member_name(i) for i in range(len(configs))], "combine": COMBINE,
                             "sources": sources}
    pretrained_cfg = {k: v for k, v in base.get("pretrained_cfg", {}).items() if k in ("mean", "std", "license")}
    return hub_layout({
        "architecture": architecture_name([c["architecture"] for c in configs]),
        "num_classes": base["num_classes"],
        "label_names": list(base["label_names"]),
        "pretrained_cfg": pretrained_cfg,
        "tim": tim_block,
    })


def write_ensemble(folder: Path, members: list[tuple[Path, dict]], root: dict) -> None:
    """Write the ensemble layout into the new folder `folder`: each member's weights (copied as they are) and
    config, then the root config."""
    folder.mkdir(parents=True)
    for i, (source, config) in enumerate(members):
        inside = folder / member_name(i)
        inside.mkdir()
        shutil.copy2(source / WEIGHTS_NAME, inside / WEIGHTS_NAME)
        (inside / CONFIG_NAME).write_text(json.dumps(member_config(config), indent=2, ensure_ascii=False) + "\n")
    (folder / CONFIG_NAME).write_text(json.dumps(root, indent=2, ensure_ascii=False) + "\n")


def save_ensemble(model: Ensemble, folder: Path, config: dict, source: Path) -> None:
    """Write `model` (say, a half-precision copy of the ensemble in `source`) as the ensemble checkpoint `folder`:
    each member through save_checkpoint with its config from `source`, then the root `config`."""
    folder.mkdir(parents=True)
    for member, path in zip(model.members, ensemble_members(source, config)):
        member_cfg = read_config(path)
        tim_block = dict(member_cfg["tim"])
        preprocessing = tim_block.pop("preprocessing")
        save_checkpoint(member, folder / path.relative_to(source), member_cfg["label_names"], preprocessing,
                        tim_block)
    (folder / CONFIG_NAME).write_text(json.dumps(hub_layout(config), indent=2, ensure_ascii=False) + "\n")


def build_ensemble(refs: list[str], out: str | os.PathLike, overwrite: bool = False) -> Path:
    """Join checkpoints `refs` (local folders or Hub repos) into the ensemble checkpoint `out`; return `out`.

    Each member is validated (tim.validate) and compared with the first; the folder is built under a
    hidden name beside `out` and swapped in whole (tim.atomic), so a refusal or a crash leaves `out` as it was.
    """
    out = Path(out)
    if not 2 <= len(refs) <= MAX_MEMBERS:
        raise EnsembleError(f"an ensemble has 2 to {MAX_MEMBERS} members; got {len(refs)} ({', '.join(refs)}).")
    if out.exists() and not overwrite:
        raise EnsembleError(f"{out} already exists; pass --overwrite to replace it, or choose another --out folder.")
    folders = [resolve(ref) for ref in refs]
    configs = []
    for ref, folder in zip(refs, folders):
        config = validate_checkpoint(folder)
        if is_ensemble(config):
            raise EnsembleError(f"{ref} is itself an ensemble ({len(ensemble_members(folder, config))} members); "
                                "give its members' checkpoints instead.")
        configs.append(config)
    check_compatible(folders, configs)
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        write_ensemble(tmp, list(zip(folders, configs)), root_config(configs, [source_name(r) for r in refs]))
        validate_checkpoint(tmp)  # what was written loads back, as every later command will check it
        write_card(tmp)
        replace_folder(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def folder_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())


def add_cli(sub) -> None:
    p = sub.add_parser("ensemble", help="join checkpoints trained on the same artists into one checkpoint",
                       description="Join checkpoints trained on the same artists (same order, preprocessing and "
                                   "data recipe) into one checkpoint folder that answers with the mean of their "
                                   "probabilities; then run `tim calibrate` on it.")
    p.add_argument("members", nargs="+", metavar="MEMBER",
                   help=f"member checkpoint folders or Hub repos (2 to {MAX_MEMBERS}), trained on the same artists "
                        "in the same order, with the same preprocessing and data recipe")
    p.add_argument("--out", required=True, help="the ensemble's checkpoint folder to write")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.set_defaults(func=_command)


def _command(args: argparse.Namespace) -> int:
    out = build_ensemble(args.members, args.out, args.overwrite)  # errors: tim.cli prints them as one line
    print(f"Wrote {out} ({len(args.members)} members, {folder_size(out) / 2**20:.1f} MB). Next, one calibration "
          f"for the whole: tim calibrate {out} [--unknown DIR] [--not-paintings DIR]; then tim evaluate {out}.")
    return 0
