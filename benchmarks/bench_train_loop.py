"""Images/s of Tim's training loop against a bare PyTorch loop, on the same cached batches, in one run.

Both loops do the same forward / backward / optimizer step on the same
tensors (prepared once from the paintings cache, with the training
augmentation), so the ratio is the cost of Tim's loop itself: Accelerate's
wrapping, gradient accumulation bookkeeping, autocast, the scheduler and the
running metrics. Goal: ratio >= 0.9.

    python benchmarks/bench_train_loop.py [--data ../shared/datasets/paintings-15] [--model tf_efficientnet_lite0]
"""
import argparse
import copy
import shutil
import sys
import tempfile
import time
from pathlib import Path

import timm
import torch
from accelerate import Accelerator

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from tim.data import DataConfig, TransformedSplit, prepare_data, train_transform  # noqa: E402
from tim.models import Tiers, tier_groups  # noqa: E402
from tim.training import TrainConfig, make_optimizer, make_scheduler, train_one_epoch  # noqa: E402


def bare_epoch(model, batches, optimizer, criterion):
    model.train()
    start = time.perf_counter()
    for x, y in batches:
        x = x.contiguous(memory_format=torch.channels_last)
        loss = criterion(model(x), y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return time.perf_counter() - start


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="../shared/datasets/paintings-15")
    p.add_argument("--model", default="tf_efficientnet_lite0")
    p.add_argument("--batches", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--smoke", action="store_true", help="tiny generated data and model, seconds: checks the script runs")
    args = p.parse_args(argv)
    data_cfg = DataConfig(source=args.data, min_images=1, resize_mode="stretch")
    if args.smoke:
        from _smoke import tiny_paintings

        smoke_dir = Path(tempfile.mkdtemp(prefix="tim-bench-smoke-"))
        data_cfg = DataConfig(source=str(tiny_paintings(smoke_dir / "paintings")), min_images=1, image_size=64,
                              resize_mode="stretch", cache_dir=str(smoke_dir / "cache"), num_proc=1)
        args.model, args.batches, args.batch_size, args.rounds = "test_efficientnet", 2, 4, 1
    try:
        return measure(args, data_cfg)
    finally:
        if args.smoke:
            shutil.rmtree(smoke_dir, ignore_errors=True)


def measure(args, data_cfg: DataConfig) -> int:
    data = prepare_data(data_cfg)
    model = timm.create_model(args.model, num_classes=len(data.artists)).to(memory_format=torch.channels_last)
    norm = timm.data.resolve_data_config(model=model)
    split = TransformedSplit(data.splits["train"], train_transform(norm["mean"], norm["std"]))
    loader = torch.utils.data.DataLoader(split, batch_size=args.batch_size, shuffle=True)
    batches = [b for _, b in zip(range(args.batches), loader)]  # the same tensors for both loops
    images = sum(len(y) for _, y in batches)
    criterion = torch.nn.CrossEntropyLoss()
    tiers = Tiers(early=1e-5, intermediate=1e-4, final=1e-3)

    bare_model = copy.deepcopy(model)
    bare_opt = torch.optim.Adam(tier_groups(bare_model, tiers))

    cfg = TrainConfig(model=args.model, batch_size=args.batch_size, scheduler="cosine", tiers=tiers)
    accelerator = Accelerator()
    tim_model = copy.deepcopy(model)
    tim_opt = make_optimizer(cfg, tier_groups(tim_model, tiers))
    tim_model, tim_opt = accelerator.prepare(tim_model, tim_opt)
    scheduler = make_scheduler(cfg, tim_opt, len(batches))

    bare_epoch(bare_model, batches[:1], bare_opt, criterion)  # warm-up
    train_one_epoch(tim_model, batches[:1], tim_opt, scheduler, criterion, accelerator, cfg)
    bare_s, tim_s = 0.0, 0.0
    for r in range(args.rounds):  # alternate, so drift in machine load hits both alike
        bare_s += bare_epoch(bare_model, batches, bare_opt, criterion)
        tim_s += train_one_epoch(tim_model, batches, tim_opt, scheduler, criterion, accelerator, cfg)[1]
    bare_rate, tim_rate = images * args.rounds / bare_s, images * args.rounds / tim_s
    print(f"model {args.model}, {args.batches} batches of {args.batch_size}, {args.rounds} rounds, "
          f"{torch.get_num_threads()} threads, device {accelerator.device}")
    print(f"bare PyTorch loop : {bare_rate:7.2f} images/s")
    print(f"Tim training loop : {tim_rate:7.2f} images/s")
    print(f"ratio Tim / bare  : {tim_rate / bare_rate:.3f}  (goal >= 0.9)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
