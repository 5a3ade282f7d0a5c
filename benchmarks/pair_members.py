"""Which checkpoints make the best two-member ensemble? Measured on VALIDATION only (never the test split).

Every candidate answers the same pictures once; each pair is the average of its members' probabilities
(what `tim ensemble` builds). For each single model and each pair:
- clean: accuracy and macro-F1 on the validation scans;
- photos: accuracy on seeded simulated phone photos of N validation paintings (style "phone"), located and
  straightened by Tim's locator (the same pieces for every candidate);
- unknown: AUROC of 1 - top probability (no fitted decision: that is fitted afterwards, for the chosen pair)
  for the validation paintings against other artists' paintings the candidates' calibration holds out
  (the report half, split by artist as `tim calibrate` does), and the share of them rejected at 95% kept.
Paired against a baseline (the first candidate, or a pair: `--baseline 1+2`) with McNemar's test, on the clean
validation answers and on the photos.

    python benchmarks/pair_members.py runs/a/best runs/b/best runs/c/best \
        --data ../shared/datasets/paintings-50 --unknown ../shared/datasets/other-artists --photos 150
    python benchmarks/pair_members.py --smoke        # seconds, tiny random models and generated images
"""
from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))

import timm  # noqa: E402

from tim.checkpoint import read_config, save_checkpoint  # noqa: E402
from tim.data import pixels_to_image, prepare_data  # noqa: E402
from tim.evaluation import simulated_photos  # noqa: E402
from tim.metrics import compute_metrics, paired_test  # noqa: E402
from tim.openset import open_set_report, split_artists, threshold_for  # noqa: E402
from tim.predictor import Predictor  # noqa: E402
from tim.recipe import data_config_for, load_other_artists, select_artists  # noqa: E402
from tim.data import DataConfig  # noqa: E402
from _smoke import tiny_paintings  # noqa: E402 - benchmarks/_smoke.py


def smoke_inputs(folder: Path) -> tuple[list[str], Path, Path]:
    """Three tiny random checkpoints on generated paintings, and generated paintings of four other artists."""
    paintings = tiny_paintings(folder / "paintings", artists=3, per_artist=12)
    others = tiny_paintings(folder / "others-tmp", artists=4, per_artist=4)
    for artist in sorted(others.iterdir()):  # other artists must have names the models do not know
        artist.rename(folder / "others-tmp" / artist.name.replace("Artist", "Other"))
    recipe = DataConfig(source=str(paintings), image_size=32, min_images=1, duplicate_distance=-1,
                        num_proc=1).to_dict()
    refs = []
    for seed in range(3):
        torch.manual_seed(seed)
        model = timm.create_model("test_resnet", num_classes=3)
        refs.append(str(save_checkpoint(model, folder / f"model-{seed}", [f"Artist_{a}" for a in range(3)],
                                        {"resize_mode": "pad", "image_size": 32}, extra={"data": recipe})))
    return refs, paintings, others


def probabilities(predictor: Predictor, pictures, desc: str) -> np.ndarray:
    """Softmax of the raw logits (no calibration: it does not change the top answer) for PIL pictures."""
    out = []
    for picture in tqdm(pictures, desc=desc, leave=False):
        logits = predictor.outputs(predictor.preprocessor.tensor(picture)[0][None]).logits
        out.append(logits.softmax(-1)[0].numpy())
    return np.stack(out)


def row_pictures(rows):
    pixels = rows.select_columns(["pixels"]).with_format(None)
    return (pixels_to_image(pixels[i]["pixels"]) for i in range(len(rows)))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("checkpoints", nargs="*", help="trained checkpoints on the same artists and data recipe")
    p.add_argument("--data", help="the paintings the checkpoints were trained on")
    p.add_argument("--unknown", help="other artists' paintings (one folder per artist)")
    p.add_argument("--photos", type=int, default=150, help="validation paintings photographed (default: 150)")
    p.add_argument("--seed", type=int, default=0, help="photo and sample seed (default: 0)")
    p.add_argument("--baseline", default="1", help="what the others are paired against: a candidate's number, or "
                                                   "two joined by + for their pair (default: 1)")
    p.add_argument("--smoke", action="store_true", help="tiny random models, generated images, seconds")
    args = p.parse_args()
    tmp = tempfile.TemporaryDirectory()
    if args.smoke:
        args.checkpoints, args.data, args.unknown = smoke_inputs(Path(tmp.name))
        args.photos = 3
    elif len(args.checkpoints) < 2 or not (args.data and args.unknown):
        p.error("give two or more CHECKPOINTS, --data and --unknown, or --smoke")
    numbers = args.baseline.split("+")
    if len(numbers) > 2 or not all(n.isdigit() and 1 <= int(n) <= len(args.checkpoints) for n in numbers):
        p.error(f"--baseline {args.baseline}: give a candidate's number (1 to {len(args.checkpoints)}) or two "
                "joined by +, e.g. 1+2")

    config = read_config(args.checkpoints[0])
    data = prepare_data(data_config_for(config, {"source": args.data}))
    val = data.splits["validation"]
    labels = np.asarray(val["artist"])
    picks = np.sort(np.random.default_rng(args.seed).choice(len(val), min(args.photos, len(val)), replace=False))
    first = Predictor.load(args.checkpoints[0], engine="eager")
    pieces = [first.preprocessor.pieces_of(shot.photo)[0].picture
              for shot in tqdm(simulated_photos(val, picks, "phone", args.seed), total=len(picks), desc="Photos")]
    images, artists = load_other_artists(args.unknown, config, data.artists)
    _, held = split_artists(artists, 0.5, 0)  # tim calibrate's default split: its report half
    others = select_artists(images, artists, held)

    answers = {}
    for ref in args.checkpoints:
        predictor = Predictor.load(ref, engine="eager")
        if predictor.labels != data.artists:
            raise SystemExit(f"{ref}: its artists differ from {args.data}'s")
        answers[ref] = {"clean": probabilities(predictor, row_pictures(val), f"{ref} clean"),
                        "photos": probabilities(predictor, pieces, f"{ref} photos"),
                        "others": probabilities(predictor, row_pictures(others), f"{ref} others")}

    def scores(parts: tuple[str, ...]) -> dict:
        mean = {k: np.mean([answers[r][k] for r in parts], axis=0) for k in ("clean", "photos", "others")}
        clean = compute_metrics(labels, mean["clean"].argmax(1))
        known, unknown = 1 - mean["clean"].max(1), 1 - mean["others"].max(1)
        right = mean["clean"].argmax(1) == labels
        report = open_set_report(known, right, unknown, threshold_for(known, 0.95))  # as tim calibrate measures
        return {"clean": mean["clean"].argmax(1), "photo_answers": mean["photos"].argmax(1),
                "accuracy": clean["accuracy"], "f1": clean["f1_macro"],
                "photos": float(np.mean(mean["photos"].argmax(1) == labels[picks])),
                "auroc": report["auroc"], "rejected": report["unknown_rejected"]}

    names = {r: f"#{i + 1}" for i, r in enumerate(args.checkpoints)}
    for ref, name in names.items():
        print(f"{name} = {ref}")
    print(f"\nvalidation: {len(val)} scans, {len(picks)} simulated phone photos (located); "
          f"{len(others)} paintings by {len(held)} held-out other artists\n")
    baseline = tuple(args.checkpoints[int(i) - 1] for i in numbers)
    base = scores(baseline)
    print(f"{'candidate':10} {'clean acc':>9} {'macro-F1':>8} {'photos':>7} {'AUROC':>6} {'rej@95':>7}  "
          f"vs {'+'.join(names[r] for r in baseline)}: clean | photos")
    candidates = [(r,) for r in args.checkpoints] + list(itertools.combinations(args.checkpoints, 2))
    for parts in candidates:
        s = scores(parts)
        paired = "" if parts == baseline else "  " + " | ".join(
            difference(paired_test(truth, base[k], s[k]))
            for truth, k in ((labels, "clean"), (labels[picks], "photo_answers")))
        print(f"{'+'.join(names[r] for r in parts):10} {s['accuracy']:9.3f} {s['f1']:8.3f} {s['photos']:7.3f} "
              f"{s['auroc']:6.3f} {s['rejected']:7.1%}{paired}")


def difference(test) -> str:
    d = test.difference
    return f"{d.value:+.3f} [{d.low:+.3f}, {d.high:+.3f}], p = {test.mcnemar_p:.2g}"


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()
