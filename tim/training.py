"""The training loop: one Accelerate loop for a laptop CPU, one GPU, or `accelerate launch` on many.

Read it top to bottom in `train()`: data, model with learning-rate tiers,
optimizer and scheduler, then epochs of train -> validate -> checkpoint ->
early stop. Everything it needs is in one `TrainConfig`, which is also what
the YAML files in configs/ hold.
"""
from __future__ import annotations

import csv
import dataclasses
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import timm
import torch
from accelerate import Accelerator
from accelerate.utils import ProjectConfiguration, set_seed
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from tim.checkpoint import replace_folder, save_checkpoint
from tim.data import DataConfig, prepare_data, split_datasets
from tim.metrics import compute_metrics
from tim.models import Tiers, build_model, tier_groups

LOG_COLUMNS = [
    "epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "val_f1_macro",
    "lr_early", "lr_intermediate", "lr_final", "seconds", "images_per_second",
]


@dataclass
class TrainConfig:
    model: str = "resnet50"
    pretrained: str = "timm"  # timm | offline | none | path/to/weights.safetensors
    data: DataConfig = field(default_factory=DataConfig)
    output_dir: str = "runs/resnet50"
    epochs: int = 20
    batch_size: int = 32  # per device
    gradient_accumulation_steps: int = 1
    tiers: Tiers = field(default_factory=Tiers)
    freeze_backbone: bool = False  # train only the new head (the ResNet-50 baseline)
    optimizer: str = "adam"  # adam | adamw
    weight_decay: float = 0.0
    scheduler: str = "plateau"  # plateau (on validation loss) | cosine | none
    plateau_factor: float = 0.1
    plateau_patience: int = 2
    warmup_epochs: float = 0.0  # cosine only
    label_smoothing: float = 0.0
    class_weights: str = "none"  # none | inverse_sqrt (weights the loss towards rare artists, for macro-F1)
    early_stopping_patience: int = 5
    early_stopping_metric: str = "accuracy"  # accuracy | f1_macro (validation)
    seed: int = 42
    num_workers: int = 2
    channels_last: bool = True
    mixed_precision: str | None = None  # no | fp16 | bf16; None = Accelerate's config
    report_to: str | None = None  # e.g. tensorboard
    max_steps_per_epoch: int | None = None  # for smoke tests
    evaluate_test: bool = True  # evaluate the best checkpoint on the held-out test split at the end
    calibrate: bool = True  # fit calibration + the unknown-artist decision on validation at the end (tim calibrate)
    unknown: str | None = None  # paintings of other artists for the unknown-artist decision (tim calibrate --unknown)
    push_to_hub: bool = False
    hub_model_id: str | None = None
    hub_private: bool = False

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["data"] = self.data.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        d = dict(d)
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown training settings {sorted(unknown)}")
        data = DataConfig.from_dict(d.pop("data", {}) or {})
        tiers = Tiers(**(d.pop("tiers", {}) or {}))
        return cls(data=data, tiers=tiers, **d)


class Progress:
    """Where the run is: epoch, best validation score, epochs without improvement.

    Registered with Accelerate so `save_state`/`load_state` carry it with the
    model, optimizer, scheduler and RNG states.
    """

    def __init__(self):
        self.epoch = 0
        self.best = -math.inf
        self.bad_epochs = 0

    def state_dict(self):
        return {"epoch": self.epoch, "best": self.best, "bad_epochs": self.bad_epochs}

    def load_state_dict(self, state):
        self.epoch, self.best, self.bad_epochs = state["epoch"], state["best"], state["bad_epochs"]


def make_scheduler(cfg: TrainConfig, optimizer, steps_per_epoch: int):
    if cfg.scheduler == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="min", factor=cfg.plateau_factor, patience=cfg.plateau_patience
        )
    if cfg.scheduler == "cosine":
        total = max(1, cfg.epochs * steps_per_epoch)
        warmup = int(cfg.warmup_epochs * steps_per_epoch)

        def factor(step):
            if step < warmup:
                return (step + 1) / warmup
            return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))

        return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    if cfg.scheduler == "none":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    raise ValueError(f"scheduler {cfg.scheduler!r}: choose plateau, cosine or none")


def make_optimizer(cfg: TrainConfig, groups: list[dict]):
    if cfg.optimizer == "adam":
        return torch.optim.Adam(groups, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, weight_decay=cfg.weight_decay)
    raise ValueError(f"optimizer {cfg.optimizer!r}: choose adam or adamw")


def class_weights(split, num_classes: int, kind: str, device=None) -> torch.Tensor | None:
    """Per-artist loss weights: `inverse_sqrt` gives an artist with 4x fewer paintings 2x the weight."""
    if kind == "none":
        return None
    if kind != "inverse_sqrt":
        raise ValueError(f"class_weights {kind!r}: choose none or inverse_sqrt")
    counts = np.bincount(np.asarray(split["artist"]), minlength=num_classes).clip(min=1)
    weights = 1.0 / np.sqrt(counts)
    return torch.tensor(weights / weights.mean(), dtype=torch.float32, device=device)


def train_one_epoch(model, batches, optimizer, scheduler, criterion, accelerator, cfg: TrainConfig, desc=""):
    """One pass over `batches`; returns ([images, loss sum, correct] summed over ranks, seconds).

    Running sums stay on the device (no `.item()` per step), so a GPU is never
    made to wait for the host.
    """
    model.train()
    started, steps = time.perf_counter(), 0
    sums = torch.zeros(3, device=accelerator.device, dtype=torch.float64)
    bar = tqdm(batches, desc=desc, disable=not accelerator.is_main_process, leave=False)
    for i, (x, y) in enumerate(bar):
        if cfg.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with accelerator.accumulate(model):
            with accelerator.autocast():
                logits = model(x)
                loss = criterion(logits, y)
            accelerator.backward(loss)
            optimizer.step()
            optimizer.zero_grad()
            if accelerator.sync_gradients:
                steps += 1
                if cfg.scheduler != "plateau":
                    scheduler.step()
        sums += torch.stack([torch.tensor(len(y), device=sums.device, dtype=sums.dtype),
                             loss.detach().double() * len(y), (logits.argmax(-1) == y).sum().double()])
        if i % 10 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}")
        if cfg.max_steps_per_epoch and steps >= cfg.max_steps_per_epoch:
            break
    seconds = time.perf_counter() - started
    return accelerator.reduce(sums), seconds


@torch.no_grad()
def validate(model, loader, accelerator, channels_last: bool) -> dict:
    """Loss, accuracy and macro-F1 over the whole split, each image counted once on every rank."""
    model.eval()
    losses, preds, labels = [], [], []
    for x, y in loader:
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with accelerator.autocast():
            logits = model(x)
        loss = torch.nn.functional.cross_entropy(logits.float(), y, reduction="none")
        loss, pred, y = accelerator.gather_for_metrics((loss, logits.argmax(-1), y))
        losses.append(loss.cpu())
        preds.append(pred.cpu())
        labels.append(y.cpu())
    scores = compute_metrics(torch.cat(labels).numpy(), torch.cat(preds).numpy())
    return {
        "val_loss": float(torch.cat(losses).mean()),
        "val_accuracy": scores["accuracy"],
        "val_f1_macro": scores["f1_macro"],
    }


def train(cfg: TrainConfig, resume: bool = False) -> Path:
    """Train `cfg.model` on `cfg.data`; returns the run folder (best/, last/, state/, log.csv)."""
    out = Path(cfg.output_dir)
    accelerator = Accelerator(
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        mixed_precision=cfg.mixed_precision,
        log_with=cfg.report_to,
        project_config=ProjectConfiguration(project_dir=str(out), logging_dir=str(out / "logs")),
    )
    main = accelerator.is_main_process
    if cfg.push_to_hub:  # fail now, not after 20 epochs; every rank checks, so none is left waiting
        from tim.hub import check_push_access

        if not cfg.hub_model_id:
            raise ValueError("--push-to-hub needs --hub-model-id USER/NAME")
        check_push_access(cfg.hub_model_id)
    set_seed(cfg.seed)

    # ---- data: prepared once (main process first, the others reuse its cache)
    with accelerator.main_process_first():
        data = prepare_data(cfg.data)
    if main and data.bad_files:
        print(f"Skipped {len(data.bad_files)} unreadable file(s):")
        for bad in data.bad_files:
            print(f"  {bad.path}: {bad.reason}")

    # ---- model, with the normalisation its pretrained weights expect
    model = build_model(cfg.model, num_classes=len(data.artists), pretrained=cfg.pretrained)
    norm = timm.data.resolve_data_config(model=model)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    sets = split_datasets(data.splits, norm["mean"], norm["std"], pad_color=cfg.data.pad_color)
    train_set, val_set = sets["train"], sets["validation"]
    loader_args = dict(batch_size=cfg.batch_size, num_workers=cfg.num_workers,
                       persistent_workers=cfg.num_workers > 0)
    train_loader = DataLoader(train_set, shuffle=True, drop_last=len(train_set) > cfg.batch_size, **loader_args)
    val_loader = DataLoader(val_set, shuffle=False, **loader_args)

    groups = tier_groups(model, cfg.tiers, cfg.freeze_backbone)
    optimizer = make_optimizer(cfg, groups)
    model, optimizer, train_loader, val_loader = accelerator.prepare(model, optimizer, train_loader, val_loader)
    steps_per_epoch = math.ceil(len(train_loader) / cfg.gradient_accumulation_steps)
    if cfg.max_steps_per_epoch:
        steps_per_epoch = min(steps_per_epoch, cfg.max_steps_per_epoch)
    scheduler = make_scheduler(cfg, optimizer, steps_per_epoch)
    progress = Progress()
    accelerator.register_for_checkpointing(scheduler, progress)
    if resume and (out / "state").is_dir():
        accelerator.load_state(str(out / "state"))
        accelerator.print(f"Resumed from {out / 'state'} at epoch {progress.epoch}")
    elif main:  # a fresh run (also --resume with nothing saved yet): start a new log
        (out / "log.csv").unlink(missing_ok=True)
        out.mkdir(parents=True, exist_ok=True)
        (out / "run.json").write_text(json.dumps(cfg.to_dict(), indent=2))
    if cfg.report_to:
        accelerator.init_trackers("tim", config={"model": cfg.model, "epochs": cfg.epochs})
    accelerator.print(
        f"Training {cfg.model} on {len(data.artists)} artists: {len(train_set)} train / {len(val_set)} val images, "
        f"{accelerator.num_processes} process(es) on {accelerator.device}"
    )

    criterion = torch.nn.CrossEntropyLoss(
        weight=class_weights(data.splits["train"], len(data.artists), cfg.class_weights, accelerator.device),
        label_smoothing=cfg.label_smoothing,
    )
    checkpoint_extra = {"data": cfg.data.to_dict(), "train": _recipe(cfg)}
    preprocessing = {"resize_mode": cfg.data.resize_mode, "image_size": cfg.data.image_size,
                     "pad_color": list(cfg.data.pad_color)}

    while progress.epoch < cfg.epochs and progress.bad_epochs < cfg.early_stopping_patience:
        epoch, started = progress.epoch, time.perf_counter()
        totals, train_seconds = train_one_epoch(
            model, train_loader, optimizer, scheduler, criterion, accelerator, cfg,
            desc=f"epoch {epoch + 1}/{cfg.epochs}",
        )
        metrics = validate(model, val_loader, accelerator, cfg.channels_last)
        if cfg.scheduler == "plateau":
            scheduler.step(metrics["val_loss"])
        lrs = {g["name"]: g["lr"] for g in optimizer.param_groups}
        row = {
            "epoch": epoch + 1,
            "train_loss": float(totals[1] / totals[0]),
            "train_accuracy": float(totals[2] / totals[0]),
            **metrics,
            **{f"lr_{tier}": lrs.get(tier, 0.0) for tier in ("early", "intermediate", "final")},
            "seconds": round(time.perf_counter() - started, 1),
            "images_per_second": round(float(totals[0]) / train_seconds, 2),
        }
        accelerator.print(
            f"epoch {row['epoch']}: train loss {row['train_loss']:.3f} acc {row['train_accuracy']:.3f} | "
            f"val loss {row['val_loss']:.3f} acc {row['val_accuracy']:.3f} F1 {row['val_f1_macro']:.3f} | "
            f"{row['images_per_second']} img/s"
        )
        if cfg.report_to:
            accelerator.log(row, step=epoch + 1)

        # ---- early stopping: every rank sees the same gathered metrics, so all decide alike
        score = metrics[f"val_{cfg.early_stopping_metric}"]
        improved = score > progress.best
        progress.best = max(progress.best, score)
        progress.bad_epochs = 0 if improved else progress.bad_epochs + 1
        progress.epoch += 1

        # ---- checkpoints: only the main process writes model folders; all ranks save their state
        if main:
            with open(out / "log.csv", "a", newline="") as f:
                writer = csv.DictWriter(f, LOG_COLUMNS)
                if f.tell() == 0:
                    writer.writeheader()
                writer.writerow(row)
            unwrapped = accelerator.unwrap_model(model)
            extra = {**checkpoint_extra, "epoch": epoch + 1, "validation": metrics}
            save_checkpoint(unwrapped, out / "last", data.artists, preprocessing, extra)
            if improved:
                save_checkpoint(unwrapped, out / "best", data.artists, preprocessing, extra)
        accelerator.wait_for_everyone()
        accelerator.save_state(str(out / "state.tmp"))
        accelerator.wait_for_everyone()
        if main:
            replace_folder(out / "state.tmp", out / "state")
        accelerator.wait_for_everyone()

    if progress.bad_epochs >= cfg.early_stopping_patience:
        accelerator.print(f"Early stop: no better validation {cfg.early_stopping_metric} for "
                          f"{cfg.early_stopping_patience} epochs (best {progress.best:.4f}).")
    accelerator.wait_for_everyone()
    if cfg.calibrate and (out / "best").is_dir():  # before the test evaluation, so its report is calibrated
        from tim.calibrate import calibrate_checkpoint

        calibrate_checkpoint(out / "best", cfg.data.source, cfg.unknown, cache_dir=cfg.data.cache_dir,
                             batch_size=cfg.batch_size, accelerator=accelerator, out=accelerator.print)
    if cfg.evaluate_test and (out / "best").is_dir():
        from tim.evaluation import evaluate_checkpoint, format_summary

        overrides = {"source": cfg.data.source, "cache_dir": cfg.data.cache_dir, "num_proc": cfg.data.num_proc}
        results = evaluate_checkpoint(str(out / "best"), overrides, batch_size=cfg.batch_size,
                                      accelerator=accelerator)
        accelerator.print(format_summary(results))
    if cfg.push_to_hub and main:
        publish(out / "best", cfg)
    accelerator.wait_for_everyone()
    accelerator.end_training()  # last: it also ends the process group of a distributed run
    return out


def publish(checkpoint: Path, cfg: TrainConfig) -> None:
    """Push the best checkpoint; a failed upload keeps it and prints the command that retries."""
    from tim.hub import HubError, push_checkpoint

    try:
        print(f"Pushed {checkpoint} to {push_checkpoint(checkpoint, cfg.hub_model_id, private=cfg.hub_private)}")
    except HubError as e:
        print(f"error: {e}")


def _recipe(cfg: TrainConfig) -> dict:
    """The training settings worth keeping with the weights (for the model card and for comparisons)."""
    d = cfg.to_dict()
    for k in ("data", "output_dir", "num_workers", "report_to", "push_to_hub", "hub_model_id", "hub_private",
              "max_steps_per_epoch", "evaluate_test"):
        d.pop(k)
    return d
