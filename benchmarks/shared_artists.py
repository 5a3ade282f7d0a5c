"""Two models that know different artists, on the test paintings both held out: the larger one on its own
question and on the smaller one's.

`tim compare SMALL LARGE --common-images` pairs the two models' own answers. A model that knows more painters
has more ways to be wrong, so this also asks the larger model the smaller one's question: its most likely
artist among those the smaller model knows. If it wins there but loses on its own answers, it knows the shared
painters as well and pays for the extra names; if it loses on both, it knows them worse.

    tim evaluate tim/bundled/paintings15-lite0 --data paintings-15 --output-dir eval15
    tim evaluate tim/bundled/paintings50-lite0x2 --data paintings-50 --output-dir eval50
    python benchmarks/shared_artists.py eval15 eval50 --data paintings-50
    python benchmarks/shared_artists.py --smoke        # seconds, tiny random models and generated images
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
from pathlib import Path

import timm
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from tim.checkpoint import save_checkpoint  # noqa: E402
from tim.compare import find_evaluated, keep_common_images  # noqa: E402
from tim.errors import UserError  # noqa: E402
from tim.images import ImageError  # noqa: E402
from tim.metrics import paired_test  # noqa: E402
from tim.predictor import Predictor  # noqa: E402
from _smoke import tiny_paintings  # noqa: E402 - benchmarks/_smoke.py


def smoke_inputs(folder: Path) -> tuple[Path, Path, Path]:
    """(small model's evaluation, large model's evaluation, paintings): random answers, 3 and 5 artists."""
    paintings = tiny_paintings(folder / "paintings", artists=5, per_artist=4)
    torch.manual_seed(0)
    large = save_checkpoint(timm.create_model("test_resnet", num_classes=5), folder / "large",
                            [f"Artist_{a}" for a in range(5)], {"resize_mode": "pad", "image_size": 32})
    for out, artists in ((folder / "small", 3), (folder / "large-eval", 5)):
        out.mkdir()
        (out / "eval_results.json").write_text(json.dumps({"data": {"source": str(paintings)}, "checkpoint": str(large)}))
        with open(out / "predictions.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["path", "true", "predicted", "confidence"])
            for i, path in enumerate(sorted(paintings.glob("*/*.jpg"))):
                if int(path.parent.name[-1]) < artists:
                    writer.writerow([path, path.parent.name, f"Artist_{i % artists}", 0.5])
    return folder / "small", folder / "large-eval", paintings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("small", nargs="?", help="evaluation of the model that knows fewer artists (tim evaluate)")
    parser.add_argument("large", nargs="?", help="evaluation of the model that knows more (its checkpoint is read too)")
    parser.add_argument("--data", help="where the large model's test paintings are on this machine")
    parser.add_argument("--smoke", action="store_true", help="tiny random models, generated images, seconds")
    args = parser.parse_args(argv)
    tmp = tempfile.TemporaryDirectory()
    if args.smoke:
        small_dir, large_dir, data = smoke_inputs(Path(tmp.name))
    elif args.small and args.large and args.data:
        small_dir, large_dir, data = Path(args.small), Path(args.large), Path(args.data)
    else:
        parser.error("give SMALL LARGE --data PAINTINGS, or --smoke")

    try:
        small, large = find_evaluated(small_dir), find_evaluated(large_dir)
    except UserError as e:
        sys.exit(f"error: {e}")
    shared = sorted({a for pair in small.predictions.values() for a in pair})  # every artist of its test split
    keep_common_images([small, large])
    keys = sorted(small.predictions)
    truth = [small.predictions[k][0] for k in keys]
    predictor = Predictor.load(large.results["checkpoint"])
    labels = list(predictor.labels)
    missing = [a for a in shared if a not in labels]
    if missing:
        sys.exit(f"error: {large.name} does not know {missing[:3]}: this compares a model with one that knows more.")
    found = predictor.predict([str(data / k) for k in keys], k=len(labels))  # every artist's probability
    unreadable = [str(a) for a in found if isinstance(a, ImageError)]
    if unreadable:
        sys.exit(f"error: {len(unreadable)} test paintings cannot be read under --data {data}: {unreadable[0]}")
    asked_small = [max(shared, key=dict(a.top).get) for a in found]

    answers = {"own answers": [large.predictions[k][1] for k in keys], "among the smaller model's artists": asked_small}
    wrong = [(t, p) for t, p in zip(truth, answers["own answers"]) if p != t]
    print(f"{len(keys)} paintings in both test splits; {small.name} knows {len(shared)} artists, "
          f"{large.name} {len(labels)}")
    print(f"{large.name}: {len(wrong)} wrong, {sum(p not in shared for _, p in wrong)} of them naming an artist "
          f"{small.name} does not know")
    first = [small.predictions[k][1] for k in keys]
    for name, theirs in answers.items():
        test = paired_test(truth, first, theirs)
        d = test.difference
        print(f"{large.name}, {name}: {test.accuracy_b:.3f} against {small.name}'s {test.accuracy_a:.3f}, "
              f"difference {d.value:+.3f} [{d.low:+.3f}, {d.high:+.3f}], McNemar p = {test.mcnemar_p:.3f} "
              f"({test.only_a_correct} only {small.name} right, {test.only_b_correct} only {large.name})")


if __name__ == "__main__":
    main()
