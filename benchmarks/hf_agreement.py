"""How often 🤗 transformers' `pipeline("image-classification", model=CHECKPOINT)` names the same artist as Tim.

Tim squares a picture itself (tim.images.square: stretch or letterbox); the pipeline runs timm's eval transform
from the checkpoint's pretrained_cfg (tim.checkpoint.hub_layout: crop_pct 1.0, squash or border). This counts
the paintings where the two top-1 answers differ: Tim's own fp32 answer (Predictor, as `tim predict` gives it)
against the pipeline's, and, for comparison, the pipeline with timm's default centre crop instead.

    python benchmarks/hf_agreement.py --limit 500                        # the default model, its test split
    python benchmarks/hf_agreement.py --images ../shared/datasets/gallery-photos   # phone photos, full size
    python benchmarks/hf_agreement.py --smoke                            # seconds, a tiny random model
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from tim.catalog import default_model  # noqa: E402
from tim.checkpoint import CONFIG_NAME  # noqa: E402
from tim.predictor import Predictor  # noqa: E402
from _smoke import tiny_paintings, use_threads  # noqa: E402 - benchmarks/_smoke.py

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}


def split_paths(folder: str, source: str | None, split: str) -> list[str]:
    """The image files of the checkpoint's `split`, rebuilt from its data recipe (as `tim evaluate` does)."""
    from tim.data import prepare_data
    from tim.recipe import data_config_for

    config = json.loads((Path(folder) / CONFIG_NAME).read_text())
    rows = prepare_data(data_config_for(config, {"source": source} if source else None)).splits[split]
    return list(rows["path"])


def pipeline_top1(folder: str, paths: list[str], crop_mode: str | None = None) -> list[str]:
    """The pipeline's top-1 labels; `crop_mode` replaces the checkpoint's (e.g. timm's default "center")."""
    import torch
    from transformers import pipeline
    from transformers.models.timm_wrapper import TimmWrapperImageProcessor

    kwargs = {}
    if crop_mode:
        cfg = {**json.loads((Path(folder) / CONFIG_NAME).read_text())["pretrained_cfg"], "crop_mode": crop_mode}
        kwargs["image_processor"] = TimmWrapperImageProcessor(pretrained_cfg=cfg)
    classify = pipeline("image-classification", model=folder, device="cpu", dtype=torch.float32, **kwargs)
    return [answers[0]["label"] for answers in classify(paths, top_k=1, batch_size=16)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--model", default=None, help="checkpoint folder (default: the default bundled model)")
    parser.add_argument("--data", help="where the checkpoint's paintings are on this machine (default: as recorded)")
    parser.add_argument("--split", default="test", help="split of the checkpoint's data to read")
    parser.add_argument("--images", help="a folder of images of any shape to use instead of a split")
    parser.add_argument("--glob", default="*.jpg", help="which files of --images (searched recursively)")
    parser.add_argument("--limit", type=int, default=500, help="images read (the first N, sorted by path)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    parser.add_argument("--smoke", action="store_true", help="a tiny random model on generated images, seconds")
    args = parser.parse_args(argv)
    use_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        if args.smoke:
            import timm

            from tim.checkpoint import save_checkpoint

            folder = str(save_checkpoint(timm.create_model("test_efficientnet", num_classes=3), Path(tmp) / "tiny",
                                         [f"Artist_{a}" for a in range(3)], {"resize_mode": "stretch",
                                                                             "image_size": 48}))
            paths = sorted(str(p) for p in tiny_paintings(Path(tmp) / "paintings").rglob("*.jpg"))
        else:
            folder = args.model or default_model()
            if args.images:
                paths = sorted(str(p) for p in Path(args.images).rglob(args.glob) if p.suffix.lower() in IMAGE_SUFFIXES)
            else:
                paths = sorted(split_paths(folder, args.data, args.split))
        paths = paths[: args.limit]
        tim_answers = [getattr(p, "artist", None) for p in Predictor.load(folder).predict(paths)]
        print(f"{folder}: {len(paths)} images ({args.images or args.split})")
        for name, crop_mode in (("pretrained_cfg as written", None), ("timm's default centre crop", "center")):
            answers = pipeline_top1(folder, paths, crop_mode)
            same = np.mean([a == b for a, b in zip(tim_answers, answers)])
            differ = sum(a != b for a, b in zip(tim_answers, answers))
            print(f"  pipeline, {name:27s}: same top-1 as Tim on {same:.2%} ({differ} differ)")


if __name__ == "__main__":
    main()
